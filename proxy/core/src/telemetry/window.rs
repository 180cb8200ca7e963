//! Rotating window of latency and outcome counts: `slots` slots of `slot_width` each, the oldest
//! cleared as time moves on, so a snapshot covers the last `slots * slot_width` of traffic.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::histogram::Histogram;

#[derive(Clone, Debug, Default)]
struct Slot {
    /// Which slot-width interval since the epoch this slot holds.
    epoch: u64,
    hist: Histogram,
    errors: u64,
    sum_us: u64,
}

/// Sans-IO rotating window.
#[derive(Clone, Debug)]
pub struct Window {
    slots: Vec<Slot>,
    slot_ns: u64,
}

/// Summary of a window, as reports and `/stats` carry it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowSnapshot {
    /// Completed calls in the window (successes and errors).
    pub count: u64,
    /// Calls that ended in a 5xx, a timeout or a connection failure.
    pub errors: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Length of history the snapshot covers, in seconds.
    pub window_s: f64,
}

impl Window {
    /// A window of `slots` slots of `slot_width` (for example 10 x 1 s).
    pub fn new(slots: usize, slot_width: Duration) -> Self {
        let slots = slots.max(1);
        Self {
            slots: (0..slots)
                .map(|_| Slot {
                    epoch: u64::MAX,
                    ..Slot::default()
                })
                .collect(),
            slot_ns: (slot_width.as_nanos() as u64).max(1),
        }
    }

    fn slot_mut(&mut self, now: Duration) -> &mut Slot {
        let epoch = now.as_nanos() as u64 / self.slot_ns;
        let n = self.slots.len() as u64;
        let slot = &mut self.slots[(epoch % n) as usize];
        if slot.epoch != epoch {
            slot.epoch = epoch;
            slot.hist.clear();
            slot.errors = 0;
            slot.sum_us = 0;
        }
        slot
    }

    /// Records one completed call.
    pub fn record(&mut self, now: Duration, latency: Duration, error: bool) {
        let us = latency.as_micros() as u64;
        let slot = self.slot_mut(now);
        slot.hist.record(us);
        slot.sum_us += us;
        slot.errors += u64::from(error);
    }

    /// Summarises the slots still inside the window at `now`.
    pub fn snapshot(&self, now: Duration) -> WindowSnapshot {
        let mut agg = Aggregate::default();
        agg.add(self, now);
        agg.snapshot()
    }
}

/// Merges several windows (for example every endpoint on one host) into one summary.
#[derive(Clone, Debug, Default)]
pub struct Aggregate {
    hist: Histogram,
    errors: u64,
    sum_us: u64,
    window_ns: u64,
}

impl Aggregate {
    /// Adds the slots of `w` still inside its window at `now`.
    pub fn add(&mut self, w: &Window, now: Duration) {
        let cur = now.as_nanos() as u64 / w.slot_ns;
        let n = w.slots.len() as u64;
        for s in &w.slots {
            if s.epoch != u64::MAX && s.epoch <= cur && cur - s.epoch < n {
                self.hist.merge(&s.hist);
                self.errors += s.errors;
                self.sum_us += s.sum_us;
            }
        }
        self.window_ns = self.window_ns.max(n * w.slot_ns);
    }

    /// The merged summary.
    pub fn snapshot(&self) -> WindowSnapshot {
        let count = self.hist.count();
        let ms = |us: f64| us / 1000.0;
        WindowSnapshot {
            count,
            errors: self.errors,
            mean_ms: if count == 0 {
                0.0
            } else {
                ms(self.sum_us as f64 / count as f64)
            },
            p50_ms: ms(self.hist.quantile(0.50)),
            p95_ms: ms(self.hist.quantile(0.95)),
            p99_ms: ms(self.hist.quantile(0.99)),
            window_s: self.window_ns as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn old_slots_fall_out_of_the_window() {
        let mut w = Window::new(3, S);
        w.record(Duration::ZERO, Duration::from_millis(100), false);
        w.record(S, Duration::from_millis(10), true);
        let snap = w.snapshot(2 * S);
        assert_eq!((snap.count, snap.errors), (2, 1));
        // At t = 3 s the slot of t = 0 is outside the 3-slot window, even before being reused.
        let snap = w.snapshot(3 * S);
        assert_eq!(snap.count, 1);
        assert!((snap.p99_ms - 10.0).abs() < 0.7, "{snap:?}");
        // Reusing the slot clears it.
        w.record(3 * S, Duration::from_millis(1), false);
        assert_eq!(w.snapshot(3 * S).count, 2);
    }

    #[test]
    fn mean_is_exact() {
        let mut w = Window::new(10, S);
        for ms in [1, 2, 3, 4] {
            w.record(Duration::ZERO, Duration::from_millis(ms), false);
        }
        assert_eq!(w.snapshot(Duration::ZERO).mean_ms, 2.5);
    }
}
