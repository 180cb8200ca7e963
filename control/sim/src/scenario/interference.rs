//! Interference model: how much slower a container runs because of its neighbours.
//!
//! A container's sampled service time is multiplied by
//!
//! ```text
//! factor = 1 + a_cpu * g(u_cpu) + a_membw * g(u_membw) + a_net * g(u_net),   g(u) = u / (1 - min(u, cap))
//! ```
//!
//! where `u_*` in [0, 1] is the host's background utilisation of that resource at the moment the
//! work starts (from the host's interference schedule) and, when `self_load` is on, `u_cpu` also
//! counts the simulated containers' own busy servers over the host's cores. `g` is the M/M/1
//! stretch `rho / (1 - rho)`: nothing at idle, 1 at half load, growing without bound toward
//! saturation (capped at `cap`, default 0.95, so a fully loaded host still makes progress). With the
//! defaults (a_cpu 0.5, a_membw 0.3, a_net 0.1) a host at 80% CPU and 50% memory bandwidth slows
//! work by 1 + 0.5 * 4 + 0.3 * 1 = 3.3x, the range Imbres (seed 002, §2.2) measures for co-located
//! DeathStarBench containers.

use serde::{Deserialize, Serialize};

/// Parameters of the interference factor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterferenceModel {
    /// Weight of CPU interference. Default 0.5.
    #[serde(default = "d_cpu")]
    pub a_cpu: f64,
    /// Weight of memory-bandwidth interference. Default 0.3.
    #[serde(default = "d_membw")]
    pub a_membw: f64,
    /// Weight of network interference. Default 0.1.
    #[serde(default = "d_net")]
    pub a_net: f64,
    /// Utilisation at which `g` stops growing, in (0, 1). Default 0.95.
    #[serde(default = "d_cap")]
    pub cap: f64,
    /// Count the simulated containers' own busy servers in the host's CPU utilisation.
    /// Default false (interference comes from the schedules only).
    #[serde(default)]
    pub self_load: bool,
}

fn d_cpu() -> f64 {
    0.5
}
fn d_membw() -> f64 {
    0.3
}
fn d_net() -> f64 {
    0.1
}
fn d_cap() -> f64 {
    0.95
}

impl Default for InterferenceModel {
    fn default() -> Self {
        Self {
            a_cpu: d_cpu(),
            a_membw: d_membw(),
            a_net: d_net(),
            cap: d_cap(),
            self_load: false,
        }
    }
}

impl InterferenceModel {
    fn g(&self, u: f64) -> f64 {
        let u = u.clamp(0.0, self.cap);
        u / (1.0 - u)
    }

    /// Service-time multiplier for a host at these utilisations (each in [0, 1]).
    pub fn factor(&self, cpu: f64, membw: f64, net: f64) -> f64 {
        1.0 + self.a_cpu * self.g(cpu) + self.a_membw * self.g(membw) + self.a_net * self.g(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_matches_the_documented_example() {
        let m = InterferenceModel::default();
        assert_eq!(m.factor(0.0, 0.0, 0.0), 1.0);
        assert!((m.factor(0.8, 0.5, 0.0) - 3.3).abs() < 1e-9);
        // Capped: 100% utilisation behaves like 95%.
        assert_eq!(m.factor(1.0, 0.0, 0.0), m.factor(0.95, 0.0, 0.0));
        assert!(m.factor(0.6, 0.0, 0.0) < m.factor(0.7, 0.0, 0.0));
    }
}
