//! The best static host split of a scenario (an oracle): the lowest p95 any fixed per-host share
//! reaches with the interference in place, the yardstick for a shifting planner such as Imbres
//! Alg. 1 (seed 002 §4.1.1).
//!
//! The noisy hosts are the ones whose interference factor at the peak of their schedules
//! (`1 + a_cpu g(cpu) + a_membw g(membw) + a_net g(net)`, see
//! [`InterferenceModel`](crate::scenario::InterferenceModel)) is the highest; a scenario where every
//! host peaks at the same factor has no noisy host and no oracle. For a share `s`, [`HostSplit`]
//! gives every noisy host `s` of every service's calls and the other hosts the rest in proportion
//! to their containers, as `host_weights` (the plan field `imbres-shift` fills too, so the two
//! differ only in the share values). The split knows the future: it holds from the scenario's onset
//! ([`onset_s`](super::onset_s), the first planner tick at or after it; even shares before) or,
//! optionally, from the start.
//!
//! [`sweep`] runs the real simulator per share and pick on every seed: a grid from 0 to the even
//! share (default step 0.02), then a finer grid (default 0.005) around the best grid point, and the
//! named baseline planners on the same seeds so ratios pair per seed.

mod sweep;
#[cfg(test)]
mod tests;

pub use sweep::{Baseline, Point, Sweep, SweepOptions, best_label, sweep};

use std::{collections::BTreeMap, time::Duration};

use loadshift_core::plan::ServicePlan;
use serde::{Deserialize, Serialize};

use super::SimError;
use crate::scenario::Scenario;
use loadshift_policy::{PlanUpdate, Planner, ServiceState, Snapshot};

/// Why an oracle sweep cannot run.
#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    #[error("no noisy host: every host peaks at the same interference factor {0:.3}")]
    NoNoisyHost(f64),
    #[error("scenario has no hosts")]
    NoHosts,
    #[error("{name} = {value}: must be in (0, 0.5]")]
    BadStep { name: &'static str, value: f64 },
    #[error("no seeds to run")]
    NoSeeds,
    #[error("no pick to run (weighted, weighted-p2c)")]
    NoPicks,
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// How the data plane picks inside the planned weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pick {
    /// Draw by weight alone (`imbres-shift-pure`'s pick).
    Weighted,
    /// Two candidates drawn by weight, the lower Peak-EWMA wins (`imbres-shift`'s pick).
    WeightedP2c,
}

impl Pick {
    pub fn name(self) -> &'static str {
        match self {
            Pick::Weighted => "weighted",
            Pick::WeightedP2c => "weighted-p2c",
        }
    }
}

/// Peak interference factor of every host, in scenario order.
pub fn peak_factors(s: &Scenario) -> Vec<(String, f64)> {
    s.hosts
        .iter()
        .map(|h| {
            let i = &h.interference;
            let f = s
                .interference
                .factor(i.cpu.range().1, i.membw.range().1, i.net.range().1);
            (h.name.clone(), f)
        })
        .collect()
}

/// Hosts whose peak interference factor is the highest, when some other host's is lower.
pub fn noisy_hosts(s: &Scenario) -> Result<Vec<String>, OracleError> {
    let f = peak_factors(s);
    let hi = f.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
    let lo = f.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
    if f.is_empty() {
        return Err(OracleError::NoHosts);
    }
    // Factors are computed from the same formula; equal schedules give bit-equal factors, and
    // the tolerance only absorbs rounding between different spellings of one value.
    let tol = 1e-9 * hi.abs().max(1.0);
    if hi - lo <= tol {
        return Err(OracleError::NoNoisyHost(hi));
    }
    Ok(f.into_iter()
        .filter(|x| hi - x.1 <= tol)
        .map(|x| x.0)
        .collect())
}

/// The largest share one noisy host holds of any service under even weights (its containers over
/// the service's): the top of the sweep.
pub fn even_share(s: &Scenario, noisy: &[String]) -> f64 {
    s.services
        .iter()
        .flat_map(|svc| {
            let total: u32 = svc.replicas.values().sum();
            noisy.iter().filter_map(move |h| {
                let n = svc.replicas.get(h).copied().unwrap_or(0);
                (total > 0 && n > 0).then(|| f64::from(n) / f64::from(total))
            })
        })
        .fold(0.0, f64::max)
}

/// A static planner: each noisy host gets `share` of every service, the other hosts the rest by
/// their containers; even shares before `from`.
#[derive(Clone, Debug)]
pub struct HostSplit {
    noisy: Vec<String>,
    share: f64,
    from: Duration,
    pick: Pick,
}

impl HostSplit {
    pub fn new(noisy: Vec<String>, share: f64, from: Duration, pick: Pick) -> Self {
        Self {
            noisy,
            share,
            from,
            pick,
        }
    }

    /// Host weights of one service, summing to 1; `None` without containers. Even (by containers)
    /// when `split` is false, when no noisy host runs the service, or when only noisy hosts do.
    /// With `k` noisy hosts present the share is capped at `1 / k`.
    pub fn host_weights(&self, svc: &ServiceState, split: bool) -> Option<BTreeMap<String, f64>> {
        let mut per_host: BTreeMap<&str, u32> = BTreeMap::new();
        for c in &svc.containers {
            *per_host.entry(c.endpoint.host.as_str()).or_default() += 1;
        }
        let total: u32 = per_host.values().sum();
        if total == 0 {
            return None;
        }
        let is_noisy = |h: &str| self.noisy.iter().any(|n| n == h);
        let noisy_here = per_host.keys().filter(|h| is_noisy(h)).count();
        let quiet: u32 = per_host
            .iter()
            .filter(|(h, _)| !is_noisy(h))
            .map(|(_, &n)| n)
            .sum();
        let even = !split || noisy_here == 0 || quiet == 0;
        let share = self.share.clamp(0.0, 1.0 / noisy_here.max(1) as f64);
        let rest = 1.0 - share * noisy_here as f64;
        Some(
            per_host
                .into_iter()
                .map(|(h, n)| {
                    let w = if even {
                        f64::from(n) / f64::from(total)
                    } else if is_noisy(h) {
                        share
                    } else {
                        rest * f64::from(n) / f64::from(quiet)
                    };
                    (h.to_string(), w)
                })
                .collect(),
        )
    }
}

impl Planner for HostSplit {
    fn name(&self) -> &str {
        "oracle-host-split"
    }

    fn plan(&mut self, snap: &Snapshot) -> PlanUpdate {
        let split = snap.now >= self.from;
        let services = snap
            .services
            .iter()
            .filter_map(|(name, svc)| {
                let host_weights = self.host_weights(svc, split)?;
                let plan = ServicePlan {
                    host_weights,
                    weighted_p2c: self.pick == Pick::WeightedP2c,
                    ..Default::default()
                };
                Some((name.clone(), plan))
            })
            .collect();
        PlanUpdate {
            services,
            per_proxy: BTreeMap::new(),
        }
    }
}
