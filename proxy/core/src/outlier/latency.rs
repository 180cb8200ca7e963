//! Latency-outlier ejection, the periodic detector Envoy's outlier-detection tracking issue
//! (envoyproxy/envoy#288, "Periodic latency") asks for, in the shape of Envoy's success-rate and
//! failure-percentage detectors:
//!
//! every `interval` per service, over the calls each endpoint answered in that interval,
//!
//! ```text
//! judged  = endpoints not ejected with at least min_samples calls;  nothing if fewer than min_endpoints
//! m       = median over judged of their mean latency
//! slow    = judged with mean > k x m, worst first
//! eject   = the first (cap - already ejected) of slow,   cap = max(1, floor(n x max_ejected_fraction)) <= n - 1
//! ```
//!
//! with `n` the endpoints the proxy balances over and "already ejected" counting failure
//! ejections too. An ejected endpoint is out for `base * 2^n` capped at `max`, the failure
//! detector's backoff ([`super::Outlier::eject_slow`]); when the ejection ends it gets traffic
//! again (through slow start, when that is on) and is judged afresh once it has `min_samples`
//! calls in an interval.
//!
//! Choices, each a default of [`LatencyEjection`]:
//! - **the mean**, not the p50: it is exact from a count and a sum (two additions per call, no
//!   histogram per interval), and it moves with a slow tail, which is what callers feel: an
//!   endpoint that answers one call in five ten times slower has a mean 2.8x its peers' and the
//!   same p50. The median across endpoints keeps one extreme endpoint from moving the yardstick.
//! - **the calls of one interval**, not the telemetry window: an endpoint back from an ejection is
//!   judged on what it does now, not on the samples that got it ejected (Envoy's detectors also
//!   count per interval).
//! - **k = 3** (three times the median), **min_samples = 20** (the success-rate detector's
//!   `request_volume` is 100 per interval; 20 at a 10 s interval is 2 calls a second, and a mean
//!   of 20 calls is stable enough against a 3x threshold), **min_endpoints = 3** (a median of two
//!   is their average, and neither can be 3x that), **interval = 10 s** (Envoy's `interval`),
//!   **max_ejected_fraction = 0.3** with at least one ejectable (Envoy's `max_ejection_percent`
//!   rule "at least one host regardless", so three endpoints can lose their slow one).
//! - **off by default**: a slower endpoint is not a broken one. Peak-EWMA P2C and the shifting
//!   planners already move load away from it in proportion, keeping its capacity; ejecting it
//!   removes that capacity, which on a merely noisy host (the case load shifting is for) costs
//!   more than it saves. It is for gray failures: an endpoint an order of magnitude slower than
//!   its peers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::EjectionError;

/// The latency detector's settings (`ejection.latency`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyEjection {
    /// Run the detector. Default false (see the module docs).
    pub enabled: bool,
    /// An endpoint whose mean latency over the interval is more than `k` times the median of
    /// its service's endpoints is an outlier. Default 3; > 1.
    pub k: f64,
    /// Calls an endpoint must have answered in the interval to be judged. Default 20; >= 1.
    pub min_samples: u64,
    /// Judged endpoints a service needs before anything is ejected. Default 3; >= 2.
    pub min_endpoints: usize,
    /// How often each service is judged, milliseconds. Default 10000.
    pub interval_ms: u64,
    /// Most of a service's endpoints ejected at once, failure ejections included; at least one
    /// may always be ejected and at least one always stays. Default 0.3; in (0, 1].
    pub max_ejected_fraction: f64,
}

impl Default for LatencyEjection {
    fn default() -> Self {
        Self {
            enabled: false,
            k: 3.0,
            min_samples: 20,
            min_endpoints: 3,
            interval_ms: 10_000,
            max_ejected_fraction: 0.3,
        }
    }
}

