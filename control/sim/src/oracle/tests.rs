//! The host split's weights, noisy-host detection, and the sweep on a small scenario with one
//! badly interfered host.

use std::time::Duration;

use super::*;
use crate::{Policies, SimOptions, run_with};
use loadshift_policy::{ServiceState, testing::container};

/// `front` calls `back`, one container of each per host; h3 goes from light interference to
/// heavy (factor 3.3) at 10 s.
fn lopsided() -> Scenario {
    let yaml = "name: lopsided
seed: 1
duration_s: 60
warmup_s: 5
hosts:
  - {name: h1, interference: {cpu: 0.1}}
  - {name: h2, interference: {cpu: 0.1}}
  - {name: h3, interference: {cpu: {steps: [[0, 0.1], [10, 0.8]]}, membw: {steps: [[0, 0], [10, 0.5]]}}}
services:
  - name: front
    service_time: {dist: lognormal, mean_ms: 4, sigma: 0.4}
    concurrency: 4
    replicas: {h1: 1, h2: 1, h3: 1}
    calls: [{service: back}]
  - {name: back, service_time: {dist: exponential, mean_ms: 8}, concurrency: 2, replicas: {h1: 1, h2: 1, h3: 1}}
flows:
  - {name: f, entry: front, arrival: {process: poisson, rate: 120}, sla: {latency_ms: 100}}
";
    Scenario::parse(yaml, None).unwrap()
}

fn svc(hosts: &[&str]) -> ServiceState {
    ServiceState {
        name: "a".into(),
        containers: hosts
            .iter()
            .enumerate()
            .map(|(i, h)| container(i as u16 + 1, h, 10.0, 100))
            .collect(),
        ..Default::default()
    }
}

fn snap(now_s: u64, services: &[(&str, ServiceState)]) -> Snapshot {
    Snapshot {
        now: Duration::from_secs(now_s),
        services: services
            .iter()
            .map(|(n, s)| (n.to_string(), std::sync::Arc::new(s.clone())))
            .collect(),
        ..Default::default()
    }
}

#[test]
fn split_gives_the_noisy_host_its_share_and_the_rest_by_containers() {
    let mut p = HostSplit::new(
        vec!["h3".into()],
        0.1,
        Duration::from_secs(10),
        Pick::WeightedP2c,
    );
    let s = snap(
        20,
        &[
            ("a", svc(&["h1", "h1", "h2", "h3"])),
            ("only-noisy", svc(&["h3", "h3"])),
            ("quiet", svc(&["h1", "h2"])),
        ],
    );
    let up = p.plan(&s);
    let a = &up.services["a"];
    assert!(a.weighted_p2c);
    let w = &a.host_weights;
    assert!((w["h3"] - 0.1).abs() < 1e-12);
    assert!((w["h1"] - 0.6).abs() < 1e-12, "{w:?}");
    assert!((w["h2"] - 0.3).abs() < 1e-12, "{w:?}");
    // Nowhere to move the load: even.
    assert_eq!(up.services["only-noisy"].host_weights["h3"], 1.0);
    assert_eq!(up.services["quiet"].host_weights["h1"], 0.5);
    for (name, plan) in &up.services {
        let sum: f64 = plan.host_weights.values().sum();
        assert!((sum - 1.0).abs() < 1e-12, "{name}: {sum}");
        // The data plane accepts it.
        let eps: Vec<_> = s.services[name]
            .containers
            .iter()
            .map(|c| c.endpoint.clone())
            .collect();
        plan.validate(name, &eps).unwrap();
    }
    // Before the onset: even by containers.
    let early = p.plan(&snap(5, &[("a", svc(&["h1", "h1", "h2", "h3"]))]));
    assert_eq!(early.services["a"].host_weights["h1"], 0.5);
    assert_eq!(early.services["a"].host_weights["h3"], 0.25);
    // Two noisy hosts cannot take more than half each; share 0 still leaves a valid plan.
    let two = HostSplit::new(
        vec!["h2".into(), "h3".into()],
        0.7,
        Duration::ZERO,
        Pick::Weighted,
    );
    let w = two.host_weights(&svc(&["h1", "h2", "h3"]), true).unwrap();
    assert_eq!((w["h1"], w["h2"], w["h3"]), (0.0, 0.5, 0.5));
    let zero = HostSplit::new(vec!["h3".into()], 0.0, Duration::ZERO, Pick::Weighted);
    let w = zero.host_weights(&svc(&["h1", "h2", "h3"]), true).unwrap();
    assert_eq!((w["h1"], w["h2"], w["h3"]), (0.5, 0.5, 0.0));
    assert!(zero.host_weights(&svc(&[]), true).is_none());
}

