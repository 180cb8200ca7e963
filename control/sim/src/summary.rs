//! What a run measures: end-to-end latency per report interval and per control interval, where
//! every request ended up, calls per (service, host), containers over time; and the summary
//! numbers of `summary.json` derived from them, policy-wide and per flow (see [`flows`]).
//!
//! Latency quantiles here are exact (every latency is kept, 4 bytes per request): the data
//! plane's log-linear histogram reports values within 6.25% of themselves, which is coarser than
//! the 5% convergence tolerance and would make every seed of a run report the same bucket.
//!
//! Convergence is counted from the scenario's last change (see [`onset_s`]): iterations before
//! the imbalance exists say nothing about how fast a planner reacts to it. `sla_met_at_s` (see
//! [`sla`]) is counted from the start of the run instead.

mod flows;
mod sla;

use std::collections::BTreeMap;

use crate::{
    report::{Counts, Interval, PolicySummary},
    scenario::{Arrival, Scenario, Schedule, schedule::Shape},
};
use flows::Flows;
use sla::SlaRecord;

/// Tolerance of the convergence criterion: within 5% of the final p95.
const CONVERGE_TOL: f64 = 0.05;
/// Control intervals with fewer finished requests carry too little signal to judge convergence.
const CONVERGE_MIN_SAMPLES: usize = 20;
/// Iterations pooled (trailing) into the p95 that convergence judges: iteration `i` is judged on
/// the requests of iterations `i - 2 ..= i` (see [`Recorder::converge_iterations`] for why).
pub const CONVERGE_POOL: usize = 3;

/// Latencies in microseconds with exact nearest-rank quantiles.
#[derive(Clone, Debug, Default)]
pub(super) struct Samples(Vec<u32>);

impl Samples {
    pub fn record(&mut self, us: u64) {
        self.0.push(u32::try_from(us).unwrap_or(u32::MAX));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn extend(&mut self, other: &Samples) {
        self.0.extend_from_slice(&other.0);
    }

    /// Nearest-rank quantile (rank `ceil(q n)`, as the histogram), microseconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        self.quantiles(&[q])[0]
    }

    /// Several quantiles with one sort of a copy.
    pub fn quantiles(&self, qs: &[f64]) -> Vec<f64> {
        self.clone().into_quantiles(qs)
    }

    /// As [`Samples::quantiles`], sorting in place: a pooled set that is not kept needs no copy.
    pub fn into_quantiles(mut self, qs: &[f64]) -> Vec<f64> {
        if self.0.is_empty() {
            return vec![0.0; qs.len()];
        }
        self.0.sort_unstable();
        let n = self.0.len();
        qs.iter()
            .map(|&q| f64::from(self.0[nearest_rank(q, n) - 1]))
            .collect()
    }
}

/// `a` of `b` in %; 0 when `b` is 0.
fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

/// Nearest rank of quantile `q` among `n >= 1` sorted values, 1-based: `ceil(q n)` within
/// `[1, n]`.
fn nearest_rank(q: f64, n: usize) -> usize {
    ((q.clamp(0.0, 1.0) * n as f64).ceil() as usize).clamp(1, n)
}

/// When the scenario last changed what the hosts or the arrivals look like (a step of an
/// interference schedule or of a step arrival), in seconds, among changes before `before_s`;
/// 0 when nothing steps. Smooth shapes (linear, sinusoid, traces) have no single onset.
pub fn onset_s(s: &Scenario, before_s: f64) -> f64 {
    let mut last: f64 = 0.0;
    let mut see = |points: &[(f64, f64)]| {
        // A step changes the value only when it differs from the one before it.
        for w in points.windows(2) {
            if w[1].1 != w[0].1 && w[1].0 < before_s {
                last = last.max(w[1].0);
            }
        }
    };
    for h in &s.hosts {
        for sch in [
            &h.interference.cpu,
            &h.interference.membw,
            &h.interference.net,
        ] {
            if let Schedule::Shaped(Shape::Steps(p)) = sch {
                see(p);
            }
        }
    }
    for f in &s.flows {
        if let Arrival::Step { steps } = &f.arrival {
            see(steps);
        }
    }
    last
}

