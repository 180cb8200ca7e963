//! Service-time distributions of a container's own work (before interference).
//!
//! `exponential` (memoryless, the M/M/c case), `lognormal` (heavy right tail; `sigma` is the
//! standard deviation of the underlying normal, default 0.5, and `mu = ln(mean) - sigma^2 / 2` so
//! the distribution's mean is `mean_ms`), and `constant`.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Shape of the service-time distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dist {
    Exponential,
    Lognormal,
    Constant,
}

/// A service-time distribution with its mean.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTime {
    pub dist: Dist,
    /// Mean in milliseconds, > 0.
    pub mean_ms: f64,
    /// Lognormal only: sigma of the underlying normal. Default 0.5.
    #[serde(default = "default_sigma")]
    pub sigma: f64,
}

fn default_sigma() -> f64 {
    0.5
}

/// Standard normal draws by Box-Muller, both values of each pair used (half the `ln`, `sqrt` and
/// `cos` calls of drawing one at a time; these dominate lognormal sampling).
#[derive(Clone, Debug, Default)]
pub struct Normals {
    spare: Option<f64>,
}

impl Normals {
    pub fn next<R: Rng + ?Sized>(&mut self, rng: &mut R) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // 1 - u keeps the logarithm's argument in (0, 1].
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let (sin, cos) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * sin);
        r * cos
    }
}

impl ServiceTime {
    /// Draws one service time in nanoseconds.
    pub fn sample_ns<R: Rng + ?Sized>(&self, rng: &mut R, normals: &mut Normals) -> f64 {
        let mean_ns = self.mean_ms * 1e6;
        match self.dist {
            Dist::Constant => mean_ns,
            Dist::Exponential => -(1.0 - rng.random::<f64>()).ln() * mean_ns,
            Dist::Lognormal => {
                let mu = mean_ns.ln() - self.sigma * self.sigma / 2.0;
                (mu + self.sigma * normals.next(rng)).exp()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::SmallRng};

    #[test]
    fn means_match() {
        let mut rng = SmallRng::seed_from_u64(5);
        let mut normals = Normals::default();
        for dist in [Dist::Exponential, Dist::Lognormal, Dist::Constant] {
            let st = ServiceTime {
                dist,
                mean_ms: 4.0,
                sigma: 0.8,
            };
            let n = 200_000;
            let mean = (0..n)
                .map(|_| st.sample_ns(&mut rng, &mut normals))
                .sum::<f64>()
                / n as f64
                / 1e6;
            assert!((mean - 4.0).abs() < 0.08, "{dist:?}: {mean}");
        }
    }
}
