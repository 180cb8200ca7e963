//! Endpoint selection for one service, sans-IO.
//!
//! Modes, chosen from the plan in force (`ServicePlan::algorithm`, default `weighted`):
//! - **weighted**: draw by the plan's weights from an alias table, O(1);
//! - **weighted P2C**: draw two candidates by weight, keep the one with the lower Peak-EWMA cost
//!   (plan weights say where load should go, the live estimate still steers around a stall);
//! - **P2C** (no weights, or `p2c-ewma`; linkerd's default): two distinct candidates uniformly from
//!   the eligible set, the lower Peak-EWMA cost wins;
//! - **round robin** (`round-robin`): the eligible endpoints in turn, O(1) (O(n) only while
//!   skipping ejected endpoints);
//! - **least request** (`least-request`): two distinct candidates uniformly, the one with fewer
//!   requests in flight wins (Envoy's least-request with two choices), O(1);
//! - **Prequal** (`prequal`): the hot-cold rule over a pool of at most 16 endpoints' reported
//!   requests in flight and latency ([`prequal`], Wydrowski et al., NSDI 2024), O(16); with
//!   weights, two candidates drawn by weight settled by that rule (the shifting planner's
//!   hot-cold inner pick).
//!
//! The eligible set is the plan's explicit subset, else a rendezvous subset of size `k`, else every
//! endpoint. Ejected endpoints are skipped; when every eligible endpoint is ejected the balancer
//! still picks one (failing open beats refusing all traffic on a correlated blip).
//!
//! Slow start ([`slow_start`]): an endpoint warming up has a factor `f` in (0, 1] ([`Loads::warmth`])
//! that every mode reads, all in O(1) and without drawing a random number while `f` is 1, so a
//! proxy without slow start picks exactly as before:
//! - **weighted** and **weighted P2C**: a drawn candidate is kept with probability `f`, else drawn
//!   again (rejection sampling: the draw follows `weight x f` exactly while a redraw is left; after
//!   four redraws the first available candidate stands, so a pick stays O(1)); weighted P2C then
//!   compares the two on their plain cost, so the factor counts once;
//! - **P2C**: the cost compared is `cost / f` (Envoy's least request scales the same way, by
//!   `weight / (active + 1)`): under load a warming endpoint is held near `f` times its peers'
//!   cost, and an idle one still decays back into use;
//! - **least request**: `(in_flight + 1) / f` is compared, so it carries about `f` times its
//!   peers' requests in flight;
//! - **round robin**: its turn is skipped with probability `1 - f`;
//! - **Prequal**: an entry's RIF is compared as `(rif + 1) / f - 1` and its latency as
//!   `latency / f`; inside weights, as weighted P2C (the draw carries the factor).

pub mod alias;
pub mod prequal;
pub mod slow_start;
pub mod subset;

use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;

pub use alias::AliasTable;

use crate::{
    endpoint::Endpoint,
    plan::{Algorithm, ServicePlan},
};
pub use prequal::Reported;
use prequal::{Entry, Pool};

/// Live per-endpoint state the balancer reads when it picks.
pub trait Loads {
    /// P2C cost of endpoint `i` in nanoseconds (Peak-EWMA times in-flight + 1, the estimate
    /// decayed while idle).
    fn cost(&self, i: usize) -> f64;
    /// False while endpoint `i` is ejected.
    fn available(&self, i: usize) -> bool;
    /// Requests in flight to endpoint `i`, for `least-request`.
    fn in_flight(&self, i: usize) -> u32;
    /// Slow start factor of endpoint `i` in (0, 1] ([`slow_start::SlowStart::factor`]); 1 when it
    /// is not warming up.
    fn warmth(&self, _i: usize) -> f64 {
        1.0
    }
    /// Endpoint `i`'s latest load report from its inbound sidecar, for `prequal`; `None` when it
    /// has sent none (no sidecar in front of it, or nothing answered yet).
    fn reported(&self, _i: usize) -> Option<Reported> {
        None
    }
}

/// Round-robin position. Shared by every request of the service through `&self`, hence atomic;
/// the position is not configuration, so clones start where the original was and any two
/// cursors compare equal.
#[derive(Debug, Default)]
struct Cursor(AtomicUsize);

impl Clone for Cursor {
    fn clone(&self) -> Self {
        Self(AtomicUsize::new(self.0.load(Ordering::Relaxed)))
    }
}

