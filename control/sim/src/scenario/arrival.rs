//! Arrival processes of a flow: how many requests per second enter, and when.
//!
//! Written as `{process: NAME, ...parameters}`:
//! - `constant` (`rate`): evenly spaced requests (a fixed-rate open-loop generator, as wrk2 does).
//! - `poisson` (`rate`): exponential gaps.
//! - `step` (`steps: [[t_s, rate], ...]`): piecewise-constant rate, Poisson within each step.
//! - `sinusoid` (`a, b, period_s, phase_s`): rate `a + b sin(2 pi (t + phase_s) / period_s)`,
//!   clamped at 0 (diurnal load), Poisson.
//! - `random_level` (`levels, every_s`): a rate drawn uniformly from `levels` every `every_s`
//!   seconds, Poisson within a level. Samani & Stadler (seed 004) use U{5, 10, 15, 20} every 5 s,
//!   the defaults.
//! - `trace` (`file`): a CSV of `t_s,rate` rows (header optional, path relative to the scenario
//!   file) read as a step schedule, Poisson within a row.
//!
//! Time-varying Poisson arrivals are drawn exactly by thinning (Lewis & Shedler): candidates at
//! the peak rate, each kept with probability `rate(t) / peak`.

use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::{Deserialize, Serialize};

use super::schedule::steps_at;

/// How requests of one flow arrive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "process", rename_all = "snake_case", deny_unknown_fields)]
pub enum Arrival {
    Constant {
        /// Requests per second.
        rate: f64,
    },
    Poisson {
        /// Requests per second.
        rate: f64,
    },
    Step {
        /// `[t_s, rate]` points, each rate held until the next point.
        steps: Vec<(f64, f64)>,
    },
    Sinusoid {
        /// Mean rate, requests per second.
        a: f64,
        /// Amplitude, requests per second.
        b: f64,
        /// Period in seconds.
        period_s: f64,
        /// Shift in seconds. Default 0.
        #[serde(default)]
        phase_s: f64,
    },
    RandomLevel {
        /// Rates to draw from uniformly. Default [5, 10, 15, 20].
        #[serde(default = "default_levels")]
        levels: Vec<f64>,
        /// Seconds between draws. Default 5.
        #[serde(default = "default_every")]
        every_s: f64,
    },
    Trace {
        /// CSV file of `t_s,rate` rows, relative to the scenario file.
        file: String,
        /// The rows, filled in when the scenario is loaded.
        #[serde(skip)]
        points: Vec<(f64, f64)>,
    },
}

fn default_levels() -> Vec<f64> {
    vec![5.0, 10.0, 15.0, 20.0]
}

fn default_every() -> f64 {
    5.0
}

impl Arrival {
    /// Largest rate the process reaches (the thinning envelope).
    pub fn peak_rate(&self) -> f64 {
        let max = |p: &[(f64, f64)]| p.iter().map(|x| x.1).fold(0.0, f64::max);
        match self {
            Arrival::Constant { rate } | Arrival::Poisson { rate } => *rate,
            Arrival::Step { steps } => max(steps),
            Arrival::Sinusoid { a, b, .. } => a + b.abs(),
            Arrival::RandomLevel { levels, .. } => levels.iter().copied().fold(0.0, f64::max),
            Arrival::Trace { points, .. } => max(points),
        }
    }

    /// Mean rate over `[0, horizon_s]`, for sizing and documentation (random levels: the mean level).
    pub fn mean_rate(&self, horizon_s: f64) -> f64 {
        match self {
            Arrival::RandomLevel { levels, .. } => {
                levels.iter().sum::<f64>() / levels.len().max(1) as f64
            }
            _ => {
                let n = 1000;
                let mut dummy = ArrivalState::new(self.clone(), 0);
                (0..n)
                    .map(|i| dummy.rate_at(horizon_s * (i as f64 + 0.5) / n as f64))
                    .sum::<f64>()
                    / n as f64
            }
        }
    }

    /// Checks the parameters; the error is the reason, the caller adds the field path.
    pub fn check(&self) -> Result<(), String> {
        let finite_nonneg = |v: f64, what: &str| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{what} = {v} must be finite and >= 0"))
            }
        };
        let points = |p: &[(f64, f64)], what: &str| -> Result<(), String> {
            if p.is_empty() {
                return Err(format!("{what} needs at least one [t_s, rate] point"));
            }
            for &(t, r) in p {
                if !t.is_finite() {
                    return Err(format!("{what}: time {t} must be finite"));
                }
                finite_nonneg(r, "rate")?;
            }
            if p.windows(2).any(|w| w[1].0 < w[0].0) {
                return Err(format!("{what}: times must not decrease"));
            }
            Ok(())
        };
        match self {
            Arrival::Constant { rate } | Arrival::Poisson { rate } => finite_nonneg(*rate, "rate"),
            Arrival::Step { steps } => points(steps, "steps"),
            Arrival::Sinusoid {
                a,
                b,
                period_s,
                phase_s,
            } => {
                finite_nonneg(*a, "a")?;
                if !b.is_finite() || !phase_s.is_finite() {
                    return Err("b and phase_s must be finite".into());
                }
                if !(period_s.is_finite() && *period_s > 0.0) {
                    return Err(format!("period_s = {period_s} must be > 0"));
                }
                Ok(())
            }
            Arrival::RandomLevel { levels, every_s } => {
                if levels.is_empty() {
                    return Err("levels must not be empty".into());
                }
                for &l in levels {
                    finite_nonneg(l, "level")?;
                }
                if !(every_s.is_finite() && *every_s > 0.0) {
                    return Err(format!("every_s = {every_s} must be > 0"));
                }
                Ok(())
            }
            Arrival::Trace { file, points: p } => points(p, &format!("trace {file:?}")),
        }
    }
}

