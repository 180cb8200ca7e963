//! Alg. 1 and its guard rails: the hand-computed step, step cap, floor, hold, re-probe, reset,
//! convergence on a queue model, the local shifter's contract, and the property that shares sum to 1
//! and stay above their floors.

use super::*;
use proptest::prelude::*;

fn sample(latency_ms: f64, samples: u64, containers: u32) -> HostSample {
    HostSample {
        latency_ms,
        samples,
        containers,
    }
}

fn hosts(v: &[(&str, f64, u64, u32)]) -> BTreeMap<String, HostSample> {
    v.iter()
        .map(|&(h, l, n, s)| (h.to_string(), sample(l, n, s)))
        .collect()
}

#[test]
fn one_step_matches_hand_computation() {
    let mut sh = Shifter::new(ShiftParams::paper());
    // S = (2, 1, 1): D starts at (0.5, 0.25, 0.25).
    let h = hosts(&[
        ("a", 30.0, 100, 2),
        ("b", 10.0, 100, 1),
        ("c", 20.0, 100, 1),
    ]);
    assert_eq!(sh.step(&h), StepOutcome::Reset);
    assert_eq!(sh.shares()["a"], 0.5);
    assert_eq!(sh.step(&h), StepOutcome::Stepped);
    // l_mean = (30 + 10 + 20) / 3 = 20.
    // a: F = -1, dl = 10/20 = 0.5, D = 0.5  * (1 - 0.2 * 0.5) = 0.45
    // b: F = +1, dl = 0.5,          D = 0.25 * (1 + 0.2 * 0.5) = 0.275
    // c: l = l_mean so F = +1, dl = 0, D = 0.25
    // sum = 0.975; normalised: 0.45/0.975, 0.275/0.975, 0.25/0.975.
    // Floors 0.1 * (0.5, 0.25, 0.25) are far below, so they do not bind.
    let want = [
        ("a", 0.45 / 0.975),
        ("b", 0.275 / 0.975),
        ("c", 0.25 / 0.975),
    ];
    for (host, w) in want {
        assert!(
            (sh.shares()[host] - w).abs() < 1e-12,
            "{host}: {:?}",
            sh.shares()
        );
    }
    // Equal share per container within a host: host a has two.
    assert!((sh.container_share("a").unwrap() - 0.45 / 0.975 / 2.0).abs() < 1e-12);
    let eps = vec![
        Endpoint::new("127.0.0.1:1".parse().unwrap(), "a", "z", "c1"),
        Endpoint::new("127.0.0.1:2".parse().unwrap(), "a", "z", "c2"),
        Endpoint::new("127.0.0.1:3".parse().unwrap(), "b", "z", "c3"),
    ];
    let w = sh.endpoint_weights(&eps);
    assert!((w["127.0.0.1:1"] - 0.45 / 0.975 / 2.0).abs() < 1e-12);
    assert!((w["127.0.0.1:3"] - 0.275 / 0.975).abs() < 1e-12);
}

#[test]
fn step_cap_keeps_a_very_slow_host_positive() {
    // Ten hosts, one 10^4 times slower: uncapped, its factor 1 - eta dl would be negative.
    let mut many = vec![("slow", 10_000.0, 100, 1)];
    let names: Vec<String> = (0..9).map(|i| format!("h{i}")).collect();
    for n in &names {
        many.push((n.as_str(), 1.0, 100, 1));
    }
    let h = hosts(&many);
    let mut sh = Shifter::new(ShiftParams {
        floor_fraction: 0.0,
        ..ShiftParams::paper()
    });
    sh.step(&h);
    sh.step(&h);
    // l_mean = 1000.9, dl_slow = 8.99, 1 - 0.2 * 8.99 < 0: the cap makes the factor 0.5.
    // Fast hosts: dl = 1 - 1/1000.9, factor 1 + 0.2 dl (below the 1.5 cap).
    // D_slow = 0.1 * 0.5 / (0.1 * 0.5 + 9 * 0.1 * factor).
    let want = 0.05 / (0.05 + 0.9 * (1.0 + 0.2 * (1.0 - 1.0 / ((10_000.0 + 9.0) / 10.0))));
    assert!(
        (sh.shares()["slow"] - want).abs() < 1e-12,
        "{:?}",
        sh.shares()
    );
}

