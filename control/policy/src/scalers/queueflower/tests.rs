use loadshift_core::telemetry::WindowSnapshot;
use proptest::prelude::*;

use super::*;
use crate::{CallEdge, FlowState, Objective, ServiceState, testing};

/// Services as `(name, containers, mean latency ms)`.
fn snap(services: &[(&str, usize, f64)]) -> Snapshot {
    testing::snapshot(
        services
            .iter()
            .map(|&(name, n, ms)| ServiceState {
                name: name.into(),
                containers: (0..n)
                    .map(|i| testing::container(i as u16 + 1, "h1", ms, 100))
                    .collect(),
                ..Default::default()
            })
            .collect(),
    )
}

fn to(ds: &[ScaleDecision]) -> Vec<(&str, u32, u32)> {
    ds.iter()
        .map(|d| (d.service.as_str(), d.from, d.to))
        .collect()
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(0)
}

#[test]
fn pods_follow_the_queues_after_one_each() {
    // 1 each, then 8 pods split 1 : 3.
    assert_eq!(allocate(&[1.0, 3.0], 10, &mut rng()), [3, 7]);
    assert_eq!(allocate(&[2.0, 1.0, 1.0], 7, &mut rng()), [3, 2, 2]);
    // A service without a queue keeps its one pod.
    assert_eq!(allocate(&[0.0, 5.0], 6, &mut rng()), [1, 5]);
    // Nothing to go by: even.
    assert_eq!(allocate(&[0.0, 0.0, 0.0], 9, &mut rng()), [3, 3, 3]);
    assert_eq!(allocate(&[f64::NAN, f64::INFINITY], 4, &mut rng()), [2, 2]);
    // Under budget: one each.
    assert_eq!(allocate(&[1.0, 9.0, 5.0], 2, &mut rng()), [1, 1, 1]);
    assert!(allocate(&[], 5, &mut rng()).is_empty());
}

#[test]
fn the_remainder_is_drawn_by_the_queues() {
    // One pod left over for queues 1 : 3 : 0, drawn 4000 times.
    let mut r = rng();
    let mut hits = [0u32; 3];
    for _ in 0..4000 {
        let got = allocate(&[1.0, 3.0, 0.0], 4, &mut r);
        assert_eq!(got.iter().sum::<u32>(), 4);
        for (h, g) in hits.iter_mut().zip(got) {
            *h += g - 1;
        }
    }
    assert_eq!(hits[2], 0, "a service without a queue never draws");
    assert!((800..1200).contains(&hits[0]), "{hits:?}");
    // The same seed draws the same.
    let draw = |seed| allocate(&[1.0, 1.0, 1.0], 5, &mut StdRng::seed_from_u64(seed));
    assert_eq!(draw(7), draw(7));
}

proptest! {
    #[test]
    fn allocation_spends_the_budget_and_leaves_no_service_empty(
        q in prop::collection::vec(prop_oneof![Just(0.0), 0.0..1e6f64, 0.0..1e-6f64], 1..12),
        extra in 0u32..200,
        seed: u64,
    ) {
        let x = q.len() as u32 + extra;
        let got = allocate(&q, x, &mut StdRng::seed_from_u64(seed));
        prop_assert_eq!(got.len(), q.len());
        prop_assert_eq!(got.iter().sum::<u32>(), x);
        prop_assert!(got.iter().all(|&n| n >= 1));
    }
}

/// Three services a (10 ms), b (20 ms), c (30 ms), 2 containers each; a calls b and c. Flow `f`
/// enters at a: mean 150 ms and p95 250 ms against 100 ms at p95 (c_f 0.5, g_f 1.5). Flow `h`
/// enters at c: mean 50 ms, p95 200 ms (c_h 0, g_h 1).
fn shop() -> Snapshot {
    let mut s = snap(&[("a", 2, 10.0), ("b", 2, 20.0), ("c", 2, 30.0)]);
    let edge = |a: Option<&str>, b: &str| CallEdge {
        caller: a.map(String::from),
        callee: b.into(),
        rps: 10.0,
    };
    s.edges = vec![edge(None, "a"), edge(Some("a"), "b"), edge(Some("a"), "c")];
    let flow = |entry: &str, mean_ms, p95_ms| FlowState {
        entry: entry.into(),
        sla: Some(Objective {
            sla_ms: 100.0,
            percentile: 95.0,
        }),
        e2e: Some(WindowSnapshot {
            count: 10,
            mean_ms,
            p95_ms,
            ..Default::default()
        }),
        offered_rps: 10.0,
    };
    s.flows.insert("f".into(), flow("a", 150.0, 250.0));
    s.flows.insert("h".into(), flow("c", 50.0, 200.0));
    s
}

