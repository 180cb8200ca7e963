use std::sync::Arc;

use loadshift_core::telemetry::{WindowSnapshot, pressure::HostPressure};

use super::per_service::Pick;
use super::*;
use crate::{ContainerState, FlowState, Objective, ServiceState};

/// A container on `host` that served `rps` over a 10 s window at a mean of 10 ms.
fn container(port: u16, host: &str, rps: f64) -> ContainerState {
    let mut c = crate::testing::container(port, host, 10.0, (rps * 10.0).round() as u64);
    c.inbound = c.inbound.map(|w| WindowSnapshot {
        p50_ms: 9.0,
        p99_ms: 30.0,
        window_s: 10.0,
        ..w
    });
    c
}

/// A flow with a 100 ms p95 objective whose measured p95 is `ratio` times it.
fn flow(entry: &str, ratio: f64, offered_rps: f64) -> FlowState {
    FlowState {
        entry: entry.into(),
        sla: Some(Objective {
            sla_ms: 100.0,
            percentile: 95.0,
        }),
        e2e: Some(WindowSnapshot {
            count: 100,
            mean_ms: 50.0 * ratio,
            p50_ms: 40.0 * ratio,
            p95_ms: 100.0 * ratio,
            p99_ms: 150.0 * ratio,
            window_s: 10.0,
            ..Default::default()
        }),
        offered_rps,
    }
}

