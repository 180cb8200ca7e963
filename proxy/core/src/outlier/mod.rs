//! Passive outlier ejection: after `consecutive_failures` failed calls in a row an endpoint is
//! ejected for `base * 2^(ejections so far)`, capped at `max`. When it comes back, one more failure
//! ejects it again with the next backoff; a success clears the failure streak and, once the
//! endpoint has served `consecutive_failures` successes in a row, its backoff too.
//!
//! [`latency`]: the periodic latency-outlier detector, which ejects through the same state with
//! the same backoff shape (its own count of ejections, see [`Outlier::eject_slow`]).

pub mod latency;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use latency::{LatencyEjection, LatencySample, Tally, latency_outliers};

/// The `ejection` section of the proxy's config and of a scenario: failure ejection and the
/// latency-outlier detector.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ejection {
    /// Consecutive failures (connect error, timeout, 5xx) that eject. Default 5.
    pub consecutive_failures: u32,
    /// First ejection. Default 1000 ms; doubles per repeated ejection.
    pub base_ms: u64,
    /// Longest ejection. Default 60000 ms.
    pub max_ms: u64,
    /// Latency-outlier ejection ([`latency`]). Default off.
    pub latency: LatencyEjection,
}

impl Default for Ejection {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ms: 1000,
            max_ms: 60_000,
            latency: LatencyEjection::default(),
        }
    }
}

/// An ejection setting out of range; the message names the field and the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("ejection.{field} = {value}: {reason}")]
pub struct EjectionError {
    /// Path below `ejection`, for example `latency.k`.
    pub field: &'static str,
    pub value: f64,
    pub reason: &'static str,
}

impl Ejection {
    /// The failure detector's parameters.
    pub fn params(&self) -> OutlierParams {
        OutlierParams {
            consecutive_failures: self.consecutive_failures,
            base: Duration::from_millis(self.base_ms),
            max: Duration::from_millis(self.max_ms),
        }
    }

    /// The latency detector's parameters, when it is enabled.
    pub fn latency(&self) -> Option<LatencyEjection> {
        self.latency.enabled.then_some(self.latency)
    }

    /// Checks the ranges in the field docs.
    pub fn validate(&self) -> Result<(), EjectionError> {
        let bad = |field, value, reason| {
            Err(EjectionError {
                field,
                value,
                reason,
            })
        };
        if self.consecutive_failures == 0 {
            return bad("consecutive_failures", 0.0, "must be > 0");
        }
        if self.base_ms > self.max_ms {
            return bad("base_ms", self.base_ms as f64, "must be <= ejection.max_ms");
        }
        self.latency.validate()
    }
}

/// Ejection parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutlierParams {
    /// Failures in a row that eject (default 5, as Envoy's consecutive_5xx).
    pub consecutive_failures: u32,
    /// First ejection length (default 1 s).
    pub base: Duration,
    /// Longest ejection (default 60 s).
    pub max: Duration,
}

impl Default for OutlierParams {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// Per-endpoint ejection state, sans-IO.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outlier {
    failures: u32,
    successes: u32,
    ejections: u32,
    /// Latency ejections since the endpoint was last judged normal.
    slow_ejections: u32,
    ejected_until: Option<Duration>,
}

/// What one observation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    None,
    Ejected { until: Duration },
}

impl Outlier {
    /// True while ejected at `now`.
    pub fn is_ejected(&self, now: Duration) -> bool {
        self.ejected_until.is_some_and(|t| now < t)
    }

    /// Folds in one call's outcome.
    pub fn observe(&mut self, p: &OutlierParams, now: Duration, success: bool) -> Transition {
        if success {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.successes >= p.consecutive_failures {
                self.ejections = 0;
            }
            return Transition::None;
        }
        self.successes = 0;
        self.failures = self.failures.saturating_add(1);
        let returning = self.ejections > 0 && self.ejected_until.is_some_and(|t| now >= t);
        if self.is_ejected(now) || (self.failures < p.consecutive_failures && !returning) {
            return Transition::None;
        }
        let until = now + backoff(p, self.ejections);
        self.ejections = self.ejections.saturating_add(1);
        self.failures = 0;
        self.ejected_until = Some(until);
        Transition::Ejected { until }
    }

    /// Ejects the endpoint as a latency outlier ([`latency_outliers`]) for `base * 2^n`, capped
    /// at `max`, `n` its latency ejections since it was last judged normal. The count is its own:
    /// a slow endpoint answers successfully, and the successes that clear the failure backoff
    /// must not clear this one. Nothing happens while it is already ejected.
    pub fn eject_slow(&mut self, p: &OutlierParams, now: Duration) -> Transition {
        if self.is_ejected(now) {
            return Transition::None;
        }
        let until = now + backoff(p, self.slow_ejections);
        self.slow_ejections = self.slow_ejections.saturating_add(1);
        self.ejected_until = Some(until);
        Transition::Ejected { until }
    }

