//! Endpoint selection for one service, sans-IO.
//!
//! Three modes, chosen from the plan in force:
//! - **weighted**: draw by the plan's weights from an alias table, O(1);
//! - **weighted P2C**: draw two candidates by weight, keep the one with the lower Peak-EWMA cost
//!   (plan weights say where load should go, the live estimate still steers around a stall);
//! - **P2C** (no weights; linkerd's default): two distinct candidates uniformly from the eligible
//!   set, the lower Peak-EWMA cost wins.
//!
//! The eligible set is the plan's explicit subset, else a rendezvous subset of size `k`, else every
//! endpoint. Ejected endpoints are skipped; when every eligible endpoint is ejected the balancer
//! still picks one (failing open beats refusing all traffic on a correlated blip).

pub mod alias;
pub mod subset;

use rand::Rng;

pub use alias::AliasTable;

use crate::{endpoint::Endpoint, plan::ServicePlan};

/// Live per-endpoint state the balancer reads when it picks.
pub trait Loads {
    /// P2C cost of endpoint `i` (Peak-EWMA times in-flight + 1).
    fn cost(&self, i: usize) -> f64;
    /// False while endpoint `i` is ejected.
    fn available(&self, i: usize) -> bool;
}

#[derive(Clone, Debug, PartialEq)]
enum Mode {
    Weighted(AliasTable),
    WeightedP2c(AliasTable),
    P2c,
}

/// How many extra draws to try before giving up on skipping ejected endpoints.
const REDRAWS: usize = 4;

/// The selection state for one service, rebuilt on every plan or membership change.
#[derive(Clone, Debug, PartialEq)]
pub struct Balancer {
    mode: Mode,
    /// Endpoint indices this proxy may connect to.
    eligible: Vec<usize>,
    /// Per endpoint index: may this proxy connect to it.
    allowed: Vec<bool>,
}

impl Balancer {
    /// Builds the balancer for `eps` from the service's plan (or none) and this proxy's identity
    /// (used for rendezvous subsetting).
    pub fn new(eps: &[Endpoint], plan: Option<&ServicePlan>, identity: &str) -> Self {
        let n = eps.len();
        let resolved = plan.and_then(|p| p.resolve(eps));
        let (mode, eligible) = match resolved.and_then(|r| AliasTable::new(&r.weights).map(|t| (r, t))) {
            Some((r, table)) => {
                // With weights, eligibility is where the weight is: no connection is opened to
                // an endpoint the plan gives nothing.
                let eligible = (0..n).filter(|&i| r.weights[i] > 0.0).collect();
                let p2c = plan.is_some_and(|p| p.weighted_p2c);
                (if p2c { Mode::WeightedP2c(table) } else { Mode::Weighted(table) }, eligible)
            }
            None => {
                let k = plan.and_then(|p| p.subset_size).unwrap_or(0) as usize;
                let keys: Vec<&str> = eps.iter().map(Endpoint::key).collect();
                (Mode::P2c, subset::rendezvous(identity, &keys, k))
            }
        };
        let mut allowed = vec![false; n];
        for &i in &eligible {
            allowed[i] = true;
        }
        Self { mode, eligible, allowed }
    }

    /// May this proxy connect to endpoint `i`.
    pub fn allows(&self, i: usize) -> bool {
        self.allowed.get(i).copied().unwrap_or(false)
    }

    /// Endpoint indices this proxy may connect to.
    pub fn eligible(&self) -> &[usize] {
        &self.eligible
    }

    /// True when a plan's weights drive selection.
    pub fn is_weighted(&self) -> bool {
        !matches!(self.mode, Mode::P2c)
    }

    /// Picks an endpoint index; `None` only when the service has no eligible endpoint.
    pub fn pick<R: Rng + ?Sized, L: Loads + ?Sized>(&self, rng: &mut R, loads: &L) -> Option<usize> {
        match &self.mode {
            Mode::Weighted(t) => Some(self.draw_available(t, rng, loads)),
            Mode::WeightedP2c(t) => {
                let a = self.draw_available(t, rng, loads);
                let b = self.draw_available(t, rng, loads);
                Some(better(a, b, loads))
            }
            Mode::P2c => self.p2c(rng, loads),
        }
    }