impl PartialEq for Cursor {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Mode {
    Weighted(AliasTable),
    /// The alias table and each endpoint's weight (the candidates' costs are compared per unit
    /// of weight).
    WeightedP2c(AliasTable, Vec<f64>),
    P2c,
    RoundRobin(Cursor),
    LeastRequest,
    Prequal(Pool),
    /// The table, the weights it was built from (per endpoint index) and the pool.
    WeightedPrequal(AliasTable, Vec<f64>, Pool),
}

/// How many extra draws to try before giving up on skipping ejected (or, by chance, warming)
/// endpoints.
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
        let table = resolved.as_ref().and_then(|r| AliasTable::new(&r.weights));
        let eligible: Vec<usize> = match (&resolved, &table) {
            // With weights, eligibility is where the weight is: no connection is opened to an
            // endpoint the plan gives nothing.
            (Some(r), Some(_)) => (0..n).filter(|&i| r.weights[i] > 0.0).collect(),
            _ => {
                let k = plan.and_then(|p| p.subset_size).unwrap_or(0) as usize;
                let keys: Vec<&str> = eps.iter().map(Endpoint::key).collect();
                subset::rendezvous(identity, &keys, k)
            }
        };
        let mode = match plan.map(|p| p.algorithm).unwrap_or_default() {
            Algorithm::Weighted => match table {
                Some(t) if plan.is_some_and(|p| p.weighted_p2c) => Mode::WeightedP2c(
                    t,
                    resolved
                        .as_ref()
                        .map(|r| r.weights.clone())
                        .unwrap_or_default(),
                ),
                Some(t) => Mode::Weighted(t),
                None => Mode::P2c,
            },
            Algorithm::P2cEwma => Mode::P2c,
            Algorithm::RoundRobin => Mode::RoundRobin(Cursor::default()),
            Algorithm::LeastRequest => Mode::LeastRequest,
            Algorithm::Prequal => match table {
                Some(t) => Mode::WeightedPrequal(
                    t,
                    resolved
                        .as_ref()
                        .map(|r| r.weights.clone())
                        .unwrap_or_default(),
                    Pool::new(eligible.len()),
                ),
                None => Mode::Prequal(Pool::new(eligible.len())),
            },
        };
        let mut allowed = vec![false; n];
        for &i in &eligible {
            allowed[i] = true;
        }
        Self {
            mode,
            eligible,
            allowed,
        }
    }

    /// May this proxy connect to endpoint `i`.
    pub fn allows(&self, i: usize) -> bool {
        self.allowed.get(i).copied().unwrap_or(false)
    }

    /// Endpoint indices this proxy may connect to.
    pub fn eligible(&self) -> &[usize] {
        &self.eligible
    }

    /// True when picks read the endpoints' load reports (`prequal`), so requests should ask for
    /// them.
    pub fn uses_reports(&self) -> bool {
        matches!(self.mode, Mode::Prequal(_) | Mode::WeightedPrequal(..))
    }

    /// True when a plan's weights drive selection.
    pub fn is_weighted(&self) -> bool {
        matches!(
            self.mode,
            Mode::Weighted(_) | Mode::WeightedP2c(..) | Mode::WeightedPrequal(..)
        )
    }

    /// Picks an endpoint index; `None` only when the service has no eligible endpoint.
    pub fn pick<R: Rng + ?Sized, L: Loads + ?Sized>(
        &self,
        rng: &mut R,
        loads: &L,
    ) -> Option<usize> {
        match &self.mode {
            Mode::Weighted(t) => Some(self.draw_available(t, rng, loads)),
            Mode::WeightedP2c(t, w) => {
                let a = self.draw_available(t, rng, loads);
                // Two distinct candidates when the weights allow: the same endpoint drawn twice
                // is no choice at all (a quarter of the picks among four equal endpoints). The
                // lower cost per unit of weight wins (Envoy's weighted least request divides by
                // the weight too), so a candidate the plan gives little must be much less
                // loaded to win: a second distinct draw does not undo the plan's shares.
                let mut b = self.draw_available(t, rng, loads);
                for _ in 0..REDRAWS {
                    if b != a {
                        break;
                    }
                    b = self.draw_available(t, rng, loads);
                }
                let per_weight = |i: usize| loads.cost(i) / w.get(i).copied().unwrap_or(1.0);
                Some(if per_weight(b) < per_weight(a) { b } else { a })
            }
            Mode::P2c => self.two_choices(rng, loads, |a, b| {
                if warm_cost(b, loads) < warm_cost(a, loads) {
                    b
                } else {
                    a
                }
            }),
            Mode::LeastRequest => self.two_choices(rng, loads, |a, b| {
                let busy = |i| f64::from(loads.in_flight(i)) + 1.0;
                if busy(b) / loads.warmth(b) < busy(a) / loads.warmth(a) {
                    b
                } else {
                    a
                }
            }),
            Mode::RoundRobin(cursor) => {
                let n = self.eligible.len();
                if n == 0 {
                    return None;
                }
                let start = cursor.0.fetch_add(1, Ordering::Relaxed);
                let at = |off: usize| self.eligible[start.wrapping_add(off) % n];
                let mut first_available = None;
                for i in (0..n).map(at).filter(|&i| loads.available(i)) {
                    if keep(rng, loads.warmth(i)) {
                        return Some(i);
                    }
                    first_available.get_or_insert(i);
                }
                Some(first_available.unwrap_or(at(0)))
            }
            Mode::Prequal(pool) => {
                let mut now = pool.entries(&self.eligible, loads);
                let entries = now.as_slice();
                let pick = prequal::threshold(entries)
                    .and_then(|theta| prequal::hot_cold(entries, theta))
                    .map(|k| entries[k].i);
                pool.probe(&self.eligible, rng, &mut now);
                pick.or_else(|| self.random_available(rng, loads))
            }
            Mode::WeightedPrequal(t, w, pool) => {
                let a = self.draw_available(t, rng, loads);
                // Two distinct candidates when the weights allow, as weighted P2C draws them.
                let mut b = self.draw_available(t, rng, loads);
                for _ in 0..REDRAWS {
                    if b != a {
                        break;
                    }
                    b = self.draw_available(t, rng, loads);
                }
                let mut now = pool.entries(&self.eligible, loads);
                let pick = match prequal::threshold(now.as_slice()) {
                    Some(theta) if a != b => {
                        let weight = |i: usize| w.get(i).copied().unwrap_or(1.0);
                        let top = weight(a).max(weight(b));
                        prequal::settle(
                            &Entry::per_weight(a, loads, weight(a) / top),
                            &Entry::per_weight(b, loads, weight(b) / top),
                            theta,
                        )
                    }
                    _ => a,
                };
                pool.probe(&self.eligible, rng, &mut now);
                Some(pick)
            }
        }
    }

    /// Prequal's fallback when its pool has nothing available: a uniformly random available
    /// eligible endpoint (after [`REDRAWS`] misses the first available one), else any eligible
    /// one (failing open).
    fn random_available<R: Rng + ?Sized, L: Loads + ?Sized>(
        &self,
        rng: &mut R,
        loads: &L,
    ) -> Option<usize> {
        let n = self.eligible.len();
        if n == 0 {
            return None;
        }
        let first = self.eligible[rng.random_range(0..n)];
        let mut i = first;
        for _ in 0..REDRAWS {
            if loads.available(i) {
                return Some(i);
            }
            i = self.eligible[rng.random_range(0..n)];
        }
        Some(
            self.eligible
                .iter()
                .copied()
                .find(|&i| loads.available(i))
                .unwrap_or(first),
        )
    }

    /// A draw by weight, skipping ejected endpoints and keeping a warming one with probability
    /// its factor; after [`REDRAWS`] the first available draw, else the first available eligible
    /// endpoint, else the first draw.
    fn draw_available<R: Rng + ?Sized, L: Loads + ?Sized>(
        &self,
        t: &AliasTable,
        rng: &mut R,
        loads: &L,
    ) -> usize {
        let first = t.sample(rng);
        let mut first_available = None;
        let mut i = first;
        for redraw in 0..=REDRAWS {
            if redraw > 0 {
                i = t.sample(rng);
            }
            if loads.available(i) {
                if keep(rng, loads.warmth(i)) {
                    return i;
                }
                first_available.get_or_insert(i);
            }
        }
        first_available
            .or_else(|| self.eligible.iter().copied().find(|&i| loads.available(i)))
            .unwrap_or(first)
    }

    /// Two distinct uniform candidates from the eligible set; `choose` settles between two
    /// available ones.
    fn two_choices<R: Rng + ?Sized, L: Loads + ?Sized>(
        &self,
        rng: &mut R,
        loads: &L,
        choose: impl Fn(usize, usize) -> usize,
    ) -> Option<usize> {
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
                    (true, true) => Some(choose(a, b)),
                    (true, false) => Some(a),
                    (false, true) => Some(b),
                    (false, false) => Some(
                        self.eligible
                            .iter()
                            .copied()
                            .find(|&i| loads.available(i))
                            .unwrap_or(a),
                    ),
                }
            }
        }
    }
}

