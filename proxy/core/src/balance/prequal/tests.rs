//! The hot-cold rule on hand-made pools, the pool's age limit, cap and removal, and `prequal`
//! through the balancer.

use std::time::Duration;

use rand::{SeedableRng, rngs::SmallRng};

use super::*;
use crate::{
    balance::{Balancer, Mode},
    endpoint::Endpoint,
    plan::{Algorithm, ServicePlan},
};

const MS: Duration = Duration::from_millis(1);

fn e(i: usize, rif: f64, latency_ms: f64) -> Entry {
    Entry {
        i,
        rif,
        latency_ms,
        age: 10 * MS,
    }
}

/// Per endpoint: a report (or none), this caller's own in-flight count and P2C cost (ns).
struct Reports {
    reported: Vec<Option<Reported>>,
    in_flight: Vec<u32>,
    cost_ns: Vec<f64>,
    up: Vec<bool>,
    warmth: Vec<f64>,
}

impl Reports {
    /// `n` endpoints reporting `rif` and `latency_ms` 10 ms ago.
    fn fresh(rif_latency: &[(u32, f64)]) -> Self {
        let n = rif_latency.len();
        Self {
            reported: rif_latency
                .iter()
                .map(|&(rif, latency_ms)| {
                    Some(Reported {
                        rif,
                        latency_ms,
                        overhead_ms: 0.0,
                        age: 10 * MS,
                    })
                })
                .collect(),
            in_flight: vec![0; n],
            cost_ns: vec![10e6; n],
            up: vec![true; n],
            warmth: vec![1.0; n],
        }
    }
}

impl Loads for Reports {
    fn cost(&self, i: usize) -> f64 {
        self.cost_ns[i]
    }
    fn available(&self, i: usize) -> bool {
        self.up[i]
    }
    fn in_flight(&self, i: usize) -> u32 {
        self.in_flight[i]
    }
    fn warmth(&self, i: usize) -> f64 {
        self.warmth[i]
    }
    fn reported(&self, i: usize) -> Option<Reported> {
        self.reported[i]
    }
}

fn eps(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| {
            let addr = format!("127.0.0.1:{}", 2000 + i).parse().unwrap();
            Endpoint::new(addr, format!("h{}", i % 2), "z", format!("c{i}"))
        })
        .collect()
}

fn prequal(n: usize) -> Balancer {
    let plan = ServicePlan {
        algorithm: Algorithm::Prequal,
        ..Default::default()
    };
    Balancer::new(&eps(n), Some(&plan), "me")
}

#[test]
fn threshold_is_the_q_rif_quantile_of_the_pool() {
    let pool: Vec<Entry> = [3.0, 0.0, 2.0, 1.0]
        .iter()
        .enumerate()
        .map(|(i, &r)| e(i, r, 1.0))
        .collect();
    // h = 0.841 x 3 = 2.52: between the third (2) and fourth (3) smallest.
    let t = threshold(&pool).unwrap();
    assert!((t - (2.0 + (Q_RIF * 3.0 - 2.0))).abs() < 1e-12, "{t}");
    assert_eq!(threshold(&pool[..1]), Some(3.0));
    assert_eq!(threshold(&[]), None);
    assert!((0.6..=0.9).contains(&Q_RIF) && (Q_RIF - 2f64.powf(-0.25)).abs() < 1e-15);
}

#[test]
fn the_cold_entry_with_the_lowest_latency_wins() {
    // RIFs 0, 1, 1, 9: threshold 1 + 0.52 x 8 = 5.2, so the first three are cold; among them the
    // lowest latency wins, though it is not the lowest RIF. The hot one is fastest of all, and
    // loses.
    let pool = [
        e(0, 0.0, 30.0),
        e(1, 1.0, 12.0),
        e(2, 1.0, 20.0),
        e(3, 9.0, 1.0),
    ];
    let t = threshold(&pool).unwrap();
    assert!(t > 1.0 && t < 9.0, "{t}");
    assert_eq!(hot_cold(&pool, t), Some(1));
}

