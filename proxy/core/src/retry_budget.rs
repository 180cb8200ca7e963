//! Retry budget in the shape of linkerd's / tower's: retries may add at most `ratio` of the
//! requests seen over the last `window`, plus `min_per_sec` so low-traffic services can still
//! retry. Sans-IO; counters in a ring of one-second slots.

use std::time::Duration;

/// Retry budget parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetParams {
    /// Extra load retries may add (default 0.2, linkerd's).
    pub ratio: f64,
    /// Retries always allowed per second (default 10, linkerd's).
    pub min_per_sec: u32,
    /// Window in whole seconds (default 10 s).
    pub window_secs: u32,
}

impl Default for BudgetParams {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_sec: 10,
            window_secs: 10,
        }
    }
}

/// Sans-IO retry budget.
#[derive(Clone, Debug)]
pub struct RetryBudget {
    p: BudgetParams,
    /// Per slot: (second, requests, retries).
    slots: Vec<(u64, u64, u64)>,
}

impl RetryBudget {
    pub fn new(p: BudgetParams) -> Self {
        let n = p.window_secs.max(1) as usize;
        Self {
            p,
            slots: vec![(u64::MAX, 0, 0); n],
        }
    }

    fn slot(&mut self, now: Duration) -> &mut (u64, u64, u64) {
        let sec = now.as_secs();
        let n = self.slots.len() as u64;
        let s = &mut self.slots[(sec % n) as usize];
        if s.0 != sec {
            *s = (sec, 0, 0);
        }
        s
    }

    fn totals(&self, now: Duration) -> (u64, u64) {
        let sec = now.as_secs();
        let n = self.slots.len() as u64;
        self.slots
            .iter()
            .filter(|s| s.0 != u64::MAX && s.0 <= sec && sec - s.0 < n)
            .fold((0, 0), |(r, t), s| (r + s.1, t + s.2))
    }

    /// Counts one original request.
    pub fn deposit(&mut self, now: Duration) {
        self.slot(now).1 += 1;
    }

    /// Takes one retry from the budget if there is one.
    pub fn try_withdraw(&mut self, now: Duration) -> bool {
        let (requests, retries) = self.totals(now);
        let allowed = self.p.ratio * requests as f64
            + f64::from(self.p.min_per_sec) * self.slots.len() as f64;
        if (retries as f64) < allowed {
            self.slot(now).2 += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_and_floor_bound_retries() {
        let mut b = RetryBudget::new(BudgetParams {
            ratio: 0.1,
            min_per_sec: 1,
            window_secs: 10,
        });
        let t = Duration::from_secs(100);
        for _ in 0..100 {
            b.deposit(t);
        }
        // 0.1 * 100 + 1 * 10 = 20 retries.
        let granted = (0..50).filter(|_| b.try_withdraw(t)).count();
        assert_eq!(granted, 20);
        // Eleven seconds later the window has emptied; only the floor is left.
        let later = t + Duration::from_secs(11);
        let granted = (0..50).filter(|_| b.try_withdraw(later)).count();
        assert_eq!(granted, 10);
    }
}
