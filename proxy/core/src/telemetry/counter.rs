//! A count over a rotating window of slots, for events that have no latency (blocked requests).

use std::time::Duration;

/// Sans-IO windowed counter: `slots` slots of `slot_width`.
#[derive(Clone, Debug)]
pub struct CountWindow {
    /// Per slot: (slot epoch, count); epoch `u64::MAX` = never used.
    slots: Vec<(u64, u64)>,
    slot_ns: u64,
}

impl CountWindow {
    pub fn new(slots: usize, slot_width: Duration) -> Self {
        Self {
            slots: vec![(u64::MAX, 0); slots.max(1)],
            slot_ns: (slot_width.as_nanos() as u64).max(1),
        }
    }

    /// Adds `n` events at `now`.
    pub fn add(&mut self, now: Duration, n: u64) {
        let epoch = now.as_nanos() as u64 / self.slot_ns;
        let len = self.slots.len() as u64;
        let slot = &mut self.slots[(epoch % len) as usize];
        if slot.0 != epoch {
            *slot = (epoch, 0);
        }
        slot.1 += n;
    }

    /// Events inside the window at `now`.
    pub fn total(&self, now: Duration) -> u64 {
        let cur = now.as_nanos() as u64 / self.slot_ns;
        let len = self.slots.len() as u64;
        self.slots
            .iter()
            .filter(|s| s.0 != u64::MAX && s.0 <= cur && cur - s.0 < len)
            .map(|s| s.1)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_inside_the_window() {
        let s = Duration::from_secs(1);
        let mut w = CountWindow::new(3, s);
        w.add(Duration::ZERO, 2);
        w.add(2 * s, 5);
        assert_eq!(w.total(2 * s), 7);
        assert_eq!(w.total(3 * s), 5);
        assert_eq!(w.total(10 * s), 0);
    }
}