/// Parses a `t_s,rate` CSV trace. A first line that does not parse as numbers is a header.
pub fn parse_trace(text: &str) -> Result<Vec<(f64, f64)>, (usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split(',').map(str::trim);
        let parsed = match (f.next(), f.next(), f.next()) {
            (Some(t), Some(r), None) => t.parse::<f64>().ok().zip(r.parse::<f64>().ok()),
            _ => None,
        };
        match parsed {
            Some(p) => out.push(p),
            None if n == 0 => continue,
            None => return Err((n + 1, format!("expected `t_s,rate`, got {line:?}"))),
        }
    }
    Ok(out)
}

/// Draws the arrival times of one flow. Owns its RNG so every policy of a comparison sees the
/// same arrivals for a seed.
#[derive(Clone, Debug)]
pub struct ArrivalState {
    spec: Arrival,
    rng: SmallRng,
    peak: f64,
    /// Random-level process: index of the current period and its rate.
    level: Option<(u64, f64)>,
}

impl ArrivalState {
    pub fn new(spec: Arrival, seed: u64) -> Self {
        let peak = spec.peak_rate();
        Self {
            spec,
            rng: SmallRng::seed_from_u64(seed),
            peak,
            level: None,
        }
    }

    /// Rate at `t` seconds.
    pub fn rate_at(&mut self, t: f64) -> f64 {
        match &self.spec {
            Arrival::Constant { rate } | Arrival::Poisson { rate } => *rate,
            Arrival::Step { steps } => steps_at(steps, t),
            Arrival::Sinusoid {
                a,
                b,
                period_s,
                phase_s,
            } => (a + b * (std::f64::consts::TAU * (t + phase_s) / period_s).sin()).max(0.0),
            Arrival::RandomLevel { levels, every_s } => {
                let k = (t / every_s).floor().max(0.0) as u64;
                match self.level {
                    Some((cur, r)) if cur == k => r,
                    _ => {
                        let r = levels[self.rng.random_range(0..levels.len())];
                        self.level = Some((k, r));
                        r
                    }
                }
            }
            Arrival::Trace { points, .. } => steps_at(points, t),
        }
    }

    /// Time of the next arrival strictly after `t` seconds, or `None` when there is none before
    /// `end` seconds.
    pub fn next_after(&mut self, t: f64, end: f64) -> Option<f64> {
        if self.peak <= 0.0 {
            return None;
        }
        if let Arrival::Constant { rate } = self.spec {
            // On the grid k / rate, so accumulated rounding never adds or drops a request.
            let next = ((t * rate).round() + 1.0) / rate;
            return (next < end).then_some(next);
        }
        let mut cur = t;
        loop {
            let u: f64 = self.rng.random();
            cur += -(1.0 - u).ln() / self.peak;
            if cur >= end {
                return None;
            }
            let r = self.rate_at(cur);
            if r >= self.peak || self.rng.random::<f64>() * self.peak < r {
                return Some(cur);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(spec: Arrival, end: f64) -> usize {
        let mut s = ArrivalState::new(spec, 3);
        let mut t = 0.0;
        let mut n = 0;
        while let Some(next) = s.next_after(t, end) {
            t = next;
            n += 1;
        }
        n
    }

    #[test]
    fn rates_come_out_right() {
        assert_eq!(count(Arrival::Constant { rate: 10.0 }, 10.0), 99);
        let n = count(Arrival::Poisson { rate: 100.0 }, 100.0) as f64;
        assert!((n - 10_000.0).abs() < 400.0, "{n}");
        let n = count(
            Arrival::Step {
                steps: vec![(0.0, 10.0), (50.0, 100.0)],
            },
            100.0,
        ) as f64;
        assert!((n - 5500.0).abs() < 300.0, "{n}");
        let sin = Arrival::Sinusoid {
            a: 50.0,
            b: 40.0,
            period_s: 20.0,
            phase_s: 0.0,
        };
        let n = count(sin, 200.0) as f64;
        assert!((n - 10_000.0).abs() < 400.0, "{n}");
    }

    #[test]
    fn random_levels_hold_for_a_period() {
        let mut s = ArrivalState::new(
            Arrival::RandomLevel {
                levels: default_levels(),
                every_s: 5.0,
            },
            9,
        );
        let mut seen = std::collections::BTreeSet::new();
        for k in 0..40 {
            let t = k as f64 * 5.0;
            let r = s.rate_at(t + 0.1);
            assert_eq!(s.rate_at(t + 4.9), r);
            seen.insert(r as u32);
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![5, 10, 15, 20]);
    }

    #[test]
    fn traces_parse_with_or_without_header() {
        assert_eq!(
            parse_trace("t_s,rate\n0,5\n10, 7.5\n").unwrap(),
            vec![(0.0, 5.0), (10.0, 7.5)]
        );
        assert_eq!(parse_trace("0,5\nx,y\n").unwrap_err().0, 2);
    }
}