/// At `secs`: services with containers as `(host, rps)` each, one flow entering at the first.
fn scene(secs: u64, ratio: f64, offered_rps: f64, services: &[(&str, &[(&str, f64)])]) -> Snapshot {
    let mut port = 0;
    let mut snap = crate::testing::snapshot(
        services
            .iter()
            .map(|(name, cs)| ServiceState {
                name: name.to_string(),
                containers: cs
                    .iter()
                    .map(|&(h, rps)| {
                        port += 1;
                        container(port, h, rps)
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
    );
    snap.now = Duration::from_secs(secs);
    snap.flows
        .insert("f".into(), flow(services[0].0, ratio, offered_rps));
    snap
}

const FIVE: &[(&str, f64)] = &[
    ("h1", 10.0),
    ("h1", 10.0),
    ("h2", 10.0),
    ("h2", 10.0),
    ("h2", 10.0),
];

/// Two services of five containers (R = 10) behind one flow of `offered_rps` (P = W / 10).
fn ten(secs: u64, ratio: f64, offered_rps: f64) -> Snapshot {
    scene(secs, ratio, offered_rps, &[("a", FIVE), ("b", FIVE)])
}

/// Containers added (negative: removed) over every decision.
fn total(ds: &[ScaleDecision]) -> i64 {
    ds.iter().map(|d| i64::from(d.to) - i64::from(d.from)).sum()
}

fn point(l: f64, p: f64) -> Point {
    Point { l, p }
}

#[test]
fn alg2_takes_newton_steps_only_on_a_consistent_large_change() {
    let p = ImbresParams::default();
    // Newton: (1.6 - 2)(8 - 10) > 0 and 0.4 / 1.6 >= 0.1:
    // dP = 0.5 (8 - 10)(1 - 1.6) / (1.6 - 2) = 0.5 * -2 * -0.6 / -0.4 = -1.5.
    let s = alg2(&p, Some(point(2.0, 10.0)), point(1.6, 8.0));
    assert!(s.newton);
    assert!((s.dp + 1.5).abs() < 1e-12, "{}", s.dp);
    // beta guard: 0.1 / 1.9 < 0.1, first order: 0.2 (1 - 1.9) 8 / 1.9.
    let s = alg2(&p, Some(point(2.0, 10.0)), point(1.9, 8.0));
    assert!(!s.newton);
    assert!((s.dp - 0.2 * -0.9 * 8.0 / 1.9).abs() < 1e-12, "{}", s.dp);
    // A lower beta lets the same change take the Newton step.
    let loose = ImbresParams { beta: 0.05, ..p };
    assert!(alg2(&loose, Some(point(2.0, 10.0)), point(1.9, 8.0)).newton);
    // Latency up while P went down: noise, first order.
    let s = alg2(&p, Some(point(2.0, 10.0)), point(2.5, 8.0));
    assert!(!s.newton);
    assert!((s.dp - 0.2 * -1.5 * 8.0 / 2.5).abs() < 1e-12);
    // First round: first order, towards the SLA from either side.
    let up = alg2(&p, None, point(0.5, 10.0));
    assert!(
        !up.newton && (up.dp - 2.0).abs() < 1e-12,
        "0.2 * 0.5 * 10 / 0.5"
    );
    let down = alg2(&p, None, point(2.0, 10.0));
    assert!((down.dp + 1.0).abs() < 1e-12, "0.2 * -1 * 10 / 2");
}

#[test]
fn above_the_sla_adds_below_removes() {
    // l = 2, P = 10: P* = 9, R* = 11.1, dR = +1.
    let ds = Imbres::new(ImbresParams::default()).scale(&ten(60, 2.0, 100.0));
    assert_eq!(total(&ds), 1, "{ds:?}");
    assert!(
        ds[0].reason.starts_with("imbres: tail/SLA 2.00"),
        "{}",
        ds[0].reason
    );
    assert!(ds[0].reason.contains("first order"), "{}", ds[0].reason);
    // l = 0.5: P* = 12, R* = 8.3, dR = -2.
    let ds = Imbres::new(ImbresParams::default()).scale(&ten(60, 0.5, 100.0));
    assert_eq!(total(&ds), -2, "{ds:?}");
    assert!(ds.iter().all(|d| d.to >= 1 && d.to < d.from));
}

#[test]
fn the_worst_flow_at_its_own_percentile_steers() {
    // A second flow at p99 whose p99 is 1.5 x 150 = 225 ms against 112.5: l = 2, as `ten`'s at 2;
    // the first flow at 0.5 alone would remove containers.
    let mut snap = ten(60, 0.5, 50.0);
    let mut g = flow("b", 1.5, 50.0);
    g.sla = Some(Objective {
        sla_ms: 112.5,
        percentile: 99.0,
    });
    snap.flows.insert("g".into(), g);
    let ds = Imbres::new(ImbresParams::default()).scale(&snap);
    assert_eq!(total(&ds), 1, "{ds:?}");
    assert!(ds[0].reason.contains("flow g at p99"), "{}", ds[0].reason);
}

#[test]
fn a_second_round_takes_the_newton_step() {
    let mut s = Imbres::new(ImbresParams::default());
    assert_eq!(total(&s.scale(&ten(60, 2.0, 100.0))), 1);
    // P 10 -> 8 and l 2 -> 1.6: dP = -1.5 (see alg2 test), P* = 6.5, R* = 80 / 6.5 = 12.3: +2.
    let ds = s.scale(&ten(120, 1.6, 80.0));
    assert_eq!(total(&ds), 2, "{ds:?}");
    assert!(
        ds[0]
            .reason
            .contains("P 8.0 -> 6.5 req/s per container, newton"),
        "{}",
        ds[0].reason
    );
}

#[test]
fn an_overshooting_newton_step_is_the_largest_step_up() {
    let mut s = Imbres::new(ImbresParams::default());
    s.scale(&ten(60, 2.6, 40.0));
    // P 4 -> 12, l 2.6 -> 3: dP = 0.5 * 8 * (1 - 3) / 0.4 = -20, P* = -8: max step 10 / 2 = 5.
    let ds = s.scale(&ten(120, 3.0, 120.0));
    assert_eq!(total(&ds), 5, "{ds:?}");
    assert!(ds[0].reason.contains("largest step up"), "{}", ds[0].reason);
}

#[test]
fn steps_are_capped_and_clamped_to_the_replica_range() {
    // l = 0.1: P* = 10 + 0.2 * 0.9 * 10 / 0.1 = 28, R* = 3.6, dR = -6; capped at 10 / 2.
    let ds = Imbres::new(ImbresParams::default()).scale(&ten(60, 0.1, 100.0));
    assert_eq!(total(&ds), -5, "{ds:?}");
    assert!(
        ds[0].reason.contains("R* - R = -6, capped"),
        "{}",
        ds[0].reason
    );
    let one = ImbresParams {
        max_step: 1,
        ..Default::default()
    };
    assert_eq!(total(&Imbres::new(one).scale(&ten(60, 0.5, 100.0))), -1);
    // At most one container per service above min_replicas 4: two in all.
    let floor = ImbresParams {
        min_replicas: 4,
        ..Default::default()
    };
    let ds = Imbres::new(floor).scale(&ten(60, 0.1, 100.0));
    assert_eq!(total(&ds), -2, "{ds:?}");
    assert!(ds.iter().all(|d| d.to == 4));
    // Every service at max_replicas: nothing to add.
    let full = ImbresParams {
        max_replicas: 5,
        ..Default::default()
    };
    assert!(Imbres::new(full).scale(&ten(60, 3.0, 100.0)).is_empty());
}

#[test]
fn no_scale_down_within_the_cooldown_of_a_scale_up() {
    let mut s = Imbres::new(ImbresParams::default());
    assert_eq!(total(&s.scale(&ten(60, 2.0, 100.0))), 1);
    // 60 s after the scale-up, inside the 120 s cool-down.
    assert!(s.scale(&ten(120, 0.5, 100.0)).is_empty());
    // 180 s after: allowed. Previous point (0.5, 10), this one the same: first order, -2.
    assert_eq!(total(&s.scale(&ten(240, 0.5, 100.0))), -2);
    // Scale-up is never cooled down.
    let mut s = Imbres::new(ImbresParams::default());
    s.scale(&ten(60, 2.0, 100.0));
    assert_eq!(total(&s.scale(&ten(90, 2.0, 100.0))), 1);
}

#[test]
fn no_scale_down_while_the_shares_still_move() {
    let even: &[(&str, f64)] = &[("h1", 20.0), ("h2", 20.0)];
    let skewed: &[(&str, f64)] = &[("h1", 32.0), ("h2", 8.0)];
    let snap = |secs: u64, ratio: f64, a: &[(&str, f64)]| {
        scene(secs, ratio, 100.0, &[("a", a), ("b", FIVE), ("c", FIVE)])
    };
    let mut s = Imbres::new(ImbresParams::default());
    s.observe(&snap(55, 0.5, even));
    // a's shares moved from (0.5, 0.5) to (0.8, 0.2): 0.3 > 0.05, held.
    assert!(s.scale(&snap(60, 0.5, skewed)).is_empty());
    assert_eq!(
        s.shifting(&app::groups(&snap(60, 0.5, skewed), None)[0])
            .map(|m| m.0),
        Some("a".into())
    );
    // The shares settle; the next round scales down.
    s.observe(&snap(65, 0.5, skewed));
    assert!(total(&s.scale(&snap(120, 0.5, skewed))) < 0);
    // Moving shares do not hold a scale-up.
    let mut s = Imbres::new(ImbresParams::default());
    s.observe(&snap(55, 2.0, even));
    assert!(total(&s.scale(&snap(60, 2.0, skewed))) > 0);
    // Shares that never settle hold at most `max_hold_rounds` rounds in a row.
    let mut s = Imbres::new(ImbresParams::default());
    let mut held = 0;
    for round in 0..4u64 {
        let (before, after) = if round % 2 == 0 {
            (even, skewed)
        } else {
            (skewed, even)
        };
        s.observe(&snap(55 + 60 * round, 0.5, before));
        if s.scale(&snap(60 + 60 * round, 0.5, after)).is_empty() {
            held += 1;
        } else {
            break;
        }
    }
    assert_eq!(held, 2, "two rounds held, the third scales down");
    // A looser threshold lets the same movement pass.
    let loose = ImbresParams {
        converged_shift: 0.35,
        ..Default::default()
    };
    let mut s = Imbres::new(loose);
    s.observe(&snap(55, 0.5, even));
    assert!(total(&s.scale(&snap(60, 0.5, skewed))) < 0);
}

#[test]
fn no_traffic_or_no_latency_no_decision() {
    let mut s = Imbres::new(ImbresParams::default());
    assert!(s.scale(&ten(60, 2.0, 0.0)).is_empty(), "no traffic");
    let mut snap = ten(60, 2.0, 100.0);
    snap.flows.get_mut("f").unwrap().sla = None;
    assert!(s.scale(&snap).is_empty(), "no objective");
    let mut snap = ten(60, 2.0, 100.0);
    snap.flows.get_mut("f").unwrap().e2e = Some(WindowSnapshot::default());
    assert!(s.scale(&snap).is_empty(), "no measured requests");
}

#[test]
fn only_owned_services_count_and_change() {
    let mut s = Imbres::new(ImbresParams::default());
    s.set_owned(&["a".to_string()].into());
    // R = 5 (a alone), W = 50, P = 10, l = 0.5: P* = 12, R* = 4.2, dR = -1 on a.
    let ds = s.scale(&scene(60, 0.5, 50.0, &[("a", FIVE), ("b", FIVE)]));
    assert_eq!(
        ds.iter()
            .map(|d| (d.service.as_str(), d.from, d.to))
            .collect::<Vec<_>>(),
        [("a", 5, 4)]
    );
}

#[test]
fn the_imbalanced_service_gets_the_container() {
    // Equal load per container (8 rps) and service time; b's is split 12 / 4 over its hosts
    // (alpha 1.5), a's evenly (alpha 1), so only the imbalance index keeps a tie from going to
    // a. l = 5 on R = 4: P* = 0.84 P, R* = 4.76, dR = +1.
    let even: &[(&str, f64)] = &[("h1", 8.0), ("h2", 8.0)];
    let skewed: &[(&str, f64)] = &[("h1", 12.0), ("h2", 4.0)];
    for order in [[("a", even), ("b", skewed)], [("b", skewed), ("a", even)]] {
        let ds = Imbres::new(ImbresParams::default()).scale(&scene(60, 5.0, 32.0, &order));
        assert_eq!(
            ds.iter()
                .map(|d| (d.service.as_str(), d.from, d.to))
                .collect::<Vec<_>>(),
            [("b", 2, 3)]
        );
    }
}

#[test]
fn a_candidate_reads_load_imbalance_interference_and_service_time() {
    let mut svc = ServiceState {
        name: "a".into(),
        containers: vec![
            container(1, "h1", 20.0),
            container(2, "h1", 10.0),
            container(3, "h2", 10.0),
        ],
        ..Default::default()
    };
    if let Some(w) = svc.containers[1].inbound.as_mut() {
        w.mean_ms = 4.0;
    }
    // Without inbound, the callers' outbound window counts.
    svc.containers[2].inbound = None;
    svc.containers[2].outbound = WindowSnapshot {
        count: 100,
        window_s: 10.0,
        ..Default::default()
    };
    let mut snap = crate::testing::snapshot(vec![svc.clone()]);
    let p = |cpu| HostPressure {
        cpu_util: cpu,
        ..Default::default()
    };
    snap.hosts = Arc::new([("h1".to_string(), p(0.6)), ("h2".to_string(), p(0.2))].into());
    let c = candidate(&snap, &ImbresParams::default(), "a", &svc, None);
    assert_eq!((c.containers, c.load_rps), (3, 40.0));
    // D = (30, 10): mean 20, sigma 10, alpha = 1 + 10 * 2 / 40.
    assert!((c.alpha - 1.5).abs() < 1e-12, "{}", c.alpha);
    assert!((c.interference.cpu - 0.4).abs() < 1e-12);
    assert_eq!(c.service_time_ms, Some(4.0));
    assert_eq!(imbalance(&[]), 1.0);
    assert_eq!(imbalance(&[0.0, 0.0]), 1.0);
    assert_eq!(imbalance(&[5.0, 5.0, 5.0]), 1.0);
}

/// The hand-computed example: `w_max` 100 rps (centres 12.5, 37.5, 62.5, 87.5).
fn example() -> (PerfTable, Vec<Candidate<'static>>) {
    let mut t = PerfTable::new(TableParams {
        max_load_rps: Some(100.0),
        ..Default::default()
    });
    let none = Interference::default();
    for (s, points) in [
        (
            "a",
            &[(12.5, 10.0), (37.5, 20.0), (62.5, 40.0), (87.5, 80.0)][..],
        ),
        ("b", &[(12.5, 5.0), (37.5, 15.0), (62.5, 25.0)][..]),
        ("c", &[(12.5, 8.0), (37.5, 20.0)][..]),
    ] {
        for &(w, ms) in points {
            t.record(s, none, w, ms, 10);
        }
    }
    let cand = |name, containers, load_rps, alpha| Candidate {
        name,
        containers,
        load_rps,
        alpha,
        interference: none,
        service_time_ms: None,
        servers: 1.0,
        floor: 0,
    };
    // a: 100 rps on 2 containers, balanced. b: 40 rps on 1. c: 40 rps on 2, D = (30, 10): 1.5.
    let cands = vec![
        cand("a", 2, 100.0, 1.0),
        cand("b", 1, 40.0, 1.0),
        cand("c", 2, 40.0, 1.5),
    ];
    (t, cands)
}

fn order(picks: &[Pick], cands: &[Candidate<'_>]) -> Vec<String> {
    picks
        .iter()
        .map(|p| cands[p.service].name.to_string())
        .collect()
}

#[test]
fn alg3_adds_to_the_most_critical_service_first() {
    let (t, cands) = example();
    let phi = |c: &Candidate<'_>, w: f64| t.lookup_linear(c.name, c.interference, w);
    // G before the first pick (phi along the table's lines):
    //   a: phi(50) - phi(33.3) = 30 - 18.33 = 11.67
    //   b: phi(40) - phi(20)   = 16 - 8     = 8
    //   c: 1.5 (phi(20) - phi(13.3)) = 1.5 (11.6 - 8.4) = 4.8
    // a picked, then G_a = phi(33.3) - phi(25) = 3.33; b picked, then G_b = 8 - 5.33 = 2.67; c
    // (4.8; 3.2 without its imbalance, which would lose to a's 3.33); then G_c = 1.5 * 1.6 = 2.4,
    // and a's 3.33 is the largest again.
    let picks = distribute(4, &cands, 1, 20, phi);
    assert_eq!(order(&picks, &cands), ["a", "b", "c", "a"]);
    let g: Vec<f64> = picks.iter().map(|p| p.g).collect();
    for (got, want) in g.iter().zip([35.0 / 3.0, 8.0, 4.8, 10.0 / 3.0]) {
        assert!((got - want).abs() < 1e-9, "{g:?}");
    }
    // At max_replicas 2 only b (1 container) may grow, once.
    assert_eq!(order(&distribute(3, &cands, 1, 2, phi), &cands), ["b"]);
}

#[test]
fn alg3_removes_where_latency_rises_least() {
    let (t, cands) = example();
    let phi = |c: &Candidate<'_>, w: f64| t.lookup_linear(c.name, c.interference, w);
    // b has 1 container (min 1) and stays. a: phi(50) - phi(100) = 30 - 100 = -70;
    // c: 1.5 (phi(20) - phi(40)) = 1.5 (11.6 - 21.2) = -14.4. c goes first, then a; then
    // nobody is above the minimum.
    let picks = distribute(-3, &cands, 1, 20, phi);
    assert_eq!(order(&picks, &cands), ["c", "a"]);
    assert!((picks[0].g + 14.4).abs() < 1e-9, "{picks:?}");
    assert!((picks[1].g + 70.0).abs() < 1e-9, "{picks:?}");
}

#[test]
fn alg3_ties_go_to_the_name_first_in_order() {
    let twin = |name| Candidate {
        name,
        containers: 2,
        load_rps: 40.0,
        alpha: 1.0,
        interference: Interference::default(),
        service_time_ms: Some(10.0),
        servers: 1.0,
        floor: 0,
    };
    let phi = |c: &Candidate<'_>, w: f64| queueing_p95_ms(c.service_time_ms?, w, c.servers);
    for cands in [vec![twin("y"), twin("x")], vec![twin("x"), twin("y")]] {
        let picks = distribute(3, &cands, 1, 20, phi);
        assert_eq!(order(&picks, &cands), ["x", "y", "x"]);
    }
    // No prediction at all: every gain 0, name order throughout.
    let blind = [twin("b"), twin("a")];
    let picks = distribute(2, &blind, 1, 20, |_: &Candidate<'_>, _| None);
    assert_eq!(order(&picks, &blind), ["a", "a"]);
}

#[test]
fn removals_stop_at_the_busy_floor() {
    // 300 rps at 8 ms is 2.4 busy servers: at most 0.7 each needs 4 containers.
    assert_eq!(busy_floor(300.0, Some(8.0), 1.0, 0.7), 4);
    assert_eq!(busy_floor(300.0, Some(8.0), 2.0, 0.7), 2);
    assert_eq!(busy_floor(300.0, None, 1.0, 0.7), 0);
    assert_eq!(busy_floor(0.0, Some(8.0), 1.0, 0.7), 0);
    // A flat prediction makes a service the cheapest to shrink every time: without the floor
    // all five removals would go to it.
    let flat = Candidate {
        name: "flat",
        containers: 6,
        load_rps: 300.0,
        alpha: 1.0,
        interference: Interference::default(),
        service_time_ms: Some(8.0),
        servers: 1.0,
        floor: busy_floor(300.0, Some(8.0), 1.0, 0.7),
    };
    let steep = Candidate {
        name: "steep",
        floor: 0,
        ..flat.clone()
    };
    let cands = [flat, steep];
    let phi = |c: &Candidate<'_>, w: f64| Some(if c.name == "flat" { 10.0 } else { 10.0 + w });
    let picks = distribute(-5, &cands, 1, 20, phi);
    assert_eq!(
        order(&picks, &cands),
        ["flat", "flat", "steep", "steep", "steep"]
    );
}

#[test]
fn the_queueing_fallback_is_an_mm1_p95() {
    let ln20 = 20f64.ln();
    // s = 10 ms at 50 rps: rho 0.5.
    assert!((queueing_p95_ms(10.0, 50.0, 1.0).unwrap() - ln20 * 20.0).abs() < 1e-9);
    // At 95 % utilisation 20 x s; past it the tangent there (slope 400 per unit of utilisation),
    // so a saturated service still gains from a container more.
    assert!((queueing_p95_ms(10.0, 95.0, 1.0).unwrap() - ln20 * 200.0).abs() < 1e-9);
    assert!(
        (queueing_p95_ms(10.0, 1000.0, 1.0).unwrap() - ln20 * 10.0 * (20.0 + 400.0 * 9.05)).abs()
            < 1e-6
    );
    assert!(
        queueing_p95_ms(10.0, 500.0, 1.0).unwrap() > queueing_p95_ms(10.0, 250.0, 1.0).unwrap()
    );
    assert_eq!(queueing_p95_ms(0.0, 10.0, 1.0), None);
    assert_eq!(queueing_p95_ms(10.0, f64::INFINITY, 1.0), None);
}

#[test]
fn params_check_names_the_field() {
    assert!(ImbresParams::default().check().is_ok());
    let bad = |p: ImbresParams| p.check().unwrap_err().0;
    let d = ImbresParams::default();
    assert_eq!(bad(ImbresParams { eta2: 0.0, ..d }), "eta2");
    assert_eq!(
        bad(ImbresParams {
            beta: f64::NAN,
            ..d
        }),
        "beta"
    );
    assert_eq!(
        bad(ImbresParams {
            min_replicas: 0,
            ..d
        }),
        "min_replicas"
    );
    assert_eq!(
        bad(ImbresParams {
            interval_ms: 0,
            ..d
        }),
        "interval_ms"
    );
}

/// `a` (entry) calls `b` once per request, `b` calls `c` twice: `(served, offered)` per service
/// and the edges' completed calls per second.
fn chain(a: (f64, f64), b: (f64, f64), c: (f64, f64), ab: f64, bc: f64, entry: f64) -> Snapshot {
    let mut snap = scene(
        60,
        5.0,
        entry,
        &[
            ("a", &[("h1", a.0)]),
            ("b", &[("h1", b.0)]),
            ("c", &[("h2", c.0)]),
        ],
    );
    for (name, offered) in [("b", b.1), ("c", c.1)] {
        Arc::make_mut(snap.services.get_mut(name).unwrap()).offered_rps = offered;
    }
    let edge = |caller: Option<&str>, callee: &str, rps| crate::CallEdge {
        caller: caller.map(String::from),
        callee: callee.into(),
        rps,
    };
    snap.edges = vec![
        edge(None, "a", a.0),
        edge(Some("a"), "b", ab),
        edge(Some("b"), "c", bc),
    ];
    snap
}

#[test]
fn demand_is_carried_down_the_call_graph_by_visit_ratios() {
    // 300 req/s offered; `a` completes 100 (saturated) and passes 100 calls to `b`, which makes
    // 2 calls to `c` per request. Unthrottled, `b` would be offered 300 and `c` 600.
    let snap = chain(
        (100.0, 0.0),
        (100.0, 100.0),
        (200.0, 200.0),
        100.0,
        200.0,
        300.0,
    );
    let groups = app::groups(&snap, None);
    let d = app::demand(&snap, &groups[0]);
    let near = |name: &str, want: f64| assert!((d[name] - want).abs() < 1e-9, "{name}: {d:?}");
    near("a", 300.0);
    near("b", 300.0);
    near("c", 600.0);
    // A service offered more than its callers carry (a queue of its own) keeps what it is offered.
    let snap = chain(
        (300.0, 0.0),
        (150.0, 450.0),
        (200.0, 200.0),
        150.0,
        200.0,
        300.0,
    );
    let d = app::demand(&snap, &app::groups(&snap, None)[0]);
    assert!((d["b"] - 450.0).abs() < 1e-9, "{d:?}");
    // `b` makes 200 / 150 calls to `c` per request it completes: 450 * 4 / 3.
    assert!((d["c"] - 600.0).abs() < 1e-9, "{d:?}");
}

#[test]
fn the_service_time_survives_overload() {
    // Served 20 req/s at a mean of 500 ms with 2 requests at once: saturated, so a request
    // occupies a server 2 / 20 s = 100 ms; the queue is in the mean, not in the service time.
    let mut svc = ServiceState {
        name: "a".into(),
        containers: vec![crate::testing::container(1, "h1", 500.0, 200)],
        ..Default::default()
    };
    svc.containers[0].inbound.as_mut().unwrap().window_s = 10.0;
    svc.containers[0].usage.cpu_limit_cores = Some(2.0);
    let snap = crate::testing::snapshot(vec![svc.clone()]);
    let p = ImbresParams::default();
    let c = candidate(&snap, &p, "a", &svc, Some(60.0));
    assert_eq!((c.service_time_ms, c.servers), (Some(100.0), 2.0));
    // Demand 60 req/s x 0.1 s / (2 x 0.7) = 4.3: five containers.
    assert_eq!(c.floor, 5);
    // Lightly loaded (2 req/s), the mean is the service time; a set value beats the limit.
    svc.containers[0].inbound.as_mut().unwrap().count = 20;
    let set = ImbresParams {
        servers_per_container: 4.0,
        ..p
    };
    let c = candidate(&snap, &set, "a", &svc, None);
    assert_eq!((c.service_time_ms, c.servers), (Some(500.0), 4.0));
}

#[test]
fn a_tail_over_the_sla_lifts_every_service_to_its_floor_past_the_step_cap() {
    // The chain above at 5x its SLA, one container each at a 10 ms mean. `a` and `b` need
    // 300 x 0.010 / 0.7 = 4.3 -> 5 containers; `c` completes 200 req/s on one server, so a
    // request occupies it 5 ms: 600 x 0.005 / 0.7 = 4.3 -> 5. Alg. 2 alone asks for one more
    // container (first order, 1.2x of 3), and `max_step` would allow one.
    let snap = chain(
        (100.0, 0.0),
        (100.0, 100.0),
        (200.0, 200.0),
        100.0,
        200.0,
        300.0,
    );
    let mut s = Imbres::new(ImbresParams::default());
    let ds = s.scale(&snap);
    let to: BTreeMap<&str, u32> = ds.iter().map(|d| (d.service.as_str(), d.to)).collect();
    assert_eq!(to, [("a", 5), ("b", 5), ("c", 5)].into(), "{ds:?}");
    assert!(
        ds[0].reason.contains("to the capacity floor"),
        "{}",
        ds[0].reason
    );
    assert!(ds.iter().all(|d| d.reason.contains("floor +")), "{ds:?}");
    // Within the SLA the floor adds nothing: below it Alg. 2 removes.
    let mut calm = chain(
        (100.0, 0.0),
        (100.0, 100.0),
        (200.0, 200.0),
        100.0,
        200.0,
        300.0,
    );
    calm.flows.insert("f".into(), flow("a", 0.5, 300.0));
    let ds = Imbres::new(ImbresParams::default()).scale(&calm);
    assert!(ds.iter().all(|d| !d.reason.contains("floor")), "{ds:?}");
}