#[test]
fn with_none_cold_the_lowest_rif_wins_then_latency() {
    // Equal RIFs: the threshold is that RIF and nothing is below it.
    let pool = [e(0, 4.0, 30.0), e(1, 4.0, 12.0), e(2, 4.0, 20.0)];
    let t = threshold(&pool).unwrap();
    assert_eq!(t, 4.0);
    assert_eq!(hot_cold(&pool, t), Some(1));
    // A threshold from elsewhere (the weighted pick's pool) below every entry: lowest RIF.
    let pool = [e(0, 6.0, 1.0), e(1, 5.0, 50.0), e(2, 7.0, 2.0)];
    assert_eq!(hot_cold(&pool, 2.0), Some(1));
    assert_eq!(hot_cold(&[], 2.0), None);
}

#[test]
fn settle_applies_the_rule_to_two_candidates() {
    let (cold_slow, hot_fast) = (e(4, 1.0, 50.0), e(7, 9.0, 1.0));
    assert_eq!(settle(&cold_slow, &hot_fast, 3.0), 4);
    assert_eq!(settle(&hot_fast, &cold_slow, 3.0), 4);
    // Both cold: latency; both hot: RIF.
    assert_eq!(settle(&cold_slow, &e(8, 2.0, 10.0), 3.0), 8);
    assert_eq!(settle(&hot_fast, &e(8, 5.0, 90.0), 3.0), 8);
}

#[test]
fn a_stale_report_is_dropped_for_the_callers_own_view() {
    // Endpoint 0 reported idle and fast, 1.5 s ago; this caller has 5 requests in flight there.
    let mut loads = Reports::fresh(&[(0, 1.0), (2, 10.0), (2, 10.0)]);
    loads.reported[0] = Some(Reported {
        rif: 0,
        latency_ms: 1.0,
        overhead_ms: 0.0,
        age: 1500 * MS,
    });
    loads.in_flight[0] = 5;
    // Own view: RIF 5 (hot), latency from the P2C cost: 60 ms / 6 = 10 ms.
    loads.cost_ns[0] = 60e6;
    let stale = Entry::of(0, &loads);
    assert_eq!((stale.rif, stale.latency_ms), (5.0, 10.0));
    assert_eq!(stale.age, 1500 * MS);
    let b = prequal(3);
    let mut rng = SmallRng::seed_from_u64(1);
    assert_ne!(b.pick(&mut rng, &loads), Some(0));
    // The same report 0.9 s old still counts: idle and fastest.
    loads.reported[0].as_mut().unwrap().age = 900 * MS;
    assert_eq!(b.pick(&mut rng, &loads), Some(0));
    // Without any report an endpoint is judged on the caller's own view too, its age the oldest.
    loads.reported[0] = None;
    let own = Entry::of(0, &loads);
    assert_eq!((own.rif, own.age), (5.0, Duration::MAX));
}

#[test]
fn an_empty_pool_falls_back_to_a_random_endpoint() {
    // Twenty endpoints: a slot pool, empty at the first pick of a fresh balancer.
    let loads = Reports::fresh(&[(0, 10.0); 20]);
    let mut counts = [0u32; 20];
    let mut rng = SmallRng::seed_from_u64(2);
    for _ in 0..4000 {
        let b = prequal(20);
        counts[b.pick(&mut rng, &loads).unwrap()] += 1;
    }
    // Uniform: 200 each, give or take.
    assert!(
        counts.iter().all(|&c| (140..=260).contains(&c)),
        "{counts:?}"
    );
    // Every endpoint ejected: still one (failing open), at random.
    let mut down = Reports::fresh(&[(0, 10.0); 4]);
    down.up = vec![false; 4];
    let b = prequal(4);
    let picks: std::collections::BTreeSet<usize> =
        (0..50).filter_map(|_| b.pick(&mut rng, &down)).collect();
    assert!(picks.len() > 1, "{picks:?}");
    assert_eq!(prequal(0).pick(&mut rng, &down), None);
}