    fn draw_available<R: Rng + ?Sized, L: Loads + ?Sized>(
        &self,
        t: &AliasTable,
        rng: &mut R,
        loads: &L,
    ) -> usize {
        let first = t.sample(rng);
        if loads.available(first) {
            return first;
        }
        for _ in 0..REDRAWS {
            let i = t.sample(rng);
            if loads.available(i) {
                return i;
            }
        }
        self.eligible.iter().copied().find(|&i| loads.available(i)).unwrap_or(first)
    }

    fn p2c<R: Rng + ?Sized, L: Loads + ?Sized>(&self, rng: &mut R, loads: &L) -> Option<usize> {
        let n = self.eligible.len();
        match n {
            0 => None,
            1 => Some(self.eligible[0]),
            _ => {
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (self.eligible[a], self.eligible[b]);
                match (loads.available(a), loads.available(b)) {
                    (true, true) => Some(better(a, b, loads)),
                    (true, false) => Some(a),
                    (false, true) => Some(b),
                    (false, false) => Some(
                        self.eligible.iter().copied().find(|&i| loads.available(i)).unwrap_or(a),
                    ),
                }
            }
        }
    }
}

fn better<L: Loads + ?Sized>(a: usize, b: usize, loads: &L) -> usize {
    if loads.cost(b) < loads.cost(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::SubsetEntry;
    use rand::{SeedableRng, rngs::SmallRng};
    use std::collections::BTreeMap;

    struct Fixed {
        cost: Vec<f64>,
        up: Vec<bool>,
    }
    impl Loads for Fixed {
        fn cost(&self, i: usize) -> f64 {
            self.cost[i]
        }
        fn available(&self, i: usize) -> bool {
            self.up[i]
        }
    }

    fn eps(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| {
                let addr = format!("127.0.0.1:{}", 1000 + i).parse().unwrap();
                Endpoint::new(addr, format!("h{}", i % 2), "z", format!("c{i}"))
            })
            .collect()
    }

    fn shares(b: &Balancer, loads: &Fixed, n: usize) -> Vec<f64> {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut c = vec![0u32; n];
        let draws = 100_000;
        for _ in 0..draws {
            c[b.pick(&mut rng, loads).unwrap()] += 1;
        }
        c.iter().map(|&x| f64::from(x) / f64::from(draws)).collect()
    }

    #[test]
    fn weighted_follows_host_weights_and_skips_ejected() {
        let e = eps(4);
        let plan = ServicePlan {
            host_weights: BTreeMap::from([("h0".into(), 0.8), ("h1".into(), 0.2)]),
            ..Default::default()
        };
        let b = Balancer::new(&e, Some(&plan), "me");
        let mut loads = Fixed { cost: vec![1.0; 4], up: vec![true; 4] };
        let s = shares(&b, &loads, 4);
        for (got, want) in s.iter().zip([0.4, 0.1, 0.4, 0.1]) {
            assert!((got - want).abs() < 0.01, "{s:?}");
        }
        loads.up[0] = false;
        let s = shares(&b, &loads, 4);
        assert!(s[0] < 0.001, "{s:?}");
        assert!((s[2] - 0.4).abs() > 0.05, "ejected share went elsewhere: {s:?}");
    }

    #[test]
    fn p2c_prefers_cheap_endpoint() {
        let e = eps(3);
        let b = Balancer::new(&e, None, "me");
        let loads = Fixed { cost: vec![1.0, 10.0, 10.0], up: vec![true; 3] };
        let s = shares(&b, &loads, 3);
        // Endpoint 0 wins every pair it is in: 2 of the 3 pairs.
        assert!((s[0] - 2.0 / 3.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn subset_limits_eligible_endpoints() {
        let e = eps(10);
        let plan = ServicePlan {
            subset: vec![
                SubsetEntry { endpoint: "127.0.0.1:1003".into(), share: 3.0 },
                SubsetEntry { endpoint: "127.0.0.1:1007".into(), share: 1.0 },
            ],
            ..Default::default()
        };
        let b = Balancer::new(&e, Some(&plan), "me");
        assert_eq!(b.eligible(), &[3, 7]);
        assert!(b.allows(3) && !b.allows(0));
        let s = shares(&b, &Fixed { cost: vec![1.0; 10], up: vec![true; 10] }, 10);
        assert!((s[3] - 0.75).abs() < 0.01, "{s:?}");

        let k = ServicePlan { subset_size: Some(4), ..Default::default() };
        let b = Balancer::new(&e, Some(&k), "me");
        assert_eq!(b.eligible().len(), 4);
        assert!(!b.is_weighted());
    }
}
