//! Open-loop arrival schedule: the intended send time of every request, computed from a rate
//! function of time alone, never from when earlier responses came back (the wrk2 / Nighthawk
//! discipline that avoids coordinated omission).
//!
//! With rate `r(t)` the gap after an arrival at `t` is `1 / r(t)` (uniform spacing) or an
//! exponential draw with mean `1 / r(t)` (Poisson arrivals). A rate of zero or less idles in
//! steps of [`IDLE_STEP`] until the rate turns positive again.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// How far the schedule advances while the rate is zero: short enough to react to a step in the
/// rate function within 10 ms.
pub const IDLE_STEP: Duration = Duration::from_millis(10);

/// Requests per second as a function of the time since the run started.
#[derive(Clone)]
pub struct Rate(Arc<dyn Fn(Duration) -> f64 + Send + Sync>);

impl Rate {
    /// The same rate for the whole run.
    pub fn constant(per_second: f64) -> Self {
        Self(Arc::new(move |_| per_second))
    }

    /// Any rate function of the elapsed time (steps, sinusoids, traces).
    pub fn from_fn(f: impl Fn(Duration) -> f64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// The rate at `t`.
    pub fn at(&self, t: Duration) -> f64 {
        (self.0)(t)
    }
}

impl std::fmt::Debug for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rate(r(0)={})", self.at(Duration::ZERO))
    }
}

/// Spacing of arrivals around the rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Exactly `1 / r(t)` apart.
    Uniform,
    /// Exponential gaps with mean `1 / r(t)` (seeded).
    Poisson,
}

/// Iterator over intended send times, as offsets from the start of the run, ending before `end`.
#[derive(Debug)]
pub struct Schedule {
    rate: Rate,
    arrivals: Arrivals,
    rng: SmallRng,
    next: Duration,
    end: Duration,
}

impl Schedule {
    /// A schedule over `[0, end)`; `seed` only matters for Poisson arrivals.
    pub fn new(rate: Rate, arrivals: Arrivals, seed: u64, end: Duration) -> Self {
        Self {
            rate,
            arrivals,
            rng: SmallRng::seed_from_u64(seed),
            next: Duration::ZERO,
            end,
        }
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // Bounded: each idle step moves `next` forward by IDLE_STEP until it passes `end`.
        while self.next < self.end {
            let r = self.rate.at(self.next);
            if !(r > 0.0 && r.is_finite()) {
                self.next += IDLE_STEP;
                continue;
            }
            let at = self.next;
            let gap = match self.arrivals {
                Arrivals::Uniform => 1.0 / r,
                Arrivals::Poisson => {
                    // 1 - U lies in (0, 1], so the logarithm is finite.
                    let u: f64 = 1.0 - self.rng.random::<f64>();
                    -u.ln() / r
                }
            };
            self.next += Duration::from_secs_f64(gap);
            return Some(at);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_uniform_rate_gives_exact_count_and_spacing() {
        let times: Vec<_> = Schedule::new(
            Rate::constant(1000.0),
            Arrivals::Uniform,
            0,
            Duration::from_secs(2),
        )
        .collect();
        assert_eq!(times.len(), 2000);
        assert_eq!(times[0], Duration::ZERO);
        let gap = times[1] - times[0];
        assert!((gap.as_secs_f64() - 0.001).abs() < 1e-9);
    }

    #[test]
    fn poisson_count_is_close_to_rate_times_duration() {
        let n = Schedule::new(
            Rate::constant(5000.0),
            Arrivals::Poisson,
            7,
            Duration::from_secs(4),
        )
        .count();
        // Poisson(20000) has a standard deviation of ~141; 5 sigma.
        assert!((n as i64 - 20_000).abs() < 710, "{n}");
    }

    #[test]
    fn step_rate_follows_the_function_and_idles_at_zero() {
        let rate = Rate::from_fn(|t| {
            if t < Duration::from_secs(1) {
                0.0
            } else {
                100.0
            }
        });
        let times: Vec<_> =
            Schedule::new(rate, Arrivals::Uniform, 0, Duration::from_secs(3)).collect();
        assert!(times[0] >= Duration::from_secs(1));
        assert!(times[0] < Duration::from_secs(1) + IDLE_STEP);
        assert!((199..=201).contains(&times.len()), "{}", times.len());
    }

    #[test]
    fn poisson_is_deterministic_for_a_seed() {
        let a: Vec<_> = Schedule::new(
            Rate::constant(100.0),
            Arrivals::Poisson,
            3,
            Duration::from_secs(1),
        )
        .collect();
        let b: Vec<_> = Schedule::new(
            Rate::constant(100.0),
            Arrivals::Poisson,
            3,
            Duration::from_secs(1),
        )
        .collect();
        assert_eq!(a, b);
    }
}
