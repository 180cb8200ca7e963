//! What the event loop orders: the kinds of event and the time units (simulated nanoseconds).

/// What happens at one instant. Ties in time are broken by insertion order, never by the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Event {
    /// The next request of flow `.0` arrives at its ingress.
    Arrival(u32),
    /// Call `.0` reaches its container (after the network delay).
    CallArrive(u32),
    /// Call `.0`'s own work at its container is done.
    Done(u32),
    /// The control schedule has tasks due.
    Control,
    /// The latency-outlier detector's round in every proxy (`ejection.latency`).
    Outliers,
}

pub(crate) fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

pub(crate) fn ns(s: f64) -> u64 {
    (s * 1e9).round().max(0.0) as u64
}