#[test]
fn queues_add_normalised_latency_and_the_violations_of_the_flows_through() {
    let snap = shop();
    let qf = QueueFlower::new(QueueFlowerParams::default());
    let g = &app::groups(&snap, None)[0];
    // Mean latency 20 ms: a 0.5, b 1, c 1.5. f reaches all three (0.5 + 1.5), h only c (0 + 1).
    let q = qf.queues(&snap, g);
    let want = [0.5 + 2.0, 1.0 + 2.0, 1.5 + 2.0 + 1.0];
    for (got, want) in q.iter().zip(want) {
        assert!((got - want).abs() < 1e-12, "{q:?}");
    }
    let weighted = QueueFlower::new(QueueFlowerParams {
        w1: 2.0,
        w2: 0.0,
        w3: 1.0,
        ..Default::default()
    });
    let q = weighted.queues(&snap, g);
    let want = [1.0 + 1.5, 2.0 + 1.5, 3.0 + 1.5 + 1.0];
    for (got, want) in q.iter().zip(want) {
        assert!((got - want).abs() < 1e-12, "{q:?}");
    }
}

#[test]
fn first_round_is_even_then_proportional() {
    let snap = shop();
    let mut qf = QueueFlower::new(QueueFlowerParams {
        budget: 23,
        ..Default::default()
    });
    // First round: 1 each, then 20 split evenly: 7 + 1 each... 23 / 3 with the rest drawn.
    let first = qf.scale(&snap);
    let total: u32 = ["a", "b", "c"]
        .iter()
        .map(|s| first.iter().find(|d| d.service == *s).map_or(2, |d| d.to))
        .sum();
    assert_eq!(total, 23);
    assert!(first.iter().all(|d| (7..=9).contains(&d.to)), "{first:?}");
    assert!(
        first[0].reason.contains("first round"),
        "{}",
        first[0].reason
    );
    // Then queues 2.5 : 3 : 4.5 over the 20 pods past one each: 5, 6, 9 exactly.
    let second = qf.scale(&snap);
    assert_eq!(to(&second), [("a", 2, 6), ("b", 2, 7), ("c", 2, 10)]);
    assert!(
        second[2].reason.contains("queue 4.50 of 10.00"),
        "{}",
        second[2].reason
    );
}

#[test]
fn the_budget_is_the_first_count_and_at_least_one_each() {
    // 2 + 3 + 4 = 9 at the first round: 3 each.
    let mut qf = QueueFlower::new(QueueFlowerParams::default());
    let got = qf.scale(&snap(&[("a", 2, 10.0), ("b", 3, 10.0), ("c", 4, 10.0)]));
    assert_eq!(to(&got), [("a", 2, 3), ("c", 4, 3)]);
    // The budget stays 9 when the counts change.
    let got = qf.scale(&snap(&[("a", 5, 10.0), ("b", 5, 10.0), ("c", 5, 10.0)]));
    assert_eq!(got.iter().map(|d| d.to).sum::<u32>(), 9, "{got:?}");
    let mut tight = QueueFlower::new(QueueFlowerParams {
        budget: 2,
        ..Default::default()
    });
    let got = tight.scale(&snap(&[("a", 2, 10.0), ("b", 3, 10.0), ("c", 4, 10.0)]));
    assert_eq!(to(&got), [("a", 2, 1), ("b", 3, 1), ("c", 4, 1)]);
    assert!(
        got[0].reason.contains("budget 2 pods < 3 services"),
        "{}",
        got[0].reason
    );
}

#[test]
fn params_check_names_the_field() {
    assert!(QueueFlowerParams::default().check().is_ok());
    let d = QueueFlowerParams::default();
    assert_eq!(
        QueueFlowerParams { w2: -1.0, ..d }.check().unwrap_err().0,
        "w2"
    );
    assert_eq!(
        QueueFlowerParams {
            interval_ms: 0,
            ..d
        }
        .check()
        .unwrap_err()
        .0,
        "interval_ms"
    );
}