#[test]
fn floor_keeps_probe_traffic_and_sum_stays_one() {
    let mut sh = Shifter::new(ShiftParams::default());
    let h = hosts(&[("slow", 500.0, 100, 1), ("fast", 5.0, 100, 1)]);
    for _ in 0..100 {
        sh.step(&h);
    }
    // Floor = 0.1 * 1/2.
    assert!(
        (sh.shares()["slow"] - 0.05).abs() < 1e-12,
        "{:?}",
        sh.shares()
    );
    assert!((sh.shares()["fast"] - 0.95).abs() < 1e-12);
}

#[test]
fn hold_with_few_samples_and_reset_on_membership_change() {
    let mut sh = Shifter::new(ShiftParams::paper());
    let h = hosts(&[("a", 30.0, 100, 1), ("b", 10.0, 100, 1), ("c", 99.0, 3, 1)]);
    sh.step(&h);
    assert_eq!(sh.step(&h), StepOutcome::Stepped);
    // c had 3 < 20 samples: it keeps exactly 1/3 and is left out of l_mean (= 20).
    assert_eq!(sh.shares()["c"], 1.0 / 3.0);
    let a = (1.0 / 3.0) * 0.9;
    let b = (1.0 / 3.0) * 1.1;
    let scale = (2.0 / 3.0) / (a + b);
    assert!((sh.shares()["a"] - a * scale).abs() < 1e-12);
    // Only one measured host: hold.
    let lone = hosts(&[("a", 30.0, 100, 1), ("b", 10.0, 0, 1), ("c", 99.0, 3, 1)]);
    let before = sh.shares().clone();
    assert_eq!(sh.step(&lone), StepOutcome::Held);
    assert_eq!(sh.shares(), &before);
    // A container joins host b: back to S_j / sum S.
    let grown = hosts(&[("a", 30.0, 100, 1), ("b", 10.0, 100, 2), ("c", 99.0, 3, 1)]);
    assert_eq!(sh.step(&grown), StepOutcome::Reset);
    assert_eq!(sh.shares()["b"], 0.5);
    assert_eq!(sh.steps(), 0);
}

#[test]
fn a_starved_host_is_reprobed_after_being_held() {
    let mut sh = Shifter::new(ShiftParams::default());
    let busy = hosts(&[
        ("a", 10.0, 100, 1),
        ("b", 50.0, 100, 1),
        ("c", 10.0, 100, 1),
    ]);
    sh.step(&busy);
    for _ in 0..30 {
        sh.step(&busy);
    }
    let floor = 0.1 / 3.0;
    assert!(
        (sh.shares()["b"] - floor).abs() < 1e-12,
        "{:?}",
        sh.shares()
    );
    // b now gets too little traffic to be measured: held for 5 steps, re-probed on the 6th.
    let starved = hosts(&[("a", 10.0, 100, 1), ("b", 10.0, 2, 1), ("c", 10.0, 100, 1)]);
    for _ in 0..5 {
        assert_eq!(sh.step(&starved), StepOutcome::Stepped);
        assert!((sh.shares()["b"] - floor).abs() < 1e-12);
    }
    let before = sh.shares().clone();
    sh.step(&starved);
    // a and c are equally fast: their step changes nothing; b goes halfway to 1/3.
    let want = (floor + 1.0 / 3.0) / 2.0;
    assert!((sh.shares()["b"] - want).abs() < 1e-12, "{:?}", sh.shares());
    let scale = (1.0 - want) / (1.0 - floor);
    assert!((sh.shares()["a"] - before["a"] * scale).abs() < 1e-12);
    // With no traffic anywhere nothing is re-probed.
    let idle = hosts(&[("a", 0.0, 0, 1), ("b", 0.0, 0, 1), ("c", 0.0, 0, 1)]);
    for _ in 0..20 {
        assert_eq!(sh.step(&idle), StepOutcome::Held);
    }
    // Two hosts, one starved: no gradient step is possible, the re-probe still happens.
    let mut two = Shifter::new(ShiftParams::default());
    let h = hosts(&[("a", 10.0, 100, 1), ("b", 90.0, 100, 1)]);
    for _ in 0..40 {
        two.step(&h);
    }
    let low = two.shares()["b"];
    let h = hosts(&[("a", 10.0, 100, 1), ("b", 90.0, 1, 1)]);
    let outcomes: Vec<StepOutcome> = (0..6).map(|_| two.step(&h)).collect();
    assert_eq!(outcomes[5], StepOutcome::Reprobed, "{outcomes:?}");
    assert!(two.shares()["b"] > low);
}