/// P2C's cost with the slow start factor: `cost / f`, the plain cost when `f` is 1.
fn warm_cost<L: Loads + ?Sized>(i: usize, loads: &L) -> f64 {
    loads.cost(i) / loads.warmth(i)
}

/// Keeps a candidate with probability `f`; draws a number only while `f < 1`, so picks without
/// slow start consume the random stream exactly as they did before it existed.
fn keep<R: Rng + ?Sized>(rng: &mut R, f: f64) -> bool {
    f >= 1.0 || rng.random::<f64>() < f
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
        fn in_flight(&self, _: usize) -> u32 {
            0
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
        let mut loads = Fixed {
            cost: vec![1.0; 4],
            up: vec![true; 4],
        };
        let s = shares(&b, &loads, 4);
        for (got, want) in s.iter().zip([0.4, 0.1, 0.4, 0.1]) {
            assert!((got - want).abs() < 0.01, "{s:?}");
        }
        loads.up[0] = false;
        let s = shares(&b, &loads, 4);
        assert!(s[0] < 0.001, "{s:?}");
        assert!(
            (s[2] - 0.4).abs() > 0.05,
            "ejected share went elsewhere: {s:?}"
        );
    }

    #[test]
    fn p2c_prefers_cheap_endpoint() {
        let e = eps(3);
        let b = Balancer::new(&e, None, "me");
        let loads = Fixed {
            cost: vec![1.0, 10.0, 10.0],
            up: vec![true; 3],
        };
        let s = shares(&b, &loads, 3);
        // Endpoint 0 wins every pair it is in: 2 of the 3 pairs.
        assert!((s[0] - 2.0 / 3.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn subset_limits_eligible_endpoints() {
        let e = eps(10);
        let plan = ServicePlan {
            subset: vec![
                SubsetEntry {
                    endpoint: "127.0.0.1:1003".into(),
                    share: 3.0,
                },
                SubsetEntry {
                    endpoint: "127.0.0.1:1007".into(),
                    share: 1.0,
                },
            ],
            ..Default::default()
        };
        let b = Balancer::new(&e, Some(&plan), "me");
        assert_eq!(b.eligible(), &[3, 7]);
        assert!(b.allows(3) && !b.allows(0));
        let s = shares(
            &b,
            &Fixed {
                cost: vec![1.0; 10],
                up: vec![true; 10],
            },
            10,
        );
        assert!((s[3] - 0.75).abs() < 0.01, "{s:?}");

        let k = ServicePlan {
            subset_size: Some(4),
            ..Default::default()
        };
        let b = Balancer::new(&e, Some(&k), "me");
        assert_eq!(b.eligible().len(), 4);
        assert!(!b.is_weighted());
    }

    /// Loads with in-flight counts, for `least-request`.
    struct Busy {
        in_flight: Vec<u32>,
        up: Vec<bool>,
    }
    impl Loads for Busy {
        fn cost(&self, _: usize) -> f64 {
            1.0
        }
        fn available(&self, i: usize) -> bool {
            self.up[i]
        }
        fn in_flight(&self, i: usize) -> u32 {
            self.in_flight[i]
        }
    }

    fn with(algorithm: Algorithm) -> ServicePlan {
        ServicePlan {
            algorithm,
            ..Default::default()
        }
    }

    #[test]
    fn round_robin_cycles_over_eligible_and_skips_ejected() {
        let e = eps(4);
        let mut plan = with(Algorithm::RoundRobin);
        plan.subset = ["127.0.0.1:1000", "127.0.0.1:1002", "127.0.0.1:1003"]
            .map(|ep| SubsetEntry {
                endpoint: ep.into(),
                share: 1.0,
            })
            .to_vec();
        let b = Balancer::new(&e, Some(&plan), "me");
        let mut rng = SmallRng::seed_from_u64(1);
        let mut loads = Fixed {
            cost: vec![1.0; 4],
            up: vec![true; 4],
        };
        let picks: Vec<usize> = (0..6).map(|_| b.pick(&mut rng, &loads).unwrap()).collect();
        assert_eq!(picks, [0, 2, 3, 0, 2, 3]);
        assert!(!b.is_weighted());
        loads.up[2] = false;
        let picks: Vec<usize> = (0..3).map(|_| b.pick(&mut rng, &loads).unwrap()).collect();
        assert_eq!(picks, [0, 3, 3]);
        // Every eligible endpoint ejected: still picks (fail open).
        loads.up = vec![false; 4];
        assert!(b.pick(&mut rng, &loads).is_some());
        let none = Balancer::new(&[], Some(&with(Algorithm::RoundRobin)), "me");
        assert_eq!(none.pick(&mut rng, &loads), None);
    }

    #[test]
    fn least_request_prefers_fewer_in_flight() {
        let e = eps(3);
        let b = Balancer::new(&e, Some(&with(Algorithm::LeastRequest)), "me");
        let loads = Busy {
            in_flight: vec![0, 5, 5],
            up: vec![true; 3],
        };
        let mut rng = SmallRng::seed_from_u64(3);
        let mut c = [0u32; 3];
        for _ in 0..30_000 {
            c[b.pick(&mut rng, &loads).unwrap()] += 1;
        }
        // Endpoint 0 wins both pairs it is in: 2 of the 3 pairs.
        let s0 = f64::from(c[0]) / 30_000.0;
        assert!((s0 - 2.0 / 3.0).abs() < 0.02, "{c:?}");
    }

    #[test]
    fn p2c_ewma_ignores_weights_but_keeps_the_subset() {
        let e = eps(4);
        let mut plan = with(Algorithm::P2cEwma);
        plan.host_weights = BTreeMap::from([("h0".into(), 1.0)]);
        let b = Balancer::new(&e, Some(&plan), "me");
        assert_eq!(b.eligible(), &[0, 2]);
        assert!(!b.is_weighted());
        let loads = Fixed {
            cost: vec![5.0, 1.0, 1.0, 1.0],
            up: vec![true; 4],
        };
        let s = shares(&b, &loads, 4);
        // Two eligible endpoints: P2C always compares both and picks the cheaper.
        assert!(s[2] > 0.99, "{s:?}");
    }

    /// Loads with a slow start factor per endpoint.
    struct Warming {
        cost: Vec<f64>,
        in_flight: Vec<u32>,
        warmth: Vec<f64>,
    }
    impl Loads for Warming {
        fn cost(&self, i: usize) -> f64 {
            self.cost[i]
        }
        fn available(&self, _: usize) -> bool {
            true
        }
        fn in_flight(&self, i: usize) -> u32 {
            self.in_flight[i]
        }
        fn warmth(&self, i: usize) -> f64 {
            self.warmth[i]
        }
    }

    fn warm_shares(b: &Balancer, loads: &Warming) -> Vec<f64> {
        let n = loads.cost.len();
        let mut rng = SmallRng::seed_from_u64(7);
        let mut c = vec![0u32; n];
        let draws = 100_000;
        for _ in 0..draws {
            c[b.pick(&mut rng, loads).unwrap()] += 1;
        }
        c.iter().map(|&x| f64::from(x) / f64::from(draws)).collect()
    }

    /// `n` equal endpoints with two requests in flight each, the last at factor 0.1.
    fn one_warming(n: usize) -> Warming {
        let mut warmth = vec![1.0; n];
        warmth[n - 1] = 0.1;
        Warming {
            cost: vec![1.0; n],
            in_flight: vec![2; n],
            warmth,
        }
    }

    #[test]
    fn slow_start_in_weighted_modes_scales_the_weight() {
        let e = eps(4);
        let even = ServicePlan {
            host_weights: BTreeMap::from([("h0".into(), 1.0), ("h1".into(), 1.0)]),
            ..Default::default()
        };
        let b = Balancer::new(&e, Some(&even), "me");
        let s = warm_shares(&b, &one_warming(4));
        // weight x f: 0.1 / 3.1 of the draws, a little more from the bounded redraws.
        assert!((s[3] - 0.1 / 3.1).abs() < 0.005, "{s:?}");
        assert!((s[0] - 1.0 / 3.1).abs() < 0.01, "{s:?}");

        let p2c = ServicePlan {
            weighted_p2c: true,
            ..even
        };
        let b = Balancer::new(&e, Some(&p2c), "me");
        let s = warm_shares(&b, &one_warming(4));
        // Both candidates drawn by weight x f, then compared on equal costs (the first wins a
        // tie): about 2 x 0.032 x 1/2 of the picks, against 1/4 without slow start.
        assert!(s[3] < 0.05, "{s:?}");
        assert!(s[3] > 0.01, "still gets some traffic: {s:?}");
    }

    #[test]
    fn slow_start_in_p2c_scales_the_cost() {
        let e = eps(2);
        let b = Balancer::new(&e, None, "me");
        // Two endpoints: P2C always compares both; the warming one's cost counts ten times.
        let mut loads = Warming {
            cost: vec![1.0, 1.0],
            in_flight: vec![0, 0],
            warmth: vec![1.0, 0.1],
        };
        let s = warm_shares(&b, &loads);
        assert!(s[1] < 0.01, "{s:?}");
        // It wins again once its cost is below a tenth of its peer's (say, its estimate decayed
        // while it was avoided).
        loads.cost = vec![1.0, 0.05];
        let s = warm_shares(&b, &loads);
        assert!(s[1] > 0.99, "{s:?}");
        // Factor 1: plain P2C.
        loads.warmth = vec![1.0, 1.0];
        loads.cost = vec![1.0, 2.0];
        assert!(warm_shares(&b, &loads)[0] > 0.99);
    }

    #[test]
    fn slow_start_in_least_request_scales_in_flight() {
        let e = eps(3);
        let b = Balancer::new(&e, Some(&with(Algorithm::LeastRequest)), "me");
        let s = warm_shares(&b, &one_warming(3));
        // Equal in flight: the warming endpoint loses every pair it is in.
        assert!(s[2] < 0.01, "{s:?}");
        // Its peers at 20 in flight and it at 1: (1 + 1) / 0.1 = 20 < 21, it wins its pairs.
        let mut loads = one_warming(3);
        loads.in_flight = vec![20, 20, 1];
        let s = warm_shares(&b, &loads);
        assert!((s[2] - 2.0 / 3.0).abs() < 0.02, "{s:?}");
    }

    #[test]
    fn slow_start_in_round_robin_skips_the_turn() {
        let e = eps(4);
        let b = Balancer::new(&e, Some(&with(Algorithm::RoundRobin)), "me");
        let s = warm_shares(&b, &one_warming(4));
        // Its turn is kept one time in ten and otherwise goes to the next endpoint.
        assert!((s[3] - 0.025).abs() < 0.005, "{s:?}");
        assert!((s[0] - (0.25 + 0.225)).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn round_robin_without_warming_draws_no_random_number() {
        // A factor of 1 never consumes the random stream, so a proxy without slow start, and the
        // twin's seeded runs, pick exactly as before slow start existed.
        let e = eps(3);
        let b = Balancer::new(&e, Some(&with(Algorithm::RoundRobin)), "me");
        let mut rng = SmallRng::seed_from_u64(5);
        let loads = Warming {
            cost: vec![1.0; 3],
            in_flight: vec![0; 3],
            warmth: vec![1.0; 3],
        };
        for _ in 0..10 {
            b.pick(&mut rng, &loads);
        }
        assert_eq!(
            rng.random::<u64>(),
            SmallRng::seed_from_u64(5).random::<u64>()
        );
    }

    #[test]
    fn algorithm_names_in_plans() {
        let p: ServicePlan = serde_json::from_str(r#"{"algorithm": "least-request"}"#).unwrap();
        assert_eq!(p.algorithm, Algorithm::LeastRequest);
        let text = serde_json::to_string(&with(Algorithm::RoundRobin)).unwrap();
        assert!(text.contains(r#""algorithm":"round-robin""#), "{text}");
        assert!(
            !serde_json::to_string(&ServicePlan::default())
                .unwrap()
                .contains("algorithm")
        );
        assert!(serde_json::from_str::<ServicePlan>(r#"{"algorithm": "fastest"}"#).is_err());
    }
}
