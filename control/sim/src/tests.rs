//! Simulator behaviour: determinism, conservation, queueing theory, interference direction,
//! blocking through the real gate, and scaling through a scaler.

mod data_plane;
mod flows;

use std::{path::Path, time::Duration};

use super::*;
use crate::scenario::Scenario;
use loadshift_core::plan::{Blocking, ServicePlan};
use loadshift_policy::{PlanUpdate, Snapshot};

fn shipped(name: &str) -> Scenario {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(name);
    Scenario::load(&p).unwrap()
}

fn quiet(_: f64) {}

fn conserved(o: &Outcome) {
    let c = o.run.counts;
    assert_eq!(c.completed + c.failed + c.blocked, c.offered, "{c:?}");
    assert!(c.offered > 0);
}

#[test]
fn same_seed_same_result() {
    let mut s = shipped("imbalance.yaml");
    s.duration_s = 40.0;
    let opts = SimOptions {
        planner: Some("even".into()),
        ..Default::default()
    };
    let a = run(&s, &opts, &mut quiet).unwrap();
    let b = run(&s, &opts, &mut quiet).unwrap();
    assert_eq!(a.run, b.run);
    assert_eq!(a.events, b.events);
    let c = run(
        &s,
        &SimOptions {
            seed: Some(99),
            ..opts
        },
        &mut quiet,
    )
    .unwrap();
    assert_ne!(a.run.summary, c.run.summary, "another seed should differ");
    conserved(&a);
}

fn mm1(rate: f64) -> Scenario {
    let yaml = format!(
        "name: mm1
duration_s: 2000
warmup_s: 50
hosts: [{{name: h}}]
services:
  - {{name: q, service_time: {{dist: exponential, mean_ms: 10}}, concurrency: 1, replicas: {{h: 1}}}}
flows:
  - {{name: f, entry: q, arrival: {{process: poisson, rate: {rate}}}, sla: {{latency_ms: 100}}, timeout_ms: 1e9}}
"
    );
    Scenario::parse(&yaml, None).unwrap()
}

#[test]
fn mm1_mean_latency_matches_theory() {
    // mu = 100/s; W = 1 / (mu - lambda).
    for (rate, want_ms) in [(50.0, 20.0), (80.0, 50.0)] {
        let o = run(&mm1(rate), &SimOptions::default(), &mut quiet).unwrap();
        conserved(&o);
        assert!(o.run.counts.offered > 90_000);
        let err = (o.run.summary.mean_ms - want_ms).abs() / want_ms;
        assert!(
            err < 0.10,
            "rho {}: mean {:.2} ms vs {want_ms} ms",
            rate / 100.0,
            o.run.summary.mean_ms
        );
    }
}

