//! Jittered exponential backoff for reconnects ("equal jitter": the delay doubles from `min` up to
//! `max`, and each wait is drawn uniformly from the upper half of the current delay, so a fleet of
//! proxies that lost the control plane together does not return in lockstep).

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::SmallRng};

/// Sans-IO backoff state; the caller sleeps.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    rng: SmallRng,
}

impl Backoff {
    /// `min` is the first delay, `max` the cap; `seed` makes the jitter reproducible in tests.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        let min = min.max(Duration::from_millis(1));
        let max = max.max(min);
        Self {
            min,
            max,
            current: min,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// The next wait, then doubles the base delay up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = base / 2;
        let jitter_ns = self.rng.random_range(0..=half.as_nanos() as u64);
        half + Duration::from_nanos(jitter_ns)
    }

    /// Back to `min` after a healthy session.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_in_the_upper_half() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        let mut b = Backoff::new(min, max, 7);
        let mut base = min;
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(
                d >= base / 2 && d <= base,
                "{d:?} outside [{:?}, {base:?}]",
                base / 2
            );
            base = (base * 2).min(max);
        }
        b.reset();
        assert!(b.next_delay() <= min);
    }

    #[test]
    fn two_seeds_spread_the_fleet() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(10));
        let a: Vec<_> = {
            let mut b = Backoff::new(min, max, 1);
            (0..5).map(|_| b.next_delay()).collect()
        };
        let c: Vec<_> = {
            let mut b = Backoff::new(min, max, 2);
            (0..5).map(|_| b.next_delay()).collect()
        };
        assert_ne!(a, c);
    }
}