/// The criterion of `converge_iterations`, shared by the simulator and the lab: `since_onset`
/// holds each control iteration from the scenario's last change on as (p95, requests), both over
/// the iteration pooled with up to [`CONVERGE_POOL`]` - 1` iterations before it (earlier
/// iterations, before the onset included, never later ones); `final_p95` is the p95 of the last
/// quarter of the run's iterations. Iterations until every later one with at least 20 requests is
/// within 5% of `final_p95`; `None` when the last one is still outside (or there is no data).
pub fn converged_after(since_onset: &[(f64, usize)], final_p95: f64) -> Option<u32> {
    if since_onset.is_empty() || final_p95 <= 0.0 {
        return None;
    }
    let ok = |&(p95, n): &(f64, usize)| {
        n < CONVERGE_MIN_SAMPLES || (p95 - final_p95).abs() <= CONVERGE_TOL * final_p95
    };
    match since_onset.iter().rposition(|x| !ok(x)) {
        None => Some(0),
        Some(i) if i + 1 < since_onset.len() => u32::try_from(i + 1).ok(),
        Some(_) => None,
    }
}

pub(super) struct Recorder {
    pub counts: Counts,
    /// Every request that arrived, warm-up included (for speed figures).
    pub arrivals: u64,
    /// Counted requests per flow; pooled, the policy-wide figures.
    flows: Flows,
    pub interval: Samples,
    pub interval_requests: u64,
    /// Per control interval (index = t / control interval), all requests, for convergence.
    pub control: Vec<Samples>,
    pub control_ns: u64,
    /// Control interval in which the scenario last changed; convergence counts from there.
    pub onset_interval: usize,
    /// Calls routed in the current report interval per service x host (row-major).
    pub calls: Vec<u64>,
    pub n_hosts: usize,
    pub intervals: Vec<Interval>,
    pub plan_pushes: u64,
    /// Integrated over [warm-up, duration].
    pub container_seconds: f64,
    /// Control intervals that lie wholly inside the run (the drain's partial one is left out).
    pub full_control_intervals: usize,
    /// Per report interval, whether every flow met its SLA (for `sla_met_at_s`).
    sla: SlaRecord,
}

impl Recorder {
    /// `flows`: per flow of the scenario, in order, its name and the percentile its SLA is
    /// stated at.
    pub fn new(n_svcs: usize, n_hosts: usize, control_ns: u64, flows: &[(&str, f64)]) -> Self {
        let sla_percentiles: Vec<f64> = flows.iter().map(|&(_, p)| p).collect();
        Self {
            counts: Counts::default(),
            arrivals: 0,
            flows: Flows::new(flows.iter().map(|&(n, _)| n.to_string()).collect()),
            interval: Samples::default(),
            interval_requests: 0,
            control: Vec::new(),
            control_ns: control_ns.max(1),
            onset_interval: 0,
            calls: vec![0; n_svcs * n_hosts],
            n_hosts,
            intervals: Vec::new(),
            plan_pushes: 0,
            container_seconds: 0.0,
            full_control_intervals: usize::MAX,
            sla: SlaRecord::new(&sla_percentiles),
        }
    }

    /// A request of `flow` arrived; `counted`: after warm-up.
    pub fn arrived(&mut self, flow: usize, counted: bool) {
        self.arrivals += 1;
        if counted {
            self.counts.offered += 1;
            self.flows.offered(flow);
        }
    }