impl LatencyEjection {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// Checks the ranges in the field docs (also when disabled, so turning it on cannot fail).
    pub fn validate(&self) -> Result<(), EjectionError> {
        let bad = |field, value, reason| {
            Err(EjectionError {
                field,
                value,
                reason,
            })
        };
        if !(self.k.is_finite() && self.k > 1.0) {
            return bad("latency.k", self.k, "must be finite and > 1");
        }
        if self.min_samples == 0 {
            return bad("latency.min_samples", 0.0, "must be >= 1");
        }
        if self.min_endpoints < 2 {
            return bad(
                "latency.min_endpoints",
                self.min_endpoints as f64,
                "must be >= 2 (a median of one endpoint is itself)",
            );
        }
        if self.interval_ms == 0 {
            return bad("latency.interval_ms", 0.0, "must be > 0");
        }
        if !(self.max_ejected_fraction > 0.0 && self.max_ejected_fraction <= 1.0) {
            return bad(
                "latency.max_ejected_fraction",
                self.max_ejected_fraction,
                "must be in (0, 1]",
            );
        }
        Ok(())
    }

    /// Most endpoints of `n` ejected at once: `max(1, floor(n x fraction))`, at most `n - 1`.
    pub fn cap(&self, n: usize) -> usize {
        if n < 2 {
            return 0;
        }
        ((n as f64 * self.max_ejected_fraction).floor() as usize).clamp(1, n - 1)
    }
}

/// One endpoint's interval as the detector sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencySample {
    /// Calls it answered in the interval (failures included: a timeout is the slowest answer).
    pub count: u64,
    /// Their mean latency.
    pub mean: Duration,
    /// Ejected now, by either detector.
    pub ejected: bool,
}

/// What one round decided, as positions in the slice it was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// To eject now, worst first.
    pub eject: Vec<usize>,
    /// Judged and within `k` of the median: their latency backoff starts over
    /// ([`super::Outlier::judged_normal`]).
    pub normal: Vec<usize>,
}

/// One round of the detector over a service's endpoints (see the module docs).
pub fn latency_outliers(samples: &[LatencySample], p: &LatencyEjection) -> Verdict {
    let judged: Vec<usize> = (0..samples.len())
        .filter(|&i| !samples[i].ejected && samples[i].count >= p.min_samples)
        .collect();
    if judged.len() < p.min_endpoints.max(2) {
        return Verdict::default();
    }
    let mut means: Vec<Duration> = judged.iter().map(|&i| samples[i].mean).collect();
    means.sort_unstable();
    let mid = means.len() / 2;
    let median_s = if means.len() % 2 == 1 {
        means[mid].as_secs_f64()
    } else {
        (means[mid - 1].as_secs_f64() + means[mid].as_secs_f64()) / 2.0
    };
    if median_s <= 0.0 {
        return Verdict::default();
    }
    let limit = p.k * median_s;
    let (mut slow, normal): (Vec<usize>, Vec<usize>) = judged
        .into_iter()
        .partition(|&i| samples[i].mean.as_secs_f64() > limit);
    slow.sort_by(|&a, &b| samples[b].mean.cmp(&samples[a].mean).then(a.cmp(&b)));
    let ejected = samples.iter().filter(|s| s.ejected).count();
    slow.truncate(p.cap(samples.len()).saturating_sub(ejected));
    Verdict {
        eject: slow,
        normal,
    }
}

/// Calls and their summed latency since the detector last read them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    count: u64,
    sum_ns: u64,
}

