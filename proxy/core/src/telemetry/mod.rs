//! Inline telemetry: Peak-EWMA per endpoint, rotating latency windows, host pressure, the
//! container's own resource use, and a server's latency by its requests in flight (Prequal's
//! server-side estimate).
//!
//! Everything here is sans-IO: callers pass the clock reading (`Duration` since an epoch of their
//! choosing), so the proxy, the control plane and the simulator share the code.

pub mod counter;
pub mod ewma;
pub mod histogram;
pub mod pressure;
pub mod rif_latency;
pub mod usage;
pub mod window;

use std::time::Duration;

pub use ewma::PeakEwma;
pub use rif_latency::RifLatency;
pub use window::{Aggregate, Window, WindowSnapshot};

/// Shape of every telemetry window and estimator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TelemetryParams {
    /// Number of window slots (default 10).
    pub slots: usize,
    /// Width of one slot (default 1 s): windows cover `slots * slot_width`.
    pub slot_width: Duration,
    /// Peak-EWMA decay constant (default 10 s, as linkerd).
    pub ewma_tau: Duration,
    /// Peak-EWMA estimate before the first sample (default 30 ms, as linkerd).
    pub default_rtt: Duration,
}

impl Default for TelemetryParams {
    fn default() -> Self {
        Self {
            slots: 10,
            slot_width: Duration::from_secs(1),
            ewma_tau: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
        }
    }
}

/// What a proxy knows about one endpoint's calls.
#[derive(Clone, Debug)]
pub struct EndpointTelemetry {
    pub ewma: PeakEwma,
    pub window: Window,
}

impl EndpointTelemetry {
    pub fn new(p: &TelemetryParams, now: Duration) -> Self {
        Self {
            ewma: PeakEwma::new(p.default_rtt, p.ewma_tau, now),
            window: Window::new(p.slots, p.slot_width),
        }
    }

    /// Records one finished call. Failed calls count in the window; only calls that got a response
    /// feed the RTT estimate, except failures slower than the estimate, which raise it (a timing-out
    /// endpoint must look slow, not unknown).
    pub fn record(&mut self, now: Duration, latency: Duration, error: bool) {
        self.window.record(now, latency, error);
        if !error || latency.as_nanos() as f64 > self.ewma.estimate_ns() {
            self.ewma.observe(now, latency);
        }
    }
}