#[test]
fn converges_toward_equal_latency_on_a_queue_model() {
    // Host b is three times slower per request. Latency of an M/M/1-like host:
    // l = s / (1 - rho), rho = load * s.
    let mut sh = Shifter::new(ShiftParams::default());
    let serve = [("a", 1.0), ("b", 3.0)];
    let lat = |sh: &Shifter| -> BTreeMap<String, HostSample> {
        serve
            .iter()
            .map(|&(h, s)| {
                let load = sh.shares().get(h).copied().unwrap_or(0.5) * 0.25;
                let rho: f64 = (load * s).min(0.99);
                (h.to_string(), sample(s / (1.0 - rho), 100, 1))
            })
            .collect()
    };
    sh.step(&lat(&sh));
    let spread0 = {
        let l = lat(&sh);
        l["b"].latency_ms / l["a"].latency_ms
    };
    for _ in 0..30 {
        let l = lat(&sh);
        sh.step(&l);
    }
    let l = lat(&sh);
    let spread = l["b"].latency_ms / l["a"].latency_ms;
    assert!(sh.shares()["a"] > 0.6, "{:?}", sh.shares());
    assert!(spread < spread0, "{spread} vs {spread0}");
}

#[test]
fn local_shifter_follows_its_contract() {
    let p = ShiftParams::default();
    let mut ls = LocalShifter::new(p);
    let obs: BTreeMap<String, (f64, u64, u32)> = [
        ("a".to_string(), (30.0, 100, 1)),
        ("b".to_string(), (10.0, 100, 1)),
    ]
    .into();
    let s = Duration::from_secs(1);
    let w = ls.step(Duration::ZERO, &obs).unwrap();
    assert_eq!(w["a"], 0.5);
    assert_eq!(ls.step(4 * s, &obs), None, "inside the interval");
    let w = ls.step(5 * s, &obs).unwrap();
    assert!(w["a"] < 0.5 && (w.values().sum::<f64>() - 1.0).abs() < 1e-12);
    assert_eq!(ls.step(6 * s, &obs), None);
    // Membership change: immediate reset.
    let mut grown = obs.clone();
    grown.insert("c".into(), (10.0, 100, 1));
    let w = ls.step(7 * s, &grown).unwrap();
    assert!((w["c"] - 1.0 / 3.0).abs() < 1e-12);
    // Too few samples: the interval passes without new weights.
    let quiet: BTreeMap<String, (f64, u64, u32)> = grown
        .iter()
        .map(|(h, &(l, _, c))| (h.clone(), (l, 1, c)))
        .collect();
    assert_eq!(ls.step(20 * s, &quiet), None);
    assert_eq!(
        LocalShifter::new(p).step(Duration::ZERO, &BTreeMap::new()),
        None
    );
}