    /// The latency detector judged the endpoint (enough samples) and found it normal: its
    /// latency backoff starts over.
    pub fn judged_normal(&mut self) {
        self.slow_ejections = 0;
    }

    /// When the last ejection ends (or ended): where a slow start ramp after it begins.
    pub fn ejected_until(&self) -> Option<Duration> {
        self.ejected_until
    }

    /// Times this endpoint was ejected since it last recovered.
    pub fn ejections(&self) -> u32 {
        self.ejections
    }

    /// Latency ejections since it was last judged normal.
    pub fn slow_ejections(&self) -> u32 {
        self.slow_ejections
    }
}

/// `base * 2^n`, capped at `max`.
fn backoff(p: &OutlierParams, n: u32) -> Duration {
    p.base.saturating_mul(1u32 << n.min(16)).min(p.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn ejects_backs_off_and_recovers() {
        let p = OutlierParams {
            consecutive_failures: 3,
            ..Default::default()
        };
        let mut o = Outlier::default();
        assert_eq!(o.observe(&p, S, false), Transition::None);
        assert_eq!(o.observe(&p, S, false), Transition::None);
        assert_eq!(
            o.observe(&p, S, false),
            Transition::Ejected { until: 2 * S }
        );
        assert!(o.is_ejected(S) && !o.is_ejected(2 * S));
        // Back after 1 s; one failure re-ejects for 2 s.
        assert_eq!(
            o.observe(&p, 2 * S, false),
            Transition::Ejected { until: 4 * S }
        );
        // Recovered: successes clear the backoff.
        for _ in 0..3 {
            o.observe(&p, 5 * S, true);
        }
        assert_eq!(o.ejections(), 0);
        assert_eq!(o.observe(&p, 6 * S, false), Transition::None);
    }

    #[test]
    fn latency_ejections_back_off_on_their_own_count() {
        let p = OutlierParams::default();
        let mut o = Outlier::default();
        assert_eq!(o.eject_slow(&p, S), Transition::Ejected { until: 2 * S });
        // Already ejected: nothing more.
        assert_eq!(o.eject_slow(&p, S), Transition::None);
        assert_eq!(o.ejected_until(), Some(2 * S));
        // Successes (a slow endpoint still answers) do not clear the latency backoff.
        for _ in 0..10 {
            o.observe(&p, 3 * S, true);
        }
        assert_eq!(
            o.eject_slow(&p, 3 * S),
            Transition::Ejected { until: 5 * S }
        );
        assert_eq!(
            o.eject_slow(&p, 5 * S),
            Transition::Ejected { until: 9 * S }
        );
        // Judged normal: the next ejection starts at `base` again.
        o.judged_normal();
        assert_eq!(
            o.eject_slow(&p, 9 * S),
            Transition::Ejected { until: 10 * S }
        );
        // Capped at `max`.
        let mut o = Outlier::default();
        let mut now = Duration::ZERO;
        for _ in 0..10 {
            if let Transition::Ejected { until } = o.eject_slow(&p, now) {
                assert!(until - now <= p.max);
                now = until;
            }
        }
        assert_eq!(o.slow_ejections(), 10);
    }

    #[test]
    fn ejection_config_validates_and_converts() {
        let e = Ejection::default();
        assert!(e.validate().is_ok());
        assert_eq!(e.params(), OutlierParams::default());
        assert_eq!(e.latency(), None);
        // The lab writes a scenario's section into its proxies' configs: it must read back.
        let on = Ejection {
            latency: LatencyEjection {
                enabled: true,
                k: 4.0,
                ..Default::default()
            },
            ..e
        };
        let text = serde_json::to_string(&on).unwrap();
        assert_eq!(serde_json::from_str::<Ejection>(&text).unwrap(), on);
        let partial: Ejection = serde_json::from_str(r#"{"latency": {"enabled": true}}"#).unwrap();
        assert_eq!(partial.latency().map(|l| l.k), Some(3.0));
        assert_eq!(partial.consecutive_failures, 5);
        let bad = Ejection {
            base_ms: 5000,
            max_ms: 1000,
            ..e
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .starts_with("ejection.base_ms = 5000")
        );
    }

    #[test]
    fn a_success_breaks_the_streak() {
        let p = OutlierParams {
            consecutive_failures: 2,
            ..Default::default()
        };
        let mut o = Outlier::default();
        o.observe(&p, S, false);
        o.observe(&p, S, true);
        assert_eq!(o.observe(&p, S, false), Transition::None);
    }
}
