//! Per flow (request type): `requests`, `mean_ms`, `p90_ms`, `p95_ms` and `sla_violation_pct`
//! over one flow's requests, so a comparison says per request type where a policy wins or loses
//! (QueueFlower, seed 003, reports its results per request type).
//!
//! The policy-wide figures are these tallies pooled rather than a second record of the same
//! requests: the flows add up to the policy by construction, and every latency is still kept
//! once (4 bytes per request; the parent module says why quantiles are exact).

use std::collections::BTreeMap;

use super::{Samples, pct};
use crate::report::FlowSummary;

/// Requests that arrived after warm-up, of one flow or (pooled) of all.
#[derive(Clone, Debug, Default)]
pub(super) struct Tally {
    pub offered: u64,
    /// Not blocked: completed or failed, with a latency. Requests still in flight when the run
    /// ends are offered but never answered.
    pub answered: u64,
    /// Of those, failed or slower than their flow's SLA latency.
    pub violations: u64,
    pub sum_latency_ms: f64,
    pub latencies: Samples,
}

impl Tally {
    /// Mean answered latency, ms; 0 when nothing was answered.
    pub fn mean_ms(&self) -> f64 {
        if self.answered == 0 {
            0.0
        } else {
            self.sum_latency_ms / self.answered as f64
        }
    }

    /// Violations over answered requests, %.
    pub fn violation_pct(&self) -> f64 {
        pct(self.violations, self.answered)
    }

    fn add(&mut self, other: &Tally) {
        self.offered += other.offered;
        self.answered += other.answered;
        self.violations += other.violations;
        self.sum_latency_ms += other.sum_latency_ms;
        self.latencies.extend(&other.latencies);
    }

    fn summary(&self) -> FlowSummary {
        let q = self.latencies.quantiles(&[0.90, 0.95]);
        FlowSummary {
            requests: self.offered,
            mean_ms: self.mean_ms(),
            p90_ms: q[0] / 1000.0,
            p95_ms: q[1] / 1000.0,
            sla_violation_pct: self.violation_pct(),
        }
    }
}

/// One [`Tally`] per flow, in the scenario's order.
#[derive(Clone, Debug, Default)]
pub(super) struct Flows {
    names: Vec<String>,
    tallies: Vec<Tally>,
}

impl Flows {
    pub fn new(names: Vec<String>) -> Self {
        Self {
            tallies: vec![Tally::default(); names.len()],
            names,
        }
    }

    /// A request of `flow` arrived after warm-up.
    pub fn offered(&mut self, flow: usize) {
        self.tallies[flow].offered += 1;
    }

    /// A request of `flow` that arrived after warm-up got an answer after `latency_ns`;
    /// `violated`: it failed or was slower than the flow's SLA latency.
    pub fn answered(&mut self, flow: usize, latency_ns: u64, violated: bool) {
        let t = &mut self.tallies[flow];
        t.latencies.record(latency_ns / 1000);
        t.answered += 1;
        t.violations += u64::from(violated);
        t.sum_latency_ms += latency_ns as f64 / 1e6;
    }

    /// Every flow's requests together: the policy-wide figures.
    pub fn pooled(&self) -> Tally {
        let mut all = Tally::default();
        for t in &self.tallies {
            all.add(t);
        }
        all
    }

    /// `flows` of `summary.json`.
    pub fn summaries(&self) -> BTreeMap<String, FlowSummary> {
        self.names
            .iter()
            .zip(&self.tallies)
            .map(|(n, t)| (n.clone(), t.summary()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn each_flow_is_summarised_over_its_own_requests_and_pooled_for_the_policy() {
        let mut f = Flows::new(vec!["short".into(), "long".into()]);
        // short: 10 offered, 1..=10 ms, the slowest two violate; long: 5 offered, 4 answered at
        // 100 ms, one failed.
        for ms in 1..=10 {
            f.offered(0);
            f.answered(0, ms * MS, ms > 8);
        }
        for k in 0..5 {
            f.offered(1);
            if k < 4 {
                f.answered(1, 100 * MS, k == 3);
            }
        }
        let s = f.summaries();
        assert_eq!(s.keys().collect::<Vec<_>>(), ["long", "short"]);
        let short = &s["short"];
        assert_eq!(short.requests, 10);
        assert_eq!(
            (short.mean_ms, short.p90_ms, short.p95_ms),
            (5.5, 9.0, 10.0)
        );
        assert_eq!(short.sla_violation_pct, 20.0);
        let long = &s["long"];
        assert_eq!(long.requests, 5);
        assert_eq!(
            (long.mean_ms, long.p90_ms, long.p95_ms),
            (100.0, 100.0, 100.0)
        );
        assert_eq!(long.sla_violation_pct, 25.0);

        let all = f.pooled();
        assert_eq!((all.offered, all.answered, all.violations), (15, 14, 3));
        assert_eq!(all.mean_ms(), (55.0 + 400.0) / 14.0);
        // Nearest rank 13 of 14 (ceil(0.9 * 14)) lands among long's.
        assert_eq!(all.latencies.quantile(0.90), 100_000.0);
        assert_eq!(all.violation_pct(), 300.0 / 14.0);
    }

    #[test]
    fn a_flow_with_no_request_after_warm_up_reports_zeros() {
        let f = Flows::new(vec!["idle".into()]);
        assert_eq!(f.summaries()["idle"], FlowSummary::default());
    }
}