#[test]
fn params_validate_names_the_field() {
    let e = ShiftParams {
        eta: -1.0,
        ..Default::default()
    }
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("eta"), "{e}");
    let e = ShiftParams {
        max_step: 1.0,
        ..Default::default()
    }
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("max_step"), "{e}");
    assert!(ShiftParams::default().validate().is_ok());
    // The default departs from the paper in eta, the deadband and recovery only.
    assert_eq!(ShiftParams::paper().eta, 0.2);
    assert_eq!(
        ShiftParams {
            eta: 0.2,
            deadband: 0.0,
            recovery: 0.0,
            ..Default::default()
        },
        ShiftParams::paper()
    );
    let e = ShiftParams {
        recovery: -1.0,
        ..Default::default()
    }
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("recovery"), "{e}");
    let e = ShiftParams {
        deadband: 0.5,
        ..Default::default()
    }
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("deadband"), "{e}");
    let p: ShiftParams = serde_json::from_str(r#"{"eta": 0.3}"#).unwrap();
    assert_eq!((p.eta, p.interval_ms), (0.3, 5000));
    assert!(serde_json::from_str::<ShiftParams>(r#"{"etta": 0.3}"#).is_err());
}

proptest! {
    #[test]
    fn shares_sum_to_one_and_respect_the_floor(
        members in prop::collection::vec((1u32..6, 0u64..60), 1..8),
        rounds in prop::collection::vec(prop::collection::vec(prop::num::f64::ANY, 8), 1..12),
        floor_fraction in 0.0f64..0.9,
        eta in 0.01f64..3.0,
    ) {
        let p = ShiftParams { floor_fraction, eta, ..Default::default() };
        let mut sh = Shifter::new(p);
        let total: u32 = members.iter().map(|m| m.0).sum();
        for lat in &rounds {
            let h: BTreeMap<String, HostSample> = members
                .iter()
                .enumerate()
                .map(|(i, &(s, n))| (format!("h{i}"), sample(lat[i], n, s)))
                .collect();
            sh.step(&h);
            let sum: f64 = sh.shares().values().sum();
            prop_assert!((sum - 1.0).abs() < 1e-9, "sum {sum}: {:?}", sh.shares());
            for (i, &(s, _)) in members.iter().enumerate() {
                let d = sh.shares()[&format!("h{i}")];
                let floor = floor_fraction * f64::from(s) / f64::from(total);
                prop_assert!(d.is_finite() && d >= floor - 1e-12, "h{i}: {d} < {floor}");
            }
        }
    }
}

/// A host that recovers (faster than the mean two steps running, under its proportional share)
/// closes `min(1, recovery * dl)` of the gap per step; one fast window alone moves it only by
/// line 9; the paper's variant only ever by line 9.
#[test]
fn a_recovered_host_regains_its_share_within_a_few_steps() {
    let hosts = |a: f64, b: f64, c: f64| -> BTreeMap<String, HostSample> {
        [("a", a), ("b", b), ("c", c)]
            .into_iter()
            .map(|(h, l)| {
                (
                    h.to_string(),
                    HostSample {
                        latency_ms: l,
                        samples: 100,
                        containers: 1,
                    },
                )
            })
            .collect()
    };
    let run = |p: ShiftParams| {
        let mut sh = Shifter::new(p);
        sh.step(&hosts(10.0, 10.0, 10.0));
        // `a` noisy: pushed to its floor.
        for _ in 0..12 {
            sh.step(&hosts(40.0, 10.0, 10.0));
        }
        let low = sh.shares()["a"];
        // The interference moves to `c`: count steps until `a` is within 10 % of 1/3.
        let steps = (1..=30)
            .find(|_| {
                sh.step(&hosts(10.0, 10.0, 40.0));
                sh.shares()["a"] >= 0.3
            })
            .unwrap_or(99);
        (low, steps)
    };
    let (low, with) = run(ShiftParams::default());
    assert!(low < 0.05, "{low}");
    let (_, without) = run(ShiftParams {
        recovery: 0.0,
        ..Default::default()
    });
    let (_, paper) = run(ShiftParams::paper());
    assert!(with <= 3, "recovery: {with} steps");
    assert!(without > with + 2, "line 9 alone: {without} steps");
    assert!(paper >= without, "the paper's eta: {paper} steps");
}