#[test]
fn the_pool_holds_sixteen_and_evicts_the_oldest_then_the_worst() {
    let n = 20;
    let mut loads = Reports::fresh(&[(1, 10.0); 20]);
    // Endpoint 5's report is the oldest; endpoint 9 reports the most requests in flight.
    loads.reported[5].as_mut().unwrap().age = 800 * MS;
    loads.reported[9].as_mut().unwrap().rif = 30;
    let eligible: Vec<usize> = (0..n).collect();
    let pool = Pool::new(n);
    let mut now = pool.entries(&eligible, &loads);
    for i in 0..16 {
        pool.insert(i, &mut now);
    }
    assert_eq!(pool.members(), (0..16).collect::<Vec<_>>());
    // Full: endpoint 16 takes the oldest's slot, 17 the worst's, 18 the oldest of the rest.
    let mut now = pool.entries(&eligible, &loads);
    assert_eq!(now.as_slice().len(), 16);
    pool.insert(16, &mut now);
    assert!(!pool.members().contains(&5), "{:?}", pool.members());
    pool.insert(17, &mut now);
    assert!(!pool.members().contains(&9), "{:?}", pool.members());
    // A member probed again changes nothing.
    pool.insert(17, &mut now);
    assert_eq!(pool.members().len(), 16);
    pool.insert(18, &mut now);
    let m = pool.members();
    assert_eq!(m.len(), 16);
    assert!(
        m.contains(&16) && m.contains(&17) && m.contains(&18),
        "{m:?}"
    );
    // Equal RIFs: the worst is the slowest.
    let mut slow = Reports::fresh(&[(1, 10.0); 20]);
    slow.reported[3].as_mut().unwrap().latency_ms = 99.0;
    let pool = Pool::new(n);
    let mut now = pool.entries(&eligible, &slow);
    for i in 0..16 {
        pool.insert(i, &mut now);
    }
    let mut now = pool.entries(&eligible, &slow);
    pool.evictions.store(1, Ordering::Relaxed);
    pool.insert(19, &mut now);
    assert!(!pool.members().contains(&3), "{:?}", pool.members());
}

#[test]
fn prequal_fills_its_pool_from_probes_and_keeps_it_at_sixteen() {
    let loads = Reports::fresh(&[(1, 10.0); 40]);
    let b = prequal(40);
    let mut rng = SmallRng::seed_from_u64(3);
    for _ in 0..200 {
        b.pick(&mut rng, &loads);
    }
    let Mode::Prequal(pool) = &b.mode else {
        panic!("prequal mode")
    };
    let m = pool.members();
    assert_eq!(m.len(), 16);
    // Few endpoints: no slots, every one is in the pool.
    let Mode::Prequal(small) = &prequal(16).mode else {
        panic!("prequal mode")
    };
    assert!(small.members().is_empty());
}

#[test]
fn prequal_steers_away_from_a_high_reported_rif() {
    // Endpoint 0 is the fastest but reports 20 requests in flight; the others 1 or 2.
    let loads = Reports::fresh(&[(20, 1.0), (1, 10.0), (2, 8.0), (1, 12.0)]);
    let b = prequal(4);
    let mut rng = SmallRng::seed_from_u64(4);
    for _ in 0..100 {
        // RIFs 20, 1, 2, 1: threshold 2 + 0.52 x 18 = 11.4; cold 1, 2, 3; 2 is fastest.
        assert_eq!(b.pick(&mut rng, &loads), Some(2));
    }
}