    /// A request of `flow` that got an answer (successful or not) after `latency_ns`; `violated`:
    /// it failed or took longer than its flow's SLA latency.
    pub fn answered(
        &mut self,
        flow: usize,
        now_ns: u64,
        latency_ns: u64,
        counted: bool,
        violated: bool,
    ) {
        let us = latency_ns / 1000;
        let k = (now_ns / self.control_ns) as usize;
        if self.control.len() <= k {
            self.control.resize_with(k + 1, Samples::default);
        }
        self.control[k].record(us);
        // The time series shows the warm-up too; the summary counts only what follows it.
        self.interval.record(us);
        self.interval_requests += 1;
        self.sla.record(flow, violated);
        if counted {
            self.flows.answered(flow, latency_ns, violated);
        }
    }

    /// Closes the report interval ending at `t_s`.
    pub fn close_interval(
        &mut self,
        t_s: f64,
        svc_names: &[String],
        host_names: &[String],
        containers: BTreeMap<String, u32>,
    ) {
        let q = self.interval.quantiles(&[0.50, 0.95, 0.99]);
        let mut iv = Interval {
            t_s,
            requests: self.interval_requests,
            p50_ms: q[0] / 1000.0,
            p95_ms: q[1] / 1000.0,
            p99_ms: q[2] / 1000.0,
            containers,
            ..Default::default()
        };
        let total: u64 = self.calls.iter().sum();
        let mut per_host = vec![0u64; self.n_hosts];
        for (s, name) in svc_names.iter().enumerate() {
            let row = &self.calls[s * self.n_hosts..(s + 1) * self.n_hosts];
            let n: u64 = row.iter().sum();
            if n == 0 {
                continue;
            }
            let mut shares = BTreeMap::new();
            for (h, &c) in row.iter().enumerate() {
                per_host[h] += c;
                if c > 0 {
                    shares.insert(host_names[h].clone(), c as f64 / n as f64);
                }
            }
            iv.service_host_share.insert(name.clone(), shares);
        }
        if total > 0 {
            for (h, &c) in per_host.iter().enumerate() {
                iv.host_share
                    .insert(host_names[h].clone(), c as f64 / total as f64);
            }
        }
        self.intervals.push(iv);
        self.sla.close(t_s);
        self.interval.clear();
        self.interval_requests = 0;
        self.calls.fill(0);
    }

    /// Control iterations after the scenario's last change ([`Recorder::onset_interval`]) until
    /// the p95 stays within 5% of its final value (the p95 over the last quarter of the run) for
    /// good; `None` when it never settles. The interval in which the change happens is iteration 0
    /// (it runs on the plan made before the change).
    ///
    /// Iteration `i` is judged on the requests of iterations `i - 2 ..= i` pooled (a trailing
    /// 15 s p95 at the 5 s default), never on later ones. One 5 s interval holds a few thousand
    /// requests at the shipped rates, and its p95 alone wanders by about 5% with no policy change
    /// at all: judged one interval at a time, round-robin, which never changes anything after the
    /// onset, "converged" after 37 +- 14 iterations over seeds 1-5 of `imbalance`. Pooling can
    /// only delay the verdict (by at most two iterations), never advance it.
    pub fn converge_iterations(&self) -> Option<u32> {
        let n = self.control.len().min(self.full_control_intervals);
        if n == 0 {
            return None;
        }
        let mut tail = Samples::default();
        for h in &self.control[n - n.div_ceil(4)..n] {
            tail.extend(h);
        }
        let fin = tail.quantile(0.95);
        if fin <= 0.0 {
            return None;
        }
        let from = self.onset_interval.min(n - 1);
        let since_onset: Vec<(f64, usize)> = (from..n)
            .map(|i| {
                let mut pooled = Samples::default();
                for h in &self.control[i.saturating_sub(CONVERGE_POOL - 1)..=i] {
                    pooled.extend(h);
                }
                (pooled.quantile(0.95), pooled.len())
            })
            .collect();
        converged_after(&since_onset, fin)
    }

