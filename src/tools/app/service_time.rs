//! Service-time distributions of the emulated app, parsed from `exp:MEAN`, `lognormal:MEAN:SIGMA`
//! or `const:MEAN` (milliseconds), the same three families the scenario format offers.
//!
//! - exponential: inverse transform, `-mean * ln(U)`;
//! - lognormal: `exp(mu + sigma * Z)` with `mu = ln(mean) - sigma^2 / 2` so the mean is `mean`,
//!   `Z` standard normal by Box-Muller; sigma defaults to 1.0 when omitted;
//! - constant: always `mean`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;

/// A service-time distribution with its mean in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ServiceTime {
    /// Exponential with this mean (ms).
    Exponential { mean_ms: f64 },
    /// Lognormal with this mean (ms) and log-space standard deviation.
    Lognormal { mean_ms: f64, sigma: f64 },
    /// Always this many ms.
    Constant { mean_ms: f64 },
}

impl ServiceTime {
    /// One sample.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let ms = match *self {
            Self::Exponential { mean_ms } => -mean_ms * open_unit(rng).ln(),
            Self::Lognormal { mean_ms, sigma } => {
                let mu = mean_ms.ln() - sigma * sigma / 2.0;
                (mu + sigma * standard_normal(rng)).exp()
            }
            Self::Constant { mean_ms } => mean_ms,
        };
        Duration::from_secs_f64((ms / 1000.0).clamp(0.0, 3600.0))
    }
}

/// Uniform on (0, 1]: never zero, so its logarithm is finite.
fn open_unit(rng: &mut impl Rng) -> f64 {
    1.0 - rng.random::<f64>()
}

fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1 = open_unit(rng);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl FromStr for ServiceTime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |i: usize, what: &str| -> Result<f64, String> {
            let v: f64 = parts
                .get(i)
                .ok_or_else(|| format!("{s:?}: missing {what}"))?
                .parse()
                .map_err(|_| format!("{s:?}: {what} is not a number"))?;
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(format!("{s:?}: {what} must be a finite number >= 0"))
            }
        };
        let st = match (parts[0], parts.len()) {
            ("exp" | "exponential", 2) => Self::Exponential {
                mean_ms: num(1, "mean")?,
            },
            ("lognormal", 2) => Self::Lognormal {
                mean_ms: num(1, "mean")?,
                sigma: 1.0,
            },
            ("lognormal", 3) => Self::Lognormal {
                mean_ms: num(1, "mean")?,
                sigma: num(2, "sigma")?,
            },
            ("const" | "constant", 2) => Self::Constant {
                mean_ms: num(1, "mean")?,
            },
            _ => {
                return Err(format!(
                    "{s:?}: expected exp:MEAN_MS, lognormal:MEAN_MS[:SIGMA] or const:MEAN_MS"
                ));
            }
        };
        if matches!(st, Self::Lognormal { mean_ms, .. } if mean_ms <= 0.0) {
            return Err(format!("{s:?}: a lognormal mean must be > 0"));
        }
        Ok(st)
    }
}

impl fmt::Display for ServiceTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exponential { mean_ms } => write!(f, "exp:{mean_ms}"),
            Self::Lognormal { mean_ms, sigma } => write!(f, "lognormal:{mean_ms}:{sigma}"),
            Self::Constant { mean_ms } => write!(f, "const:{mean_ms}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn mean_of(st: ServiceTime) -> f64 {
        let mut rng = SmallRng::seed_from_u64(1);
        let n = 200_000;
        (0..n)
            .map(|_| st.sample(&mut rng).as_secs_f64() * 1000.0)
            .sum::<f64>()
            / n as f64
    }

    #[test]
    fn sample_means_match_the_configured_mean() {
        for st in ["exp:5", "lognormal:5:0.5", "lognormal:5", "const:5"] {
            let st: ServiceTime = st.parse().expect("valid");
            let m = mean_of(st);
            assert!((m - 5.0).abs() < 0.1, "{st}: {m}");
        }
    }

    #[test]
    fn parse_round_trips_and_rejects_garbage() {
        for s in ["exp:2.5", "lognormal:3:0.25", "const:0"] {
            let st: ServiceTime = s.parse().expect("valid");
            assert_eq!(st.to_string().parse::<ServiceTime>(), Ok(st));
        }
        for s in [
            "exp",
            "exp:-1",
            "uniform:3",
            "const:x",
            "lognormal:0:1",
            "exp:1:2",
        ] {
            assert!(s.parse::<ServiceTime>().is_err(), "{s}");
        }
    }
}