#[test]
fn noisy_hosts_are_the_ones_peaking_highest() {
    let s = lopsided();
    assert_eq!(noisy_hosts(&s).unwrap(), vec!["h3".to_string()]);
    assert!((even_share(&s, &["h3".into()]) - 1.0 / 3.0).abs() < 1e-12);
    let mut flat = s.clone();
    flat.hosts[2].interference = flat.hosts[0].interference.clone();
    assert!(matches!(
        noisy_hosts(&flat),
        Err(OracleError::NoNoisyHost(_))
    ));
}

#[test]
fn split_in_the_simulator_keeps_calls_off_a_zero_share_host() {
    let s = lopsided();
    let split = HostSplit::new(
        vec!["h3".into()],
        0.0,
        Duration::from_secs(10),
        Pick::Weighted,
    );
    let p = Policies::resolve(&s, &SimOptions::default())
        .unwrap()
        .with_planner(&s, Box::new(split));
    let o = run_with(&s, 1, p, &mut |_| {});
    assert_eq!(o.plan_rejections, 0);
    let after: Vec<f64> = o
        .run
        .intervals
        .iter()
        .filter(|i| i.t_s > 15.0 && i.requests > 0)
        .map(|i| i.host_share.get("h3").copied().unwrap_or(0.0))
        .collect();
    assert!(!after.is_empty());
    assert!(after.iter().all(|&x| x == 0.0), "{after:?}");
}

#[test]
fn sweep_finds_a_small_noisy_share_better_than_the_even_one() {
    let s = lopsided();
    let mut o = SweepOptions::new(vec![1, 2]);
    o.step = 0.1;
    o.refine_step = 0.05;
    o.baselines = vec!["round-robin".into()];
    let mut lines = 0;
    let r = sweep(&s, &o, &mut |_| lines += 1).unwrap();
    assert_eq!(r.noisy_hosts, vec!["h3".to_string()]);
    assert_eq!(r.split_from_s, 10.0);
    assert_eq!(r.best.len(), 2);
    assert_eq!(lines, r.points.len() + 1);
    for pick in [Pick::Weighted, Pick::WeightedP2c] {
        let small = r.point(pick, 0.1).unwrap();
        let even = r.point(pick, r.even_share).unwrap();
        assert_eq!(small.p95_ms.values.len(), 2);
        assert!(
            small.p95_ms.mean < 0.9 * even.p95_ms.mean,
            "{pick:?}: share 0.1 p95 {} vs even {}",
            small.p95_ms.mean,
            even.p95_ms.mean
        );
        let best = r.best.iter().find(|b| b.pick == pick).unwrap();
        assert!(best.share < r.even_share);
        assert!(r.points.iter().any(|p| p.pick == pick && p.refined));
        let label = best_label(pick);
        assert!(r.ratio(&label, "round-robin").unwrap().mean < 1.0);
        assert!(
            r.ratio(&label, &format!("even-{}", pick.name()))
                .unwrap()
                .mean
                < 0.9
        );
    }
    // Weighted draws follow the plan: the noisy host's share of calls is the planned one.
    let w = r.point(Pick::Weighted, 0.1).unwrap();
    assert!((w.noisy_call_share.mean - 0.1).abs() < 0.02, "{w:?}");
    assert_eq!(
        r.point(Pick::Weighted, 0.0).unwrap().noisy_call_share.mean,
        0.0
    );
}

#[test]
fn sweep_refuses_bad_options() {
    let s = lopsided();
    let mut o = SweepOptions::new(vec![1]);
    o.step = 0.0;
    assert!(matches!(
        sweep(&s, &o, &mut |_| {}),
        Err(OracleError::BadStep { .. })
    ));
    let o = SweepOptions::new(Vec::new());
    assert!(matches!(
        sweep(&s, &o, &mut |_| {}),
        Err(OracleError::NoSeeds)
    ));
}
