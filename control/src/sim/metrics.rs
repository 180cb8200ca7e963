//! What a run measures: end-to-end latency per report interval and per control interval, where
//! every request ended up, calls per (service, host), containers over time; and the summary
//! numbers of `summary.json` derived from them.

use std::collections::BTreeMap;

use loadshift_proxy::telemetry::histogram::Histogram;

use crate::report::{Counts, Interval, PolicySummary};

/// Tolerance of the convergence criterion: within 5% of the final p95.
const CONVERGE_TOL: f64 = 0.05;
/// Control intervals with fewer finished requests carry too little signal to judge convergence.
const CONVERGE_MIN_SAMPLES: u64 = 20;

pub(super) struct Recorder {
    pub counts: Counts,
    /// Every request that arrived, warm-up included (for speed figures).
    pub arrivals: u64,
    /// Counted requests that missed their SLA or failed.
    pub violations: u64,
    /// Counted, not blocked requests.
    pub answered: u64,
    pub total: Histogram,
    pub interval: Histogram,
    pub interval_requests: u64,
    /// Per control interval (index = t / control interval), all requests, for convergence.
    pub control: Vec<Histogram>,
    pub control_ns: u64,
    /// Calls routed in the current report interval per service x host (row-major).
    pub calls: Vec<u64>,
    pub n_hosts: usize,
    pub intervals: Vec<Interval>,
    pub plan_pushes: u64,
    /// Integrated over [warm-up, duration].
    pub container_seconds: f64,
    pub sum_latency_ms: f64,
    /// Control intervals that lie wholly inside the run (the drain's partial one is left out).
    pub full_control_intervals: usize,
}

impl Recorder {
    pub fn new(n_svcs: usize, n_hosts: usize, control_ns: u64) -> Self {
        Self {
            counts: Counts::default(),
            arrivals: 0,
            violations: 0,
            answered: 0,
            total: Histogram::default(),
            interval: Histogram::default(),
            interval_requests: 0,
            control: Vec::new(),
            control_ns: control_ns.max(1),
            calls: vec![0; n_svcs * n_hosts],
            n_hosts,
            intervals: Vec::new(),
            plan_pushes: 0,
            container_seconds: 0.0,
            sum_latency_ms: 0.0,
            full_control_intervals: usize::MAX,
        }
    }

    /// A request that got an answer (successful or not) after `latency_ns`.
    pub fn answered(&mut self, now_ns: u64, latency_ns: u64, counted: bool, violated: bool) {
        let us = latency_ns / 1000;
        let k = (now_ns / self.control_ns) as usize;
        if self.control.len() <= k {
            self.control.resize_with(k + 1, Histogram::default);
        }
        self.control[k].record(us);
        // The time series shows the warm-up too; the summary counts only what follows it.
        self.interval.record(us);
        self.interval_requests += 1;
        if counted {
            self.total.record(us);
            self.answered += 1;
            self.sum_latency_ms += latency_ns as f64 / 1e6;
            self.violations += u64::from(violated);
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
        let ms = |q| self.interval.quantile(q) / 1000.0;
        let mut iv = Interval {
            t_s,
            requests: self.interval_requests,
            p50_ms: ms(0.50),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
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
        self.interval.clear();
        self.interval_requests = 0;
        self.calls.fill(0);
    }

    /// Control iterations until the per-iteration p95 stays within 5% of its final value (the
    /// p95 over the last quarter of the run); `None` when it never settles.
    pub fn converge_iterations(&self) -> Option<u32> {
        let n = self.control.len().min(self.full_control_intervals);
        if n == 0 {
            return None;
        }
        let mut tail = Histogram::default();
        for h in &self.control[n - n.div_ceil(4)..n] {
            tail.merge(h);
        }
        let fin = tail.quantile(0.95);
        if fin <= 0.0 {
            return None;
        }
        let ok = |h: &Histogram| {
            h.count() < CONVERGE_MIN_SAMPLES || (h.quantile(0.95) - fin).abs() <= CONVERGE_TOL * fin
        };
        let first_bad_from_end = self.control[..n].iter().rposition(|h| !ok(h));
        match first_bad_from_end {
            None => Some(0),
            Some(i) if i + 1 < n => Some((i + 1) as u32),
            Some(_) => None,
        }
    }

    pub fn summary(&self) -> PolicySummary {
        let ms = |q| self.total.quantile(q) / 1000.0;
        let pct = |a: u64, b: u64| {
            if b == 0 {
                0.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        PolicySummary {
            p50_ms: ms(0.50),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            sla_violation_pct: pct(self.violations, self.answered),
            blocked_pct: pct(self.counts.blocked, self.counts.offered),
            container_seconds: self.container_seconds,
            converge_iterations: self.converge_iterations(),
            plan_pushes: self.plan_pushes,
            requests: self.counts.offered,
        }
    }

    /// Mean counted end-to-end latency, ms.
    pub fn mean_ms(&self) -> f64 {
        if self.answered == 0 {
            0.0
        } else {
            self.sum_latency_ms / self.answered as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec_with(p95s: &[u64]) -> Recorder {
        let mut r = Recorder::new(1, 1, 1_000_000_000);
        for (k, &ms) in p95s.iter().enumerate() {
            for _ in 0..100 {
                r.answered(k as u64 * 1_000_000_000, ms * 1_000_000, true, false);
            }
        }
        r
    }

    #[test]
    fn convergence_counts_iterations_until_stable() {
        assert_eq!(
            rec_with(&[90, 70, 50, 40, 40, 40, 40, 40]).converge_iterations(),
            Some(3)
        );
        assert_eq!(rec_with(&[40, 40, 40, 40]).converge_iterations(), Some(0));
        assert_eq!(rec_with(&[40, 40, 80, 80]).converge_iterations(), Some(2));
        assert_eq!(Recorder::new(1, 1, 1).converge_iterations(), None);
    }
}
