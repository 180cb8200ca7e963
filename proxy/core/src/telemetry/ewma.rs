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

    /// Clock reading of the last sample (or of the start).
    pub fn last(&self) -> Duration {
        self.last
    }

    /// The decay time constant in nanoseconds.
    pub fn tau_ns(&self) -> f64 {
        self.tau_ns
    }

    /// Load as P2C compares it at `now`: the estimate scaled by the requests already waiting, so
    /// an idle slow endpoint still beats a busy fast one only when it is faster overall. With
    /// nothing in flight the estimate first decays ([`idle_decayed_ns`]).
    pub fn cost(&self, now: Duration, in_flight: u32) -> f64 {
        cost_ns(self.estimate_ns, self.last, now, self.tau_ns, in_flight)
    }
}

/// An idle endpoint's estimate at `now`: decayed toward zero by `exp(-idle / tau)`, `idle` the
/// time since its last sample (tower's Peak-EWMA rule, which decays the estimate by the time
/// since the last update whenever the load is read). An endpoint that gets no traffic, because
/// it is new, or was slow and is avoided, looks cheaper as time passes and is tried again; its
/// next sample sets the estimate afresh. Decaying toward the service's typical latency instead
/// would never take it below an endpoint that serves at that latency, so it would never be
/// tried. With `tau` 10 s a 30 ms estimate takes 34 s of idleness to fall to 1 ms.
pub fn idle_decayed_ns(estimate_ns: f64, last: Duration, now: Duration, tau_ns: f64) -> f64 {
    let idle = now.saturating_sub(last).as_nanos() as f64;
    estimate_ns * (-idle / tau_ns).exp()
}

/// P2C's cost of an endpoint: the estimate (idle-decayed when nothing is in flight: an endpoint
/// with requests outstanding is not idle, and a stalled one must not look cheaper as it stalls)
/// times the requests in flight plus one.
pub fn cost_ns(
    estimate_ns: f64,
    last: Duration,
    now: Duration,
    tau_ns: f64,
    in_flight: u32,
) -> f64 {
    if in_flight == 0 {
        idle_decayed_ns(estimate_ns, last, now, tau_ns)
    } else {
        estimate_ns * (f64::from(in_flight) + 1.0)
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
        assert_eq!(e.cost(Duration::ZERO, 3), 200e6);
    }

    #[test]
    fn an_idle_estimate_decays_toward_zero_a_busy_one_does_not() {
        let tau = Duration::from_secs(10);
        let mut slow = PeakEwma::new(30 * MS, tau, Duration::ZERO);
        slow.observe(Duration::from_secs(1), 100 * MS);
        // One tau after its last sample an idle endpoint costs 1/e of its estimate.
        let later = Duration::from_secs(11);
        let want = 100e6 / std::f64::consts::E;
        assert!(
            (slow.cost(later, 0) - want).abs() < 1.0,
            "{}",
            slow.cost(later, 0)
        );
        // With a request in flight it is not idle: no decay.
        assert_eq!(slow.cost(later, 1), 200e6);
        // An endpoint serving at 1 ms every second stays at 1 ms (0.95 ms half a second after a
        // sample); the idle one, last seen at 30 ms (or never sampled, at the 30 ms default),
        // costs less from tau ln(30 / 0.95) = 34.5 s on (the first probe after that: 35.5 s),
        // and is tried again.
        let fresh = PeakEwma::new(30 * MS, tau, Duration::ZERO);
        let mut busy = PeakEwma::new(MS, tau, Duration::ZERO);
        let mut first_cheaper = None;
        for s in 1..=60u64 {
            let now = Duration::from_secs(s);
            busy.observe(now, MS);
            let probe = now + Duration::from_millis(500);
            if first_cheaper.is_none() && fresh.cost(probe, 0) < busy.cost(probe, 0) {
                first_cheaper = Some(s);
            }
        }
        let s = first_cheaper.expect("the idle endpoint is tried again");
        assert_eq!(s, 35, "first second the idle endpoint is cheaper");
        // The estimate itself is untouched: decay is in what P2C reads.
        assert_eq!(fresh.estimate_ns(), 30e6);
    }
}