    pub fn summary(&self) -> PolicySummary {
        let all = self.flows.pooled();
        let (mean_ms, sla_violation_pct) = (all.mean_ms(), all.violation_pct());
        let q = all.latencies.into_quantiles(&[0.50, 0.90, 0.95, 0.99]);
        PolicySummary {
            mean_ms,
            p50_ms: q[0] / 1000.0,
            p90_ms: q[1] / 1000.0,
            p95_ms: q[2] / 1000.0,
            p99_ms: q[3] / 1000.0,
            sla_violation_pct,
            blocked_pct: pct(self.counts.blocked, self.counts.offered),
            container_seconds: self.container_seconds,
            converge_iterations: self.converge_iterations(),
            sla_met_at_s: self.sla.met_at_s(),
            plan_pushes: self.plan_pushes,
            requests: self.counts.offered,
            anr: None,
            hpa_target: None,
            flows: self.flows.summaries(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec_with(p95s: &[u64]) -> Recorder {
        let mut r = Recorder::new(1, 1, 1_000_000_000, &[("f", 95.0)]);
        for (k, &ms) in p95s.iter().enumerate() {
            for _ in 0..100 {
                r.answered(0, k as u64 * 1_000_000_000, ms * 1_000_000, true, false);
            }
        }
        r
    }

    #[test]
    fn convergence_counts_iterations_until_stable() {
        // Trailing pools of three: [40, 40, 40] first at index 5.
        assert_eq!(
            rec_with(&[90, 70, 50, 40, 40, 40, 40, 40, 40, 40, 40, 40]).converge_iterations(),
            Some(5)
        );
        assert_eq!(rec_with(&[40, 40, 40, 40]).converge_iterations(), Some(0));
        // Never settles: the final p95 (last quarter) is 80, the last pool's is 40.
        assert_eq!(
            rec_with(&[40, 40, 40, 40, 40, 40, 40, 40, 40, 80, 40, 40, 40]).converge_iterations(),
            None
        );
        assert_eq!(Recorder::new(1, 1, 1, &[]).converge_iterations(), None);
        // Counted from the onset: iterations before the change do not count, however far off.
        let mut r = rec_with(&[20, 20, 90, 70, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40]);
        r.onset_interval = 2;
        // Pools ending at 4 and 5 still hold 90 or 70 in their top 5%; the one ending at 6 is clean.
        assert_eq!(r.converge_iterations(), Some(4));
        r.onset_interval = 8;
        assert_eq!(r.converge_iterations(), Some(0));
    }

    #[test]
    fn one_noisy_iteration_among_calm_ones_does_not_reset_convergence() {
        // 100 requests per iteration; one iteration has 8 slow ones: alone its p95 is 2x off,
        // pooled with its two predecessors 3% of 300 are slow, below the 5% tail.
        let mut r = Recorder::new(1, 1, 1_000_000_000, &[("f", 95.0)]);
        for k in 0..12u64 {
            for j in 0..100 {
                let ms = if k == 9 && j < 8 { 200 } else { 100 };
                r.answered(0, k * 1_000_000_000, ms * 1_000_000, true, false);
            }
        }
        assert_eq!(r.converge_iterations(), Some(0));
    }

    #[test]
    fn quantiles_are_exact_where_the_histogram_would_round() {
        let mut s = Samples::default();
        for v in 1..=1000 {
            s.record(v);
        }
        assert_eq!(
            s.quantiles(&[0.5, 0.95, 0.99, 1.0]),
            vec![500.0, 950.0, 990.0, 1000.0]
        );
        // 100 ms and 104 ms share one histogram bucket; exact quantiles tell them apart.
        let mut a = Samples::default();
        a.record(100_000);
        let mut b = Samples::default();
        b.record(104_000);
        assert_ne!(a.quantile(0.95), b.quantile(0.95));
        assert_eq!(Samples::default().quantile(0.5), 0.0);
    }

    #[test]
    fn onset_is_the_last_step_of_an_interference_schedule() {
        let p =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/imbalance.yaml");
        let s = Scenario::load(&p).unwrap();
        assert_eq!(onset_s(&s, 225.0), 30.0);
        // A change at or after `before_s` is ignored.
        assert_eq!(onset_s(&s, 30.0), 0.0);
    }
}
