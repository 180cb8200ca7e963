//! Per-flow figures from a real run: two request types of different lengths and SLAs, each
//! summarised over its own requests against its own (scaled) SLA.

use super::{conserved, quiet};
use crate::{SimOptions, run, scenario::Scenario};

/// Two flows on separate services with constant work and evenly spaced arrivals, far from
/// saturation: `quick` (5 ms of work, 10 ms SLA, 100/s) always meets its SLA, `slow` (20 ms of
/// work, 15 ms SLA, 40/s) never does. 30 s after a 10 s warm-up.
fn two_flows() -> Scenario {
    Scenario::parse(
        "name: two-flows
duration_s: 40
warmup_s: 10
hosts: [{name: h, cores: 64}]
services:
  - {name: short, service_time: {dist: constant, mean_ms: 5}, replicas: {h: 4}}
  - {name: long, service_time: {dist: constant, mean_ms: 20}, replicas: {h: 4}}
flows:
  - {name: quick, entry: short, arrival: {process: constant, rate: 100}, sla: {latency_ms: 10}}
  - {name: slow, entry: long, arrival: {process: constant, rate: 40}, sla: {latency_ms: 15}}
",
        None,
    )
    .unwrap()
}

#[test]
fn each_flow_is_judged_on_its_own_requests_and_sla() {
    let o = run(&two_flows(), &SimOptions::default(), &mut quiet).unwrap();
    conserved(&o);
    let s = &o.run.summary;
    assert_eq!(s.flows.keys().collect::<Vec<_>>(), ["quick", "slow"]);
    let (quick, slow) = (&s.flows["quick"], &s.flows["slow"]);
    // The policy's requests are the flows' requests, in the ratio of their rates.
    assert_eq!(quick.requests + slow.requests, s.requests);
    assert!(quick.requests.abs_diff(3000) <= 1, "{quick:?}");
    assert!(slow.requests.abs_diff(1200) <= 1, "{slow:?}");
    // Each flow's latency is its own work, not the mix of both.
    for (f, work) in [(quick, 5.0), (slow, 20.0)] {
        for v in [f.mean_ms, f.p90_ms, f.p95_ms] {
            assert!((work..work + 1.0).contains(&v), "{f:?}");
        }
    }
    assert!(s.p50_ms < 6.0 && s.p95_ms >= 20.0, "{s:?}");
    assert_eq!(
        (quick.sla_violation_pct, slow.sla_violation_pct),
        (0.0, 100.0)
    );
    // The policy-wide figures are the flows' pooled: weighted by the flows' requests.
    let n = (quick.requests + slow.requests) as f64;
    let viol = 100.0 * slow.requests as f64 / n;
    assert!((s.sla_violation_pct - viol).abs() < 0.1, "{s:?}");
    let mean = (quick.mean_ms * quick.requests as f64 + slow.mean_ms * slow.requests as f64) / n;
    assert!((s.mean_ms - mean).abs() < 0.01, "{s:?}");

    // `--sla-scale 1.5`: 15 ms for `quick`, 22.5 ms for `slow`, which now meets its own.
    let scaled = run(
        &two_flows(),
        &SimOptions {
            sla_scale: 1.5,
            ..Default::default()
        },
        &mut quiet,
    )
    .unwrap();
    let f = &scaled.run.summary.flows;
    assert_eq!(
        (f["quick"].sla_violation_pct, f["slow"].sla_violation_pct),
        (0.0, 0.0)
    );
    assert_eq!(f["slow"].p95_ms, slow.p95_ms);
}

#[test]
fn failed_requests_count_in_their_flow_only() {
    // `slow` times out after 18 ms: every request fails, `quick` is untouched.
    let mut sc = two_flows();
    sc.flows[1].timeout_ms = 18.0;
    sc.flows[1].sla.latency_ms = 1000.0;
    let o = run(&sc, &SimOptions::default(), &mut quiet).unwrap();
    conserved(&o);
    let (quick, slow) = (&o.run.summary.flows["quick"], &o.run.summary.flows["slow"]);
    assert_eq!(o.run.counts.failed, slow.requests, "{:?}", o.run.counts);
    // Failed, so violating whatever the SLA; still timed like the policy-wide mean.
    assert_eq!(
        (quick.sla_violation_pct, slow.sla_violation_pct),
        (0.0, 100.0)
    );
    assert!(slow.mean_ms >= 20.0, "{slow:?}");
}