impl Tally {
    /// Counts one answered call.
    pub fn record(&mut self, latency: Duration) {
        self.count += 1;
        self.sum_ns = self
            .sum_ns
            .saturating_add(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The interval's sample, and a fresh interval.
    pub fn take(&mut self, ejected: bool) -> LatencySample {
        let t = std::mem::take(self);
        LatencySample {
            count: t.count,
            mean: match t.count {
                0 => Duration::ZERO,
                n => Duration::from_nanos(t.sum_ns / n),
            },
            ejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn s(count: u64, mean_ms: u64) -> LatencySample {
        LatencySample {
            count,
            mean: Duration::from_millis(mean_ms),
            ejected: false,
        }
    }

    fn ejected() -> LatencySample {
        LatencySample {
            ejected: true,
            ..s(0, 0)
        }
    }

    fn on() -> LatencyEjection {
        LatencyEjection {
            enabled: true,
            ..Default::default()
        }
    }

    #[test]
    fn ejects_beyond_k_times_the_median() {
        let p = on();
        // Median 10 ms: 31 ms is past 3x, 30 ms is not.
        let seven = [10, 9, 31, 10, 30, 10, 11].map(|ms| s(50, ms));
        let v = latency_outliers(&seven, &p);
        assert_eq!(v.eject, vec![2]);
        assert_eq!(v.normal, vec![0, 1, 3, 4, 5, 6]);
        // Ten times slower, among three.
        assert_eq!(
            latency_outliers(&[s(40, 5), s(40, 50), s(40, 5)], &p).eject,
            vec![1]
        );
        // An even count takes the mean of the two middle values: median 20 ms, limit 60 ms.
        let v = latency_outliers(&[s(40, 10), s(40, 10), s(40, 30), s(40, 61)], &p);
        assert_eq!(v.eject, vec![3]);
    }

    #[test]
    fn needs_min_samples_and_min_endpoints() {
        let p = on();
        // The slow endpoint has too few calls to be judged.
        let v = latency_outliers(&[s(40, 5), s(19, 500), s(40, 5), s(40, 6)], &p);
        assert!(v.eject.is_empty());
        assert_eq!(v.normal, vec![0, 2, 3]);
        // Only two judged endpoints: nothing, not even a verdict of normal.
        assert_eq!(
            latency_outliers(&[s(40, 5), s(40, 500), s(3, 5)], &p),
            Verdict::default()
        );
        // With min_endpoints 2 and k 1.5, two can do: median 27.5, limit 41.25.
        let two = LatencyEjection {
            min_endpoints: 2,
            k: 1.5,
            ..p
        };
        assert_eq!(
            latency_outliers(&[s(40, 5), s(40, 50)], &two).eject,
            vec![1]
        );
        // Ejected endpoints are neither judged nor the yardstick.
        assert!(
            latency_outliers(&[ejected(), s(40, 5), s(40, 50)], &p)
                .eject
                .is_empty()
        );
    }

    #[test]
    fn never_more_than_the_cap_failure_ejections_included() {
        let p = on();
        assert_eq!(
            [1, 2, 3, 4, 6, 7, 10, 20].map(|n| p.cap(n)),
            [0, 1, 1, 1, 1, 2, 3, 6]
        );
        // Two slow of five: the cap of one takes the worst.
        let five = [s(40, 5), s(40, 60), s(40, 5), s(40, 80), s(40, 6)];
        assert_eq!(latency_outliers(&five, &p).eject, vec![3]);
        // Six with one already ejected (a failure ejection): the cap of one is taken.
        let busy = [
            ejected(),
            s(40, 60),
            s(40, 5),
            s(40, 80),
            s(40, 6),
            s(40, 5),
        ];
        let v = latency_outliers(&busy, &p);
        assert!(v.eject.is_empty());
        assert_eq!(v.normal, vec![2, 4, 5]);
        // Ten endpoints, cap 3, one ejected already: two of the four slow ones, worst first.
        let mut ten = vec![s(40, 5); 10];
        ten[1] = s(40, 70);
        ten[2] = s(40, 90);
        ten[3] = s(40, 80);
        ten[4] = s(40, 60);
        ten[9] = ejected();
        assert_eq!(latency_outliers(&ten, &p).eject, vec![2, 3]);
        // A fraction of 1 still leaves one endpoint in.
        let all = LatencyEjection {
            max_ejected_fraction: 1.0,
            ..p
        };
        assert_eq!(all.cap(3), 2);
    }

    #[test]
    fn tally_takes_the_interval_mean() {
        let mut t = Tally::default();
        t.record(10 * MS);
        t.record(20 * MS);
        assert_eq!(t.take(false), s(2, 15));
        assert_eq!(
            t.take(true),
            LatencySample {
                ejected: true,
                ..s(0, 0)
            }
        );
    }

    #[test]
    fn validation_names_field_and_reason() {
        let cases = [
            (
                LatencyEjection { k: 1.0, ..on() },
                "ejection.latency.k = 1: must be finite and > 1",
            ),
            (
                LatencyEjection {
                    min_endpoints: 1,
                    ..on()
                },
                "ejection.latency.min_endpoints = 1",
            ),
            (
                LatencyEjection {
                    max_ejected_fraction: 0.0,
                    ..on()
                },
                "ejection.latency.max_ejected_fraction = 0: must be in (0, 1]",
            ),
            (
                LatencyEjection {
                    interval_ms: 0,
                    ..on()
                },
                "ejection.latency.interval_ms = 0",
            ),
        ];
        for (p, want) in cases {
            let e = p.validate().unwrap_err().to_string();
            assert!(e.starts_with(want), "{e:?} vs {want:?}");
        }
        assert!(on().validate().is_ok());
    }
}
