//! Slow start: an endpoint that joins a service after the proxy built it (a scale-out, a
//! discovery change) or comes back from an ejection gets only part of its share at first, its
//! weight scaled by a factor that ramps from `min_weight` to 1 over `window`.
//!
//! The shape is Envoy's slow start mode (`slow_start_config`: `slow_start_window`, `aggression`,
//! `min_weight_percent`; Envoy's docs, "Slow start mode"):
//!
//! ```text
//! factor = max(min_weight, (t / window)^(1 / aggression))     t = time since it joined or returned
//! ```
//!
//! with `aggression` 1 a straight line, above 1 a fast start that flattens, below 1 a slow start
//! that steepens. Envoy takes `max(t, 1 s)`; here `t` counts from 0, so the first requests get
//! exactly `min_weight`. Envoy applies it to round robin and least request; the balancer here
//! applies it in every mode (see [`super::Balancer::pick`] for how each mode reads the factor).
//!
//! Endpoints present when a proxy (or a service) starts are never ramped: nothing else is there
//! to take their traffic, and ramping them all alike changes no share.
//!
//! Defaults: off (`window_ms: 0`), as Envoy and Istio (`warmupDurationSecs` unset); linkerd has
//! none. A ramp is a trade: for the window the service holds less capacity than its replica count
//! says, which an autoscaler reading utilisation may answer with more replicas, and the right
//! window is the app's own warm-up (JIT, caches, connection pools). Users opt in with a window
//! fitted to their app; 30 s (`window_ms: 30000`) is a good first value for a JVM service.
//! `min_weight` 0.1 and `aggression` 1.0 are Envoy's defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Slow start settings (the proxy's `slow_start` section, a scenario's `slow_start`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlowStart {
    /// Length of the ramp in milliseconds; 0 turns slow start off. Default 0 (off); 30000 is a
    /// good first value when enabling it.
    pub window_ms: u64,
    /// The factor's floor, in (0, 1]: a new endpoint gets at least this fraction of its share
    /// from its first request on. Default 0.1 (Envoy's `min_weight_percent` 10 %).
    pub min_weight: f64,
    /// Ramp curvature, > 0: 1 linear, 2 a square-root curve (faster start). Default 1.0 (Envoy's).
    pub aggression: f64,
}

impl Default for SlowStart {
    fn default() -> Self {
        Self {
            window_ms: 0,
            min_weight: 0.1,
            aggression: 1.0,
        }
    }
}

/// A slow start setting out of range; the message names the field and the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("slow_start.{field} = {value}: {reason}")]
pub struct SlowStartError {
    pub field: &'static str,
    pub value: f64,
    pub reason: &'static str,
}

impl SlowStart {
    /// Slow start with a window and Envoy's other defaults.
    pub fn with_window(window: Duration) -> Self {
        Self {
            window_ms: window.as_millis() as u64,
            ..Self::default()
        }
    }

    /// True when a window is set.
    pub fn is_on(&self) -> bool {
        self.window_ms > 0
    }

    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// Checks the ranges in the field docs.
    pub fn validate(&self) -> Result<(), SlowStartError> {
        let bad = |field, value, reason| {
            Err(SlowStartError {
                field,
                value,
                reason,
            })
        };
        if !(self.min_weight > 0.0 && self.min_weight <= 1.0) {
            return bad("min_weight", self.min_weight, "must be in (0, 1]");
        }
        if !(self.aggression.is_finite() && self.aggression > 0.0) {
            return bad("aggression", self.aggression, "must be finite and > 0");
        }
        // A day: longer is a typo for seconds in a field named in milliseconds, or no ramp at all.
        if self.window_ms > 86_400_000 {
            return bad(
                "window_ms",
                self.window_ms as f64,
                "must be at most 86400000 (one day)",
            );
        }
        Ok(())
    }

    /// The weight factor at `now` of an endpoint warming up since `since` (when it joined, or
    /// when its last ejection ended); `None`, or a ramp already over, is 1.
    pub fn factor(&self, now: Duration, since: Option<Duration>) -> f64 {
        let Some(since) = since else { return 1.0 };
        let window = self.window();
        let t = now.saturating_sub(since);
        if window.is_zero() || t >= window {
            return 1.0;
        }
        let x = t.as_secs_f64() / window.as_secs_f64();
        let ramp = if self.aggression == 1.0 {
            x
        } else {
            x.powf(1.0 / self.aggression)
        };
        ramp.max(self.min_weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn ramp_values_linear_and_aggressive() {
        let linear = SlowStart::with_window(30 * S);
        let since = Some(100 * S);
        assert!(close(linear.factor(100 * S, since), 0.1));
        assert!(close(linear.factor(115 * S, since), 0.5));
        assert!(close(linear.factor(130 * S, since), 1.0));
        assert!(close(linear.factor(200 * S, since), 1.0));
        // Below the floor early on: 3 s of 30 is 0.1, 1.5 s would be 0.05.
        assert!(close(
            linear.factor(100 * S + S * 3 / 2, since),
            linear.min_weight
        ));
        let fast = SlowStart {
            aggression: 2.0,
            ..linear
        };
        assert!(close(fast.factor(100 * S, since), 0.1));
        assert!(close(fast.factor(115 * S, since), 0.5f64.sqrt()));
        assert!(close(fast.factor(130 * S, since), 1.0));
    }

    #[test]
    fn off_or_not_warming_is_one() {
        let off = SlowStart::default();
        assert!(!off.is_on());
        assert_eq!(off.factor(S, Some(S)), 1.0);
        assert_eq!(SlowStart::with_window(S).factor(S, None), 1.0);
        // A clock reading before `since` (the end of an ejection still running) is the floor.
        assert!(close(
            SlowStart::with_window(10 * S).factor(S, Some(5 * S)),
            0.1
        ));
    }

    #[test]
    fn validation_names_the_field() {
        let e = SlowStart {
            min_weight: 0.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "slow_start.min_weight = 0: must be in (0, 1]"
        );
        let e = SlowStart {
            aggression: -1.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            e.to_string().starts_with("slow_start.aggression = -1"),
            "{e}"
        );
        assert!(SlowStart::with_window(30 * S).validate().is_ok());
    }
}
