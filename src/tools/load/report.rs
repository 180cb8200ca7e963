//! What a load run measured: counts, error classes, and latency quantiles from the intended send
//! time, for the whole run and per interval (so the lab can draw latency over time).
//!
//! Latencies go into the data plane's log-linear histogram (`loadshift_core::telemetry::
//! histogram`, 16 sub-buckets per power of two, so every quantile is within 6.25% of a recorded
//! value); the maximum is kept exactly beside it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use loadshift_core::telemetry::histogram::Histogram;
use serde::Serialize;

use crate::tools::support::pool::FailureKind;

/// Error classes counted in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// TCP connect or handshake failed.
    Connect,
    /// The exchange broke mid-way.
    Io,
    /// No full response within the request timeout.
    Timeout,
    /// A 503 response: the proxy's blocking, or an overloaded app.
    Status503,
    /// Any other 5xx response.
    Status5xx,
    /// Any 4xx response.
    Status4xx,
}

impl From<FailureKind> for ErrorClass {
    fn from(kind: FailureKind) -> Self {
        match kind {
            FailureKind::Connect => Self::Connect,
            FailureKind::Io => Self::Io,
            FailureKind::Timeout => Self::Timeout,
        }
    }
}

impl ErrorClass {
    /// The class of an HTTP status, `None` for success (1xx-3xx).
    pub fn of_status(status: u16) -> Option<Self> {
        match status {
            503 => Some(Self::Status503),
            500..=599 => Some(Self::Status5xx),
            400..=499 => Some(Self::Status4xx),
            _ => None,
        }
    }
}

/// Counts and latencies of the requests intended in one interval.
#[derive(Debug, Clone, Default)]
pub struct Interval {
    /// Requests sent.
    pub sent: u64,
    /// Successful responses.
    pub completed: u64,
    /// Failed requests, any class.
    pub errors: u64,
    /// 503 responses (also counted in `errors`).
    pub blocked: u64,
    /// Successful responses slower than the run's slow threshold.
    pub slow: u64,
    /// Latency of successful responses, from the intended send time, microseconds.
    pub latency: Histogram,
}

/// The result of a load run.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: u64,
    /// Successful (1xx-3xx) responses.
    pub completed: u64,
    /// Requests that found every connection busy at their intended time.
    pub late: u64,
    /// Failures by class.
    pub errors: BTreeMap<ErrorClass, u64>,
    /// Latency of successful responses from the intended send time, microseconds.
    pub latency: Histogram,
    /// Largest latency recorded, microseconds.
    pub max_us: u64,
    /// Length of the schedule.
    pub duration: Duration,
    /// Connections opened.
    pub connections: usize,
    /// Per-interval breakdown, by intended send time.
    pub intervals: Vec<Interval>,
    /// Width of each interval.
    pub interval: Duration,
    /// Successful responses slower than `slow_threshold`.
    pub slow: u64,
    /// Latency above which a successful response counts as slow (an SLA); `None` for none.
    pub slow_threshold: Option<Duration>,
}

impl LoadReport {
    pub(super) fn new(duration: Duration, interval: Duration) -> Self {
        let n = if interval.is_zero() {
            0
        } else {
            (duration.as_secs_f64() / interval.as_secs_f64()).ceil() as usize
        };
        Self {
            duration,
            interval,
            intervals: vec![Interval::default(); n],
            ..Self::default()
        }
    }

    fn slot(&mut self, intended: Duration) -> Option<&mut Interval> {
        if self.interval.is_zero() {
            return None;
        }
        let i = (intended.as_nanos() / self.interval.as_nanos()) as usize;
        self.intervals.get_mut(i)
    }

    pub(super) fn record_late(&mut self) {
        self.late += 1;
    }

    pub(super) fn record_sent(&mut self, intended: Duration) {
        self.sent += 1;
        if let Some(s) = self.slot(intended) {
            s.sent += 1;
        }
    }

    pub(super) fn record_ok(&mut self, intended: Duration, latency: Duration) {
        let us = latency.as_micros() as u64;
        let slow = self.slow_threshold.is_some_and(|t| latency > t);
        self.slow += u64::from(slow);
        self.completed += 1;
        self.latency.record(us);
        self.max_us = self.max_us.max(us);
        if let Some(s) = self.slot(intended) {
            s.completed += 1;
            s.slow += u64::from(slow);
            s.latency.record(us);
        }
    }

    pub(super) fn record_error(&mut self, intended: Duration, class: ErrorClass) {
        *self.errors.entry(class).or_default() += 1;
        if let Some(s) = self.slot(intended) {
            s.errors += 1;
            s.blocked += u64::from(class == ErrorClass::Status503);
        }
    }

    /// Successful responses per second of schedule.
    pub fn achieved_rps(&self) -> f64 {
        self.completed as f64 / self.duration.as_secs_f64().max(1e-9)
    }

    /// Latency at quantile `q`, milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.quantile(q) / 1000.0
    }

    /// The machine-readable summary printed by `loadshift load --json`.
    pub fn summary(&self) -> Summary {
        Summary {
            sent: self.sent,
            completed: self.completed,
            late: self.late,
            errors: self.errors.clone(),
            duration_s: self.duration.as_secs_f64(),
            achieved_rps: self.achieved_rps(),
            connections: self.connections,
            p50_ms: self.quantile_ms(0.5),
            p90_ms: self.quantile_ms(0.9),
            p95_ms: self.quantile_ms(0.95),
            p99_ms: self.quantile_ms(0.99),
            p999_ms: self.quantile_ms(0.999),
            max_ms: self.max_us as f64 / 1000.0,
        }
    }
}

/// JSON form of a report (the schema `loadshift bench` and scripts read).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Requests sent.
    pub sent: u64,
    /// Successful responses.
    pub completed: u64,
    /// Requests that found every connection busy.
    pub late: u64,
    /// Failures by class (`connect`, `io`, `timeout`, `status503`, `status5xx`, `status4xx`).
    pub errors: BTreeMap<ErrorClass, u64>,
    /// Schedule length, seconds.
    pub duration_s: f64,
    /// Successful responses per second.
    pub achieved_rps: f64,
    /// Connections opened.
    pub connections: usize,
    /// Latency quantiles from the intended send time, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Largest latency, ms (exact).
    pub max_ms: f64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sent {}  completed {}  late {}  connections {}",
            self.sent, self.completed, self.late, self.connections
        )?;
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(c, n)| {
                format!(
                    "{}={n}",
                    serde_json::to_string(c)
                        .unwrap_or_default()
                        .trim_matches('"')
                )
            })
            .collect();
        writeln!(
            f,
            "errors: {}",
            if errors.is_empty() {
                "none".into()
            } else {
                errors.join(" ")
            }
        )?;
        writeln!(
            f,
            "achieved {:.1} req/s over {:.2} s",
            self.achieved_rps, self.duration_s
        )?;
        write!(
            f,
            "latency ms (from intended send time): p50 {:.3}  p90 {:.3}  p95 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            self.p50_ms, self.p90_ms, self.p95_ms, self.p99_ms, self.p999_ms, self.max_ms
        )
    }
}
