//! Passive outlier ejection: after `consecutive_failures` failed calls in a row an endpoint is
//! ejected for `base * 2^(ejections so far)`, capped at `max`. When it comes back, one more failure
//! ejects it again with the next backoff; a success clears the failure streak and, once the
//! endpoint has served `consecutive_failures` successes in a row, its backoff too.

use std::time::Duration;

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
        let backoff = p
            .base
            .saturating_mul(1u32 << self.ejections.min(16))
            .min(p.max);
        self.ejections = self.ejections.saturating_add(1);
        self.failures = 0;
        let until = now + backoff;
        self.ejected_until = Some(until);
        Transition::Ejected { until }
    }

    /// Times this endpoint was ejected since it last recovered.
    pub fn ejections(&self) -> u32 {
        self.ejections
    }
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