#[test]
fn each_pick_counts_in_the_next_and_load_spreads() {
    // Four idle, equally fast endpoints; the caller adds what it sends to the reported RIF.
    let mut loads = Reports::fresh(&[(0, 10.0); 4]);
    let b = prequal(4);
    let mut rng = SmallRng::seed_from_u64(5);
    let mut counts = [0u32; 4];
    for _ in 0..400 {
        let i = b.pick(&mut rng, &loads).unwrap();
        counts[i] += 1;
        loads.reported[i].as_mut().unwrap().rif += 1;
    }
    assert_eq!(counts, [100; 4]);
}

#[test]
fn a_far_endpoint_pays_its_overhead() {
    // Equal apps; the second is 40 ms of network away from this caller.
    let mut loads = Reports::fresh(&[(0, 10.0), (0, 10.0)]);
    loads.reported[0].as_mut().unwrap().overhead_ms = 40.0;
    assert_eq!(Entry::of(0, &loads).latency_ms, 50.0);
    let b = prequal(2);
    let mut rng = SmallRng::seed_from_u64(8);
    assert_eq!(b.pick(&mut rng, &loads), Some(1));
}

#[test]
fn slow_start_makes_a_warming_endpoint_hot_sooner_and_slower() {
    let mut loads = Reports::fresh(&[(1, 10.0), (1, 10.0)]);
    loads.warmth[1] = 0.5;
    let warm = Entry::of(1, &loads);
    assert_eq!((warm.rif, warm.latency_ms), (3.0, 20.0));
    assert_eq!(Entry::per_weight(1, &loads, 1.0).rif, 1.0);
    let b = prequal(2);
    let mut rng = SmallRng::seed_from_u64(6);
    assert_eq!(b.pick(&mut rng, &loads), Some(0));
}

#[test]
fn inside_weights_candidates_follow_the_weights_and_the_rule_settles() {
    use std::collections::BTreeMap;
    // Host h0 (endpoints 0 and 2) gets everything; endpoint 0 reports hot.
    let plan = ServicePlan {
        algorithm: Algorithm::Prequal,
        host_weights: BTreeMap::from([("h0".into(), 1.0), ("h1".into(), 0.0)]),
        ..Default::default()
    };
    let b = Balancer::new(&eps(4), Some(&plan), "me");
    assert!(b.is_weighted());
    assert_eq!(b.eligible(), &[0, 2]);
    let loads = Reports::fresh(&[(9, 1.0), (0, 1.0), (1, 30.0), (0, 1.0)]);
    let mut rng = SmallRng::seed_from_u64(7);
    let mut counts = [0u32; 4];
    for _ in 0..1000 {
        counts[b.pick(&mut rng, &loads).unwrap()] += 1;
    }
    // Never outside the weights; 0 wins only when every redraw drew it again (1 in 64).
    assert_eq!(counts[1] + counts[3], 0, "{counts:?}");
    assert!(counts[0] < 40, "{counts:?}");
}

#[test]
fn inside_weights_each_candidate_counts_per_unit_of_its_weight() {
    use std::collections::BTreeMap;
    // 9:1 weights over two equally fast endpoints; every pick adds one request in flight to
    // the one picked. Per unit of weight the light one is hot until the heavy one carries about
    // nine times its requests, so the planned shares hold.
    let plan = ServicePlan {
        algorithm: Algorithm::Prequal,
        host_weights: BTreeMap::from([("h0".into(), 0.9), ("h1".into(), 0.1)]),
        ..Default::default()
    };
    let b = Balancer::new(&eps(2), Some(&plan), "me");
    let mut loads = Reports::fresh(&[(0, 10.0), (0, 10.0)]);
    let mut rng = SmallRng::seed_from_u64(9);
    let mut counts = [0u32; 2];
    for _ in 0..1000 {
        let i = b.pick(&mut rng, &loads).unwrap();
        counts[i] += 1;
        loads.reported[i].as_mut().unwrap().rif += 1;
    }
    assert!((80..=120).contains(&counts[1]), "{counts:?}");
}
