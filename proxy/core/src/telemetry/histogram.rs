//! Fixed-size log-linear latency histogram in microseconds: 16 linear sub-buckets per power of two,
//! so any recorded value is reported within 1/16 (6.25%) of itself. Values above ~134 s are
//! clamped into the last bucket. 400 `u32` counters, no allocation after creation.

const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Largest exponent kept; 2^27 us is ~134 s.
const MAX_EXP: u32 = 27;
/// Number of buckets.
pub const BUCKETS: usize = (MAX_EXP as usize - SUB_BITS as usize + 2) * SUB;

/// Latency histogram over microseconds.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Box<[u32; BUCKETS]>,
    total: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }
}

fn index(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let e = (63 - us.leading_zeros()).min(MAX_EXP);
    if e == MAX_EXP && us >> MAX_EXP > 1 {
        return BUCKETS - 1;
    }
    let sub = ((us >> (e - SUB_BITS)) as usize) & (SUB - 1);
    (e - SUB_BITS + 1) as usize * SUB + sub
}

/// Lower bound and width of bucket `i`, in microseconds.
fn bounds(i: usize) -> (u64, u64) {
    if i < SUB {
        return (i as u64, 1);
    }
    let e = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = (i % SUB) as u64;
    let width = 1u64 << (e - SUB_BITS);
    (((SUB as u64) + sub) * width, width)
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, us: u64) {
        let c = &mut self.counts[index(us)];
        *c = c.saturating_add(1);
        self.total += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.total += other.total;
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        if self.total != 0 {
            self.counts.fill(0);
            self.total = 0;
        }
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` in [0, 1], in microseconds (midpoint of its bucket); 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                let (lo, w) = bounds(i);
                return lo as f64 + (w as f64 - 1.0) / 2.0;
            }
        }
        let (lo, w) = bounds(BUCKETS - 1);
        lo as f64 + w as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_are_contiguous() {
        let mut next = 0;
        for i in 0..BUCKETS {
            let (lo, w) = bounds(i);
            assert_eq!(lo, next, "bucket {i}");
            next = lo + w;
        }
    }

    #[test]
    fn quantiles_of_uniform_values() {
        let mut h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        for (q, want) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = h.quantile(q);
            assert!((got - want).abs() / want < 0.07, "q{q}: {got} vs {want}");
        }
    }

    proptest! {
        #[test]
        fn every_value_lands_in_its_bucket(v in 0u64..(1 << 27)) {
            let (lo, w) = bounds(index(v));
            prop_assert!(lo <= v && v < lo + w);
            prop_assert!(w as f64 <= (v as f64 / 16.0).max(1.0));
        }
    }
}
