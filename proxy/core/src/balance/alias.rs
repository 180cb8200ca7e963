//! Walker / Vose alias table: O(n) to build, O(1) to draw an index with probability proportional to
//! its weight.

use rand::Rng;

/// An alias table over indices `0..n`.
#[derive(Clone, Debug, PartialEq)]
pub struct AliasTable {
    /// Probability of keeping column `i` rather than jumping to `alias[i]`, scaled to u32.
    keep: Vec<u32>,
    alias: Vec<u32>,
}

impl AliasTable {
    /// Builds the table; `None` when no weight is finite and positive.
    pub fn new(weights: &[f64]) -> Option<Self> {
        let clean: Vec<f64> = weights
            .iter()
            .map(|&w| if w.is_finite() && w > 0.0 { w } else { 0.0 })
            .collect();
        let total: f64 = clean.iter().sum();
        let n = clean.len();
        if n == 0 || total <= 0.0 || !total.is_finite() {
            return None;
        }
        let mut scaled: Vec<f64> = clean.iter().map(|w| w * n as f64 / total).collect();
        let mut keep = vec![u32::MAX; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            keep[s] = (scaled[s] * f64::from(u32::MAX)) as u32;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Leftovers are 1 up to rounding: always keep them.
        Some(Self { keep, alias })
    }

    /// Number of indices.
    pub fn len(&self) -> usize {
        self.keep.len()
    }

    /// True when the table has no index (never, for a built table).
    pub fn is_empty(&self) -> bool {
        self.keep.is_empty()
    }

    /// Draws one index.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let r: u64 = rng.random();
        let col = (((r >> 32) * self.keep.len() as u64) >> 32) as usize;
        if (r as u32) < self.keep[col] || self.keep[col] == u32::MAX {
            col
        } else {
            self.alias[col] as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::SmallRng};

    #[test]
    fn frequencies_follow_weights() {
        let w = [1.0, 0.0, 3.0, 6.0];
        let t = AliasTable::new(&w).unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = [0u32; 4];
        let n = 200_000;
        for _ in 0..n {
            counts[t.sample(&mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        for (i, &want) in [0.1, 0.0, 0.3, 0.6].iter().enumerate() {
            let got = f64::from(counts[i]) / f64::from(n);
            assert!((got - want).abs() < 0.005, "index {i}: {got} vs {want}");
        }
    }

    #[test]
    fn no_usable_weight_is_none() {
        assert!(AliasTable::new(&[]).is_none());
        assert!(AliasTable::new(&[0.0, f64::NAN, -1.0]).is_none());
    }
}
