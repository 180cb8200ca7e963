//! The twin runs the data plane's slow start and latency-outlier ejection, from the scenario's
//! `slow_start` and `ejection` sections (the proxy config's types), and changes nothing when they
//! are off.

use super::{Fixed, conserved, quiet};
use crate::{Policies, SimOptions, run, run_with, scenario::Scenario};

/// Three single-container hosts under round robin; `h3` runs work ten times slower from the
/// start (`a_cpu` 1 at 90 % CPU: `1 + 0.9 / 0.1`).
fn one_slow_host(extra: &str) -> Scenario {
    Scenario::parse(
        &format!(
            "name: one-slow
duration_s: 60
hosts: [{{name: h1}}, {{name: h2}}, {{name: h3, interference: {{cpu: 0.9}}}}]
interference: {{a_cpu: 1.0}}
services:
  - {{name: q, service_time: {{dist: exponential, mean_ms: 2}}, concurrency: 8, replicas: {{h1: 1, h2: 1, h3: 1}}}}
flows:
  - {{name: f, entry: q, arrival: {{process: poisson, rate: 300}}, sla: {{latency_ms: 100}}}}
policy: {{planner: round-robin}}
{extra}"
        ),
        None,
    )
    .unwrap()
}

fn h3_share(s: &Scenario) -> (f64, u64) {
    let o = run(s, &SimOptions::default(), &mut quiet).unwrap();
    conserved(&o);
    let ivs = &o.run.intervals;
    let share = ivs
        .iter()
        .map(|iv| iv.service_host_share["q"].get("h3").copied().unwrap_or(0.0))
        .sum::<f64>()
        / ivs.len() as f64;
    (share, o.latency_ejections)
}

#[test]
fn a_ten_times_slower_container_is_ejected_and_tried_again() {
    let (off, none) = h3_share(&one_slow_host(""));
    assert_eq!(none, 0);
    assert!((off - 1.0 / 3.0).abs() < 0.02, "round robin: {off}");
    let (on, ejections) = h3_share(&one_slow_host(
        "ejection: {latency: {enabled: true, interval_ms: 2000}}",
    ));
    // Ejected at 2 s for 1 s, back, judged on its own calls again, ejected for 2 s, 4 s, ...:
    // readmitted every time, and out most of the minute.
    assert!((3..=8).contains(&ejections), "{ejections} ejections");
    assert!(on < 0.12, "share with latency ejection: {on}");
}

#[test]
fn a_container_started_by_a_scaler_ramps_up_over_the_window() {
    // Two containers on h1 under round robin; the scaler adds a third at 10 s, placed on the
    // empty h2 (most free cores), so h2's share of calls is the new container's.
    let base = |extra: &str| {
        Scenario::parse(
            &format!(
                "name: join
duration_s: 70
report_interval_s: 5
hosts: [{{name: h1, cores: 4}}, {{name: h2, cores: 16}}]
placement: most-free-cores
services:
  - {{name: q, service_time: {{dist: exponential, mean_ms: 2}}, concurrency: 4, replicas: {{h1: 2}}}}
flows:
  - {{name: f, entry: q, arrival: {{process: poisson, rate: 400}}, sla: {{latency_ms: 100}}}}
policy: {{planner: round-robin}}
{extra}"
            ),
            None,
        )
        .unwrap()
    };
    let h2 = |s: &Scenario| -> Vec<f64> {
        let p = Policies::resolve(s, &SimOptions::default())
            .unwrap()
            .with_scaler(s, Box::new(Fixed(3)));
        let o = run_with(s, 1, p, &mut quiet);
        conserved(&o);
        o.run
            .intervals
            .iter()
            .map(|iv| iv.service_host_share["q"].get("h2").copied().unwrap_or(0.0))
            .collect()
    };
    // Intervals end at 5, 10, ..., 70 s; the container joins at 10 s.
    let off = h2(&base(""));
    assert_eq!(off[1], 0.0, "{off:?}");
    assert!((off[2] - 1.0 / 3.0).abs() < 0.03, "{off:?}");
    let on = h2(&base("slow_start: {window_ms: 40000}"));
    // 10-15 s: factor 0.1 to 0.125, its turn kept that often: about 1/3 x 0.11.
    assert!(on[2] < 0.07, "{on:?}");
    // 30-35 s: factor 0.5 to 0.625.
    assert!((on[6] - 1.0 / 3.0 * 0.5625).abs() < 0.04, "{on:?}");
    // From 50 s, the window is over: a full third.
    for &share in &on[10..] {
        assert!((share - 1.0 / 3.0).abs() < 0.03, "{on:?}");
    }
}

#[test]
fn data_plane_sections_are_validated_like_the_proxys() {
    for (extra, want) in [
        (
            "slow_start: {min_weight: 2}",
            "slow_start.min_weight: 2.0 must be in (0, 1]",
        ),
        (
            "ejection: {latency: {k: 0.5}}",
            "ejection.latency.k: 0.5 must be finite and > 1",
        ),
        ("ejection: {latency: {bogus: 1}}", "unknown field `bogus`"),
    ] {
        let text = format!(
            "name: x
duration_s: 1
hosts: [{{name: h}}]
services: [{{name: q, service_time: {{dist: constant, mean_ms: 1}}, replicas: {{h: 1}}}}]
flows: [{{name: f, entry: q, arrival: {{process: constant, rate: 1}}, sla: {{latency_ms: 10}}}}]
{extra}"
        );
        let e = Scenario::parse(&text, None).unwrap_err().to_string();
        assert!(e.contains(want), "{want:?} not in {e:?}");
    }
}
