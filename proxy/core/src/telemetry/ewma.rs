//! Peak-EWMA round-trip estimate, the shape linkerd2-proxy and tower's `PeakEwma` use: a sample
//! slower than the estimate replaces it at once (peak), a faster one is blended in with a weight
//! that decays with the time since the last update (EWMA with time constant `tau`).

use std::time::Duration;

/// Sans-IO Peak-EWMA estimator. `now` is any monotonic clock reading (time since an epoch).
#[derive(Clone, Debug)]
pub struct PeakEwma {
    /// Current estimate in nanoseconds.
    estimate_ns: f64,
    /// Clock reading of the last update.
    last: Duration,
    /// Decay time constant in nanoseconds.
    tau_ns: f64,
}

impl PeakEwma {
    /// `default_rtt` seeds the estimate before the first sample (linkerd: 30 ms); `tau` is the
    /// decay constant (linkerd: 10 s).
    pub fn new(default_rtt: Duration, tau: Duration, now: Duration) -> Self {
        Self {
            estimate_ns: default_rtt.as_nanos() as f64,
            last: now,
            tau_ns: tau.as_nanos().max(1) as f64,
        }
    }

    /// Folds one round-trip sample in.
    pub fn observe(&mut self, now: Duration, rtt: Duration) {
        let rtt_ns = rtt.as_nanos() as f64;
        let elapsed = now.saturating_sub(self.last).as_nanos() as f64;
        self.last = self.last.max(now);
        if rtt_ns > self.estimate_ns {
            self.estimate_ns = rtt_ns;
        } else {
            let w = (-elapsed / self.tau_ns).exp();
            self.estimate_ns = self.estimate_ns * w + rtt_ns * (1.0 - w);
        }
    }

    /// The estimate in nanoseconds.
    pub fn estimate_ns(&self) -> f64 {
        self.estimate_ns
    }

    /// Load as P2C compares it: estimate scaled by the requests already waiting, so an idle slow
    /// endpoint still beats a busy fast one only when it is faster overall.
    pub fn cost(&self, in_flight: u32) -> f64 {
        self.estimate_ns * (f64::from(in_flight) + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn jumps_to_peak_then_decays() {
        let mut e = PeakEwma::new(10 * MS, Duration::from_secs(10), Duration::ZERO);
        e.observe(Duration::from_secs(1), 100 * MS);
        assert_eq!(e.estimate_ns(), 100e6);
        // 10 s later (one tau) a 10 ms sample pulls the estimate 1 - 1/e of the way down.
        e.observe(Duration::from_secs(11), 10 * MS);
        let want = 100e6 / std::f64::consts::E + 10e6 * (1.0 - 1.0 / std::f64::consts::E);
        assert!((e.estimate_ns() - want).abs() < 1.0, "{}", e.estimate_ns());
    }

    #[test]
    fn samples_at_same_instant_do_not_decay() {
        let mut e = PeakEwma::new(50 * MS, Duration::from_secs(10), Duration::ZERO);
        e.observe(Duration::ZERO, MS);
        assert_eq!(e.estimate_ns(), 50e6);
        assert_eq!(e.cost(3), 200e6);
    }
}