#[test]
fn even_weights_leave_the_noisy_host_slower() {
    let mut s = shipped("imbalance.yaml");
    s.duration_s = 60.0;
    let p = Policies::resolve(
        &s,
        &SimOptions {
            planner: Some("even".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let mut e = engine::Engine::new(&s, s.seed, p.schedule);
    e.run(&mut quiet);
    e.now = e.duration_ns;
    let snap = e.snapshot();
    let svc = &snap.services["compose-post"];
    let mean = |host: &str| {
        let v: Vec<f64> = svc
            .containers
            .iter()
            .filter(|c| c.endpoint.host == host)
            .map(|c| c.inbound.map_or(0.0, |w| w.mean_ms))
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (h1, h2, h3) = (mean("h1"), mean("h2"), mean("h3"));
    assert!(h3 > 1.5 * h1.max(h2), "h1 {h1:.1} h2 {h2:.1} h3 {h3:.1} ms");
    // Even weights really were even: each host got about a third of compose-post's calls.
    let last = e.rec.intervals.last().unwrap();
    for share in last.service_host_share["compose-post"].values() {
        assert!(
            (share - 1.0 / 3.0).abs() < 0.08,
            "{:?}",
            last.service_host_share["compose-post"]
        );
    }
}

/// Blocks a fixed fraction of every flow at the entry service.
struct Blocker(f64);

impl Planner for Blocker {
    fn name(&self) -> &str {
        "blocker"
    }
    fn interval(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn plan(&mut self, snap: &Snapshot) -> PlanUpdate {
        let mut up = PlanUpdate::default();
        let sp = ServicePlan {
            blocking: [(
                "*".into(),
                Blocking {
                    fraction: self.0,
                    max_in_flight: None,
                },
            )]
            .into(),
            ..Default::default()
        };
        up.services
            .insert(snap.services.keys().next().cloned().unwrap_or_default(), sp);
        up
    }
}

#[test]
fn blocked_errored_and_completed_add_up() {
    let mut s = mm1(60.0);
    s.duration_s = 300.0;
    s.services[0].error_rate = 0.05;
    let p = Policies::resolve(&s, &SimOptions::default())
        .unwrap()
        .with_planner(&s, Box::new(Blocker(0.25)));
    let o = run_with(&s, 3, p, &mut quiet);
    conserved(&o);
    let c = o.run.counts;
    let blocked = c.blocked as f64 / c.offered as f64;
    // Blocking starts after the first planner iteration (1 s of 300).
    assert!((blocked - 0.25).abs() < 0.01, "{c:?}");
    let failed = c.failed as f64 / (c.offered - c.blocked) as f64;
    assert!((failed - 0.05).abs() < 0.01, "{c:?}");
    assert_eq!(o.run.summary.plan_pushes, 1);
}

#[test]
fn a_failed_call_to_an_optional_service_degrades_its_request_instead_of_failing_it() {
    // api calls recs, which calls deep; one of recs or deep always fails.
    let scenario = |recs_fails: bool, optional: bool| {
        let (recs_err, deep_err) = if recs_fails { (1, 0) } else { (0, 1) };
        let yaml = format!(
            "name: optional
duration_s: 20
hosts: [{{name: h}}]
services:
  - {{name: api, service_time: {{dist: constant, mean_ms: 1}}, concurrency: 8, replicas: {{h: 1}}, calls: [{{service: recs}}, {{service: db}}]}}
  - {{name: recs, service_time: {{dist: constant, mean_ms: 1}}, concurrency: 8, replicas: {{h: 1}}, calls: [{{service: deep}}], error_rate: {recs_err}, optional: {optional}}}
  - {{name: deep, service_time: {{dist: constant, mean_ms: 1}}, concurrency: 8, replicas: {{h: 1}}, error_rate: {deep_err}}}
  - {{name: db, service_time: {{dist: constant, mean_ms: 1}}, concurrency: 8, replicas: {{h: 1}}}}
flows:
  - {{name: f, entry: api, arrival: {{process: poisson, rate: 50}}, sla: {{latency_ms: 100}}}}
"
        );
        Scenario::parse(&yaml, None).unwrap()
    };
    for recs_fails in [true, false] {
        let o = run(
            &scenario(recs_fails, true),
            &SimOptions::default(),
            &mut quiet,
        )
        .unwrap();
        conserved(&o);
        let c = o.run.counts;
        assert_eq!((c.failed, c.completed), (0, c.offered), "{c:?}");
        let o = run(
            &scenario(recs_fails, false),
            &SimOptions::default(),
            &mut quiet,
        )
        .unwrap();
        conserved(&o);
        let c = o.run.counts;
        assert_eq!((c.failed, c.completed), (c.offered, 0), "{c:?}");
    }
}

/// Asks for a fixed container count.
struct Fixed(u32);

impl Scaler for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }
    fn interval(&self) -> Duration {
        Duration::from_secs(10)
    }
    fn scale(&mut self, snap: &Snapshot) -> Vec<ScaleDecision> {
        snap.services
            .values()
            .map(|s| ScaleDecision {
                service: s.name.clone(),
                from: s.containers.len() as u32,
                to: self.0,
                reason: "test".into(),
                ..Default::default()
            })
            .collect()
    }
}

#[test]
fn scaler_decisions_start_and_stop_containers() {
    let mut s = mm1(150.0);
    s.flows[0].sla.latency_ms = 300.0;
    s.duration_s = 100.0;
    s.warmup_s = 0.0;
    s.report_interval_s = 10.0;
    let mut p = Policies::resolve(&s, &SimOptions::default())
        .unwrap()
        .with_scaler(&s, Box::new(Fixed(3)));
    p.name = "p2c-ewma+fixed".into();
    let o = run_with(&s, 1, p, &mut quiet);
    conserved(&o);
    let counts: Vec<u32> = o
        .run
        .intervals
        .iter()
        .map(|i| i.total_containers())
        .collect();
    // The first scaler tick is at 10 s, as the first interval closes.
    assert_eq!(counts[0], 1, "{counts:?}");
    assert!(counts[1..].iter().all(|&n| n == 3), "{counts:?}");
    // 1 container for 10 s, then 3 for 90 s.
    assert!(
        (o.run.summary.container_seconds - 280.0).abs() < 1e-6,
        "{}",
        o.run.summary.container_seconds
    );
    // One container at rho = 1.5 would diverge; three keep the queue short.
    assert!(o.run.summary.p50_ms < 100.0, "{:?}", o.run.summary);
    assert_eq!(o.scale_decisions.len(), 10);
    // The 10 s of backlog (p95 3.4 s) drain early in the second interval, whose p95 (5 s) still
    // holds them; after that each of the three containers is an M/M/1 queue at rho = 0.5, p95
    // about 60 ms, up to 140 ms in an unlucky 10 s. At 300 ms the SLA is met from 20 s on; left at
    // one container it never is.
    assert_eq!(
        o.run.summary.sla_met_at_s,
        Some(20.0),
        "{:?}",
        o.run.summary
    );
    let unscaled = run(&s, &SimOptions::default(), &mut quiet).unwrap();
    assert_eq!(unscaled.run.summary.sla_met_at_s, None);
}

#[test]
fn scaling_in_keeps_requests_and_callers_consistent() {
    let yaml = "
name: chain
duration_s: 60
hosts: [{name: h}]
services:
  - {name: a, service_time: {dist: exponential, mean_ms: 2}, concurrency: 2, replicas: {h: 4}, calls: [{service: b}]}
  - {name: b, service_time: {dist: exponential, mean_ms: 2}, concurrency: 2, replicas: {h: 4}}
flows:
  - {name: f, entry: a, arrival: {process: poisson, rate: 200}, sla: {latency_ms: 100}}
";
    let s = Scenario::parse(yaml, None).unwrap();
    let p = Policies::resolve(&s, &SimOptions::default())
        .unwrap()
        .with_scaler(&s, Box::new(Fixed(2)));
    let mut e = engine::Engine::new(&s, 1, p.schedule);
    e.run(&mut quiet);
    let c = e.rec.counts;
    assert_eq!(c.completed + c.failed + c.blocked, c.offered, "{c:?}");
    assert_eq!(c.failed, 0, "{c:?}");
    let snap = e.snapshot();
    assert_eq!(snap.services["a"].containers.len(), 2);
    // b's callers: the two remaining containers of a.
    assert_eq!(
        snap.services["b"].callers.len(),
        2,
        "{:?}",
        snap.services["b"].callers
    );
    // Full connections: 2 callers x 2 endpoints of b, 1 ingress x 2 endpoints of a.
    assert_eq!(
        e.connections(),
        [("a".to_string(), 2), ("b".to_string(), 4)].into()
    );
}

#[test]
fn unknown_policy_names_are_refused() {
    let s = mm1(10.0);
    let e = Policies::resolve(
        &s,
        &SimOptions {
            planner: Some("nope".into()),
            ..Default::default()
        },
    );
    assert!(e.err().unwrap().to_string().contains("nope"));
    let e = Policies::resolve(
        &s,
        &SimOptions {
            scaler: Some("nope".into()),
            ..Default::default()
        },
    );
    assert!(e.err().unwrap().to_string().contains("nope"));
}

#[test]
fn every_shipped_scenario_runs() {
    for name in [
        "imbalance",
        "imbalance-cold",
        "multicloud",
        "mesh-two-services",
        "hotel",
        "hotel-diurnal",
        "large",
    ] {
        let mut s = shipped(&format!("{name}.yaml"));
        s.warmup_s = 2.0;
        s.duration_s = if name == "large" { 4.0 } else { 20.0 };
        let o = run(&s, &SimOptions::default(), &mut quiet).unwrap();
        conserved(&o);
        assert!(o.run.counts.completed > 0, "{name}: {:?}", o.run.counts);
        assert!(!o.run.intervals.is_empty(), "{name}");
    }
}

/// Sends the ingress's traffic for the entry service to one endpoint only (a per-proxy subset).
struct OneEndpoint;

impl Planner for OneEndpoint {
    fn name(&self) -> &str {
        "one-endpoint"
    }
    fn plan(&mut self, snap: &Snapshot) -> PlanUpdate {
        // Plans from its second round on (the first, at 0 s, leaves the data plane its default).
        if snap.now.is_zero() {
            return PlanUpdate::default();
        }
        let svc = &snap.services["q"];
        let last = svc
            .containers
            .last()
            .map(|c| c.endpoint.key().to_string())
            .unwrap_or_default();
        let sp = ServicePlan {
            subset: vec![loadshift_core::plan::SubsetEntry {
                endpoint: last,
                share: 1.0,
            }],
            ..Default::default()
        };
        let mut up = PlanUpdate::default();
        for caller in &svc.callers {
            up.per_proxy
                .entry(caller.clone())
                .or_default()
                .insert("q".into(), sp.clone());
        }
        up
    }
}

#[test]
fn per_proxy_subsets_steer_that_proxys_calls() {
    let mut s = mm1(20.0);
    s.duration_s = 60.0;
    s.warmup_s = 0.0;
    s.hosts.push(crate::scenario::Host {
        name: "h2".into(),
        zone: crate::scenario::DEFAULT_ZONE.into(),
        cores: 8,
        interference: Default::default(),
    });
    s.services[0].replicas.insert("h2".into(), 1);
    let p = Policies::resolve(&s, &SimOptions::default())
        .unwrap()
        .with_planner(&s, Box::new(OneEndpoint));
    let o = run_with(&s, 1, p, &mut quiet);
    conserved(&o);
    assert_eq!(o.run.summary.plan_pushes, 1);
    // One ingress proxy restricted to one of the two endpoints.
    assert_eq!(o.connections["q"], 1);
    // Before the first plan (5 s) both hosts get calls; afterwards only h2.
    let first = &o.run.intervals[0].service_host_share["q"];
    assert!(first.len() == 2, "{first:?}");
    for iv in &o.run.intervals[1..] {
        assert_eq!(
            iv.service_host_share["q"].get("h2"),
            Some(&1.0),
            "{:?}",
            iv.service_host_share
        );
    }
}

#[test]
fn compare_accepts_planner_plus_scaler() {
    let mut s = mm1(10.0);
    s.duration_s = 20.0;
    let (report, _) = compare(
        &s,
        &[Some("even+none".into()), Some("p2c-ewma".into())],
        &SimOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let names: Vec<&str> = report.runs.iter().map(|r| r.policy.as_str()).collect();
    // An entry that names its scaler is reported under exactly that key, `+none` included.
    assert_eq!(names, ["even+none", "p2c-ewma"]);
    assert!(
        compare(
            &s,
            &[Some("even+nope".into())],
            &SimOptions::default(),
            &mut |_, _| {}
        )
        .is_err()
    );
}

/// The bars that hold on the shipped `imbalance` scenario as shipped (seed 1, 300 s; the
/// p95 covers the convergence period, so a shorter run weighs it more):
/// `imbres-shift` settles within 6 iterations of the interference onset and its p95 is at most
/// 0.9x p2c-ewma's; the paper's pure variant, at eta 0.2, is slower to settle.
#[test]
fn imbres_shift_settles_within_six_iterations_and_beats_p2c_on_imbalance() {
    let s = shipped("imbalance.yaml");
    let go = |p: &str| {
        run(
            &s,
            &SimOptions {
                planner: Some(p.into()),
                ..Default::default()
            },
            &mut quiet,
        )
        .unwrap()
        .run
        .summary
    };
    let (shift, pure, p2c) = (go("imbres-shift"), go("imbres-shift-pure"), go("p2c-ewma"));
    let conv = shift.converge_iterations.expect("imbres-shift settles");
    assert!(conv <= 6, "imbres-shift settled after {conv} iterations");
    assert!(
        shift.p95_ms <= 0.9 * p2c.p95_ms,
        "imbres-shift p95 {} vs p2c-ewma {}",
        shift.p95_ms,
        p2c.p95_ms
    );
    assert!(
        pure.converge_iterations.is_none_or(|c| c > conv),
        "pure {:?} vs {conv}",
        pure.converge_iterations
    );
}

/// The step log under `random` actions: every step carries at most what was offered, the
/// blocked share follows the plans' blocking fractions, shares are the plans' host weights; the
/// collection trace has one entry per managed service in the model's order.
#[test]
fn the_step_log_follows_the_plans_in_force() {
    let mut s = shipped("mesh-two-services.yaml");
    s.duration_s = 200.0;
    let o = run(
        &s,
        &SimOptions {
            planner: Some("random".into()),
            ..Default::default()
        },
        &mut quiet,
    )
    .unwrap();
    assert!(o.steps.len() >= 38, "{}", o.steps.len());
    let (mut offered, mut carried, mut expected_blocked) = (0.0, 0.0, 0.0);
    for step in o.steps.iter().skip(1) {
        for name in ["s1", "s2"] {
            let x = &step.services[name];
            assert!(x.carried_rps <= x.offered_rps + 1e-9, "{x:?}");
            assert!(
                (x.host_shares.values().sum::<f64>() - 1.0).abs() < 1e-9,
                "{x:?}"
            );
            offered += x.offered_rps;
            carried += x.carried_rps;
            expected_blocked += x.offered_rps * x.block;
        }
    }
    // The gate blocks its fraction of what is offered.
    let blocked = offered - carried;
    assert!(
        (blocked - expected_blocked).abs() < 0.05 * offered,
        "blocked {blocked:.1}, plans say {expected_blocked:.1} of {offered:.1}"
    );

    let (services, trace) = objective::collect(&s, 20, 7, &Default::default(), &mut quiet).unwrap();
    let names: Vec<&str> = services.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["s1", "s2"]);
    assert_eq!(services[0].hosts, ["n1", "n2"]);
    assert_eq!(trace.len(), 20);
    for t in &trace {
        assert_eq!(t.services.len(), 2);
        for x in &t.services {
            assert!(
                [5.0, 10.0, 15.0, 20.0]
                    .iter()
                    .any(|l| (x.offered_rps - l).abs() < 8.0)
            );
            assert_eq!(x.action.shares.len(), 2);
        }
    }
    // Without a management objective there is nothing to collect for.
    let e = objective::collect(
        &shipped("imbalance.yaml"),
        5,
        1,
        &Default::default(),
        &mut quiet,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no management objective"), "{e}");
}
