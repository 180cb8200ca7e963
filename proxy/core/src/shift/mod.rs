//! Imbalance-aware load shifting: Imbres Algorithm 1 (Luo et al., "Embracing Imbalance", ASPLOS '25,
//! §4.1.1), sans-IO. The control plane's `imbres-shift` planners and the proxy's in-path local mode
//! run this same code.
//!
//! Per service, over the hosts `j` that run its containers:
//!
//! ```text
//! l_j    = mean latency of the service's containers on host j          (Alg. 1 line 5)
//! l_mean = (sum_j l_j) / N                                              (line 6)
//! F_j    = -1 if l_j > l_mean else 1                                    (line 7)
//! dl_j   = |l_mean - l_j| / l_mean                                      (line 8)
//! D_j   <- D_j (1 + eta F_j dl_j)                                       (line 9)
//! D_j   <- D_j / sum_j D_j                                              (line 10)
//! ```
//!
//! with `D_j` initialised to `S_j / sum S` (`S_j` = containers on host j; "load balance") and every
//! container on a host getting the same share `D_j / S_j`. Paper values ([`ShiftParams::paper`]):
//! `eta = 0.2`, one step every 5 s; the paper reports convergence in about 6 iterations.
//!
//! **Default `eta` departs from the paper: 0.5.** Measured in the simulator on
//! `scenarios/imbalance.yaml`, seeds 1-5, iterations counted from the interference onset
//! (`docs/results/imbalance-sim/README.md`): with `eta = 0.2` the p95 of `imbres-shift` needs
//! 11.4 +- 1.7 iterations to settle within 5% of its final value and the noisy host's share
//! reaches its floor after ~20; with 0.5, 5.4 +- 0.5 iterations and a p95 1% lower, with 1.0,
//! 3.8 +- 0.4. The paper's 6 iterations came with latency gaps of 3x between hosts; here the gap
//! is ~2x, so `dl_j` and with it each step are smaller. 0.5 rather than 1.0 because the step's
//! loop gain is `eta` times the latency's elasticity to load, which grows with utilisation; 0.5
//! showed no oscillation of the shares (within-run spread of the noisy host's share <= 0.005 over
//! the second half) with 25% more load or with milder interference. The paper's pure variant
//! (`imbres-shift-pure`) keeps 0.2.
//!
//! The paper's algorithm has no guard rails; a product needs them, and each is a parameter:
//! - **floor**: a host never drops below `floor_fraction * S_j / sum S` (default 0.1), so it keeps
//!   receiving the probe traffic that tells us when it recovers. Enforced after renormalisation by
//!   water-filling (pinned hosts at their floor, the rest scaled proportionally), so shares still
//!   sum to 1.
//! - **step cap**: the multiplier `1 + eta F_j dl_j` is clamped to `[1 - max_step, 1 + max_step]`
//!   (default 0.5). Without it one host far slower than the rest (`dl_j > 1 / eta`) would get a
//!   negative share. At 0.5 a host at its proportional share can reach the default floor (a tenth
//!   of it) in `log2(10) = 3.3` steps, within the paper's 6 iterations, while one bad window can
//!   at most halve a host's share.
//! - **hold**: a host with fewer than `min_samples` latency samples (default 20), or a non-finite
//!   latency, takes no step and keeps its share; it is also left out of `l_mean`. With fewer than two
//!   measured hosts there is nothing to compare and no step is taken.
//! - **re-probe**: a host held for `reprobe_after` consecutive steps (default 6, i.e. 30 s) while
//!   the service has traffic elsewhere moves halfway back to its proportional share. A host pushed
//!   to its floor on a low-traffic service may get too few samples to ever be measured again; this
//!   gives it the traffic to show whether it recovered. 0 disables it.
//! - **reset**: when the membership (hosts and their container counts) changes, shares return to
//!   `S_j / sum S`, as the paper's initialisation.
//! - **recovery** (default `recovery = 2`; the paper's variant 0): line 9 gives a share back as
//!   slowly as it took it: a host at a tenth of its proportional share that becomes the fast one
//!   grows by `1 + eta dl` per step, about 11 steps from 0.067 back to 0.3 of three hosts in
//!   `moving-interference` (interference moving from `h2` to `h3` at 150 s). A host faster than
//!   the mean for [`RECOVERY_STREAK`] steps in a row (one fast window can be a host that only looks
//!   fast because it carries little load) and still under its proportional share moves
//!   `min(1, recovery dl_j)` of the way back to it, the others scaled to make room. Measured on
//!   `moving-interference`, 5 seeds: `h2`'s mean share over the ten services is back within 10 %
//!   of a third 4 steps after the move (20 s, of which the 10 s window's lag is 2), every single
//!   service within 5-7; with gain 1, 6-7 for the mean and 8-11 for the slowest service; with
//!   line 9 alone about 11 for the mean. The run's p95 drops from 0.975x to 0.925x `p2c-ewma`;
//!   `imbalance`, `flash-crowd` and `equal` move by less than 0.3 %, `skew` improves, `hotel`
//!   goes from 0.936x to 0.942x (3 seeds each). The caller-side shifters of `imbres-shift` do
//!   not use it: their anchor across a costly link is not the proportional share.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;

/// Steps in a row a host must measure faster than the mean before recovery moves it: one fast
/// window can be a host that only looks fast because it carries little load.
pub const RECOVERY_STREAK: u32 = 2;

/// Parameters of Alg. 1 and its guard rails.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShiftParams {
    /// Learning rate `eta` (default 0.5; paper: 0.2; see the module docs for the measurement
    /// behind the difference).
    pub eta: f64,
    /// Tuning interval in milliseconds (paper: 5000).
    pub interval_ms: u64,
    /// A host's share never drops below this fraction of its proportional share `S_j / sum S`
    /// (default 0.1). In [0, 1).
    pub floor_fraction: f64,
    /// Cap on the per-step relative change of a host's share before renormalisation (default 0.5).
    /// In (0, 1).
    pub max_step: f64,
    /// A host with fewer latency samples than this in the window holds its share (default 20).
    pub min_samples: u64,
    /// Steps a host may be held before it is re-probed (default 6); 0 never re-probes.
    pub reprobe_after: u32,
    /// A planner publishes new shares only when some host's share moved at least this far from
    /// the shares it last published (absolute, in [0, 0.5)); smaller moves are noise on a
    /// balanced service, and each published change is a plan pushed to every caller. Default
    /// 0.05; the paper's variant 0 (every step published).
    pub deadband: f64,
    /// Recovery gain (>= 0): a host faster than the mean but below its proportional share
    /// `S_j / sum S` moves `min(1, recovery * dl_j)` of the way back to it in one step, when
    /// that is more than Alg. 1's multiplicative step (see the module docs). Default 2; the
    /// paper's variant 0 (Alg. 1's step only).
    pub recovery: f64,
}

impl Default for ShiftParams {
    fn default() -> Self {
        Self {
            eta: 0.5,
            deadband: 0.05,
            recovery: 2.0,
            ..Self::paper()
        }
    }
}

/// A parameter out of range; the message names the field and the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShiftError {
    #[error("shift.{field} = {value}: {reason}")]
    Param {
        field: &'static str,
        value: f64,
        reason: &'static str,
    },
}

impl ShiftParams {
    /// The paper's Alg. 1 (`eta = 0.2`, 5 s) with the same guard rails as the default.
    pub fn paper() -> Self {
        Self {
            eta: 0.2,
            interval_ms: 5000,
            floor_fraction: 0.1,
            max_step: 0.5,
            min_samples: 20,
            reprobe_after: 6,
            deadband: 0.0,
            recovery: 0.0,
        }
    }

    /// The tuning interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), ShiftError> {
        let bad = |field, value, reason| {
            Err(ShiftError::Param {
                field,
                value,
                reason,
            })
        };
        if !(self.eta.is_finite() && self.eta > 0.0) {
            return bad("eta", self.eta, "must be finite and > 0");
        }
        if self.interval_ms == 0 {
            return bad("interval_ms", 0.0, "must be > 0");
        }
        if !(0.0..1.0).contains(&self.floor_fraction) {
            return bad("floor_fraction", self.floor_fraction, "must be in [0, 1)");
        }
        if !(self.max_step > 0.0 && self.max_step < 1.0) {
            return bad("max_step", self.max_step, "must be in (0, 1)");
        }
        if !(0.0..0.5).contains(&self.deadband) {
            return bad("deadband", self.deadband, "must be in [0, 0.5)");
        }
        if !(self.recovery.is_finite() && self.recovery >= 0.0) {
            return bad("recovery", self.recovery, "must be finite and >= 0");
        }
        Ok(())
    }
}

/// What one host reported over the last interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostSample {
    /// `l_j`: mean container latency on the host, milliseconds.
    pub latency_ms: f64,
    /// Latency samples behind `latency_ms`.
    pub samples: u64,
    /// `S_j`: the service's containers on the host; a host with 0 is not a member.
    pub containers: u32,
}

/// What a call to [`Shifter::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// Membership changed: shares went back to `S_j / sum S`.
    Reset,
    /// One Alg. 1 step was applied (and possibly a re-probe).
    Stepped,
    /// No Alg. 1 step, but a long-held host was re-probed.
    Reprobed,
    /// No step: fewer than two hosts had enough samples (or the mean latency was 0).
    Held,
}

/// Alg. 1 state for one service.
#[derive(Clone, Debug, PartialEq)]
pub struct Shifter {
    params: ShiftParams,
    /// `D_j` per host; sums to 1 when non-empty.
    shares: BTreeMap<String, f64>,
    /// `S_j` per member host.
    containers: BTreeMap<String, u32>,
    steps: u64,
    /// Consecutive steps each host has been held.
    held: BTreeMap<String, u32>,
    /// Consecutive steps each host has measured faster than the mean (recovery's evidence).
    fast: BTreeMap<String, u32>,
}

impl Shifter {
    /// A shifter with no members yet; the first `step` sets them. Call `ShiftParams::validate`
    /// first: out-of-range parameters are clamped into range here rather than refused.
    pub fn new(params: ShiftParams) -> Self {
        let params = ShiftParams {
            floor_fraction: params.floor_fraction.clamp(0.0, 0.99),
            max_step: params.max_step.clamp(1e-6, 0.99),
            ..params
        };
        Self {
            params,
            shares: BTreeMap::new(),
            containers: BTreeMap::new(),
            steps: 0,
            held: BTreeMap::new(),
            fast: BTreeMap::new(),
        }
    }

    /// The parameters in force.
    pub fn params(&self) -> &ShiftParams {
        &self.params
    }

    /// `D_j` per host, summing to 1 (empty before the first step).
    pub fn shares(&self) -> &BTreeMap<String, f64> {
        &self.shares
    }

    /// Alg. 1 steps taken since the last reset.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Share of one container on `host`: `D_j / S_j`.
    pub fn container_share(&self, host: &str) -> Option<f64> {
        let s = *self.containers.get(host)?;
        Some(self.shares.get(host)? / f64::from(s))
    }

    /// Per-endpoint weights (by `ip:port`): each host's share split equally over the endpoints of
    /// `eps` on that host. Endpoints on hosts the shifter does not know get nothing.
    pub fn endpoint_weights(&self, eps: &[Endpoint]) -> BTreeMap<String, f64> {
        let mut per_host: BTreeMap<&str, u32> = BTreeMap::new();
        for e in eps {
            *per_host.entry(e.host.as_str()).or_default() += 1;
        }
        eps.iter()
            .filter_map(|e| {
                let d = self.shares.get(&e.host)?;
                // The host is in `per_host` because `e` itself was counted there.
                let n = per_host.get(e.host.as_str()).copied().unwrap_or(1);
                Some((e.key().to_string(), d / f64::from(n)))
            })
            .collect()
    }

    /// Returns to `S_j / sum S` for the given membership.
    pub fn reset(&mut self, containers: BTreeMap<String, u32>) {
        let total: u32 = containers.values().sum();
        self.shares = containers
            .iter()
            .map(|(h, &s)| (h.clone(), f64::from(s) / f64::from(total.max(1))))
            .collect();
        self.containers = containers;
        self.steps = 0;
        self.held.clear();
        self.fast.clear();
    }

    /// Takes one Alg. 1 step from the hosts' latencies over the last interval.
    pub fn step(&mut self, hosts: &BTreeMap<String, HostSample>) -> StepOutcome {
        let membership: BTreeMap<String, u32> = hosts
            .iter()
            .filter(|(_, h)| h.containers > 0)
            .map(|(name, h)| (name.clone(), h.containers))
            .collect();
        if membership != self.containers {
            self.reset(membership);
            return StepOutcome::Reset;
        }
        let p = self.params;
        let active: Vec<(&str, f64)> = hosts
            .iter()
            .filter(|(_, h)| {
                h.containers > 0
                    && h.samples >= p.min_samples
                    && h.latency_ms.is_finite()
                    && h.latency_ms >= 0.0
            })
            .map(|(name, h)| (name.as_str(), h.latency_ms))
            .collect();
        let stepped = self.gradient_step(&active);
        let reprobed = self.reprobe(&active);
        if stepped || reprobed {
            self.enforce_floor();
        }
        match (stepped, reprobed) {
            (true, _) => {
                self.steps += 1;
                StepOutcome::Stepped
            }
            (false, true) => StepOutcome::Reprobed,
            (false, false) => StepOutcome::Held,
        }
    }

    /// Alg. 1 lines 6-10 over the measured hosts; false when there is nothing to compare.
    fn gradient_step(&mut self, active: &[(&str, f64)]) -> bool {
        let p = self.params;
        if active.len() < 2 {
            return false;
        }
        let l_mean = active.iter().map(|&(_, l)| l).sum::<f64>() / active.len() as f64;
        if !(l_mean.is_finite() && l_mean > 0.0) {
            return false;
        }
        let total: u32 = self.containers.values().sum();
        let mut old_mass = 0.0;
        let mut new_vals = Vec::with_capacity(active.len());
        // Hosts that recover this step, with the share they recover to.
        let mut recovering: Vec<(&str, f64)> = Vec::new();
        for &(host, l) in active {
            let d = self.shares.get(host).copied().unwrap_or(0.0);
            let f = if l > l_mean { -1.0 } else { 1.0 };
            let dl = (l_mean - l).abs() / l_mean;
            let factor = (1.0 + p.eta * f * dl).clamp(1.0 - p.max_step, 1.0 + p.max_step);
            let streak = self.fast.entry(host.to_string()).or_default();
            *streak = if f > 0.0 { streak.saturating_add(1) } else { 0 };
            // Recovery: a host faster than the mean for RECOVERY_STREAK steps in a row but under
            // its proportional share closes `min(1, recovery * dl)` of the gap.
            if *streak >= RECOVERY_STREAK && p.recovery > 0.0 {
                let containers = self.containers.get(host).copied().unwrap_or(0);
                let prop = f64::from(containers) / f64::from(total.max(1));
                if d < prop {
                    recovering.push((host, d + (p.recovery * dl).min(1.0) * (prop - d)));
                }
            }
            old_mass += d;
            new_vals.push((host, d * factor));
        }
        let new_mass: f64 = new_vals.iter().map(|&(_, v)| v).sum();
        if !(new_mass.is_finite() && new_mass > 0.0) {
            return false;
        }
        // Line 10 renormalises; held hosts keep their exact share, so the measured hosts share
        // the mass they had before the step.
        for (host, v) in new_vals {
            if let Some(d) = self.shares.get_mut(host) {
                *d = v * old_mass / new_mass;
            }
        }
        // Then each recovering host gets at least its target, the others scaled to make room,
        // when line 9 gave it less.
        let lifted: Vec<(&str, f64)> = recovering
            .into_iter()
            .filter(|&(h, target)| self.shares.get(h).is_some_and(|&v| v < target))
            .collect();
        let lifted_mass: f64 = lifted.iter().map(|&(_, t)| t).sum();
        let rest_mass: f64 = self
            .shares
            .iter()
            .filter(|(h, _)| !lifted.iter().any(|&(l, _)| l == h.as_str()))
            .map(|(_, v)| v)
            .sum();
        if !lifted.is_empty() && lifted_mass < 1.0 && rest_mass > 0.0 {
            let scale = (1.0 - lifted_mass) / rest_mass;
            for (h, v) in self.shares.iter_mut() {
                *v = match lifted.iter().find(|&&(l, _)| l == h.as_str()) {
                    Some(&(_, target)) => target,
                    None => *v * scale,
                };
            }
        }
        true
    }

    /// Counts held steps per host and moves hosts held too long halfway back to their
    /// proportional share, scaling the others so the sum stays 1. True when a share moved.
    fn reprobe(&mut self, active: &[(&str, f64)]) -> bool {
        let after = self.params.reprobe_after;
        let total: u32 = self.containers.values().sum();
        let mut due = Vec::new();
        for host in self.containers.keys() {
            let n = self.held.entry(host.clone()).or_default();
            if active.iter().any(|&(h, _)| h == host) {
                *n = 0;
            } else {
                *n = n.saturating_add(1);
                // Only with traffic elsewhere: an idle service has nothing to re-probe with.
                if after > 0 && *n >= after && !active.is_empty() {
                    due.push(host.clone());
                }
            }
        }
        let mut moved = false;
        for host in due {
            self.held.insert(host.clone(), 0);
            let prop = f64::from(self.containers[&host]) / f64::from(total.max(1));
            let old = self.shares.get(&host).copied().unwrap_or(0.0);
            if old >= prop {
                continue;
            }
            let new = (old + prop) / 2.0;
            // old < prop <= 1, so 1 - old > 0.
            let scale = (1.0 - new) / (1.0 - old);
            for (h, v) in self.shares.iter_mut() {
                *v = if *h == host { new } else { *v * scale };
            }
            moved = true;
        }
        moved
    }

    /// Raises every share below its floor to the floor and scales the others down proportionally
    /// (water-filling), keeping the sum at 1.
    fn enforce_floor(&mut self) {
        let total: u32 = self.containers.values().sum();
        if total == 0 || self.params.floor_fraction <= 0.0 {
            return;
        }
        let floor = |h: &str| {
            self.params.floor_fraction * f64::from(self.containers.get(h).copied().unwrap_or(0))
                / f64::from(total)
        };
        let floors: BTreeMap<String, f64> =
            self.shares.keys().map(|h| (h.clone(), floor(h))).collect();
        if self.shares.iter().all(|(h, &v)| v >= floors[h]) {
            return;
        }
        let mut pinned: BTreeMap<&str, f64> = BTreeMap::new();
        // Each round pins at least one more host or stops, so it ends within `len` rounds.
        for _ in 0..=self.shares.len() {
            let pinned_mass: f64 = pinned.values().sum();
            let free_mass: f64 = self
                .shares
                .iter()
                .filter(|(h, _)| !pinned.contains_key(h.as_str()))
                .map(|(_, v)| v)
                .sum();
            if free_mass <= 0.0 {
                break;
            }
            let scale = (1.0 - pinned_mass) / free_mass;
            let newly: Vec<&str> = self
                .shares
                .iter()
                .filter(|(h, v)| {
                    !pinned.contains_key(h.as_str()) && *v * scale < floors[h.as_str()]
                })
                .map(|(h, _)| h.as_str())
                .collect();
            if newly.is_empty() {
                let result: BTreeMap<String, f64> = self
                    .shares
                    .iter()
                    .map(|(h, &v)| {
                        (
                            h.clone(),
                            pinned.get(h.as_str()).copied().unwrap_or(v * scale),
                        )
                    })
                    .collect();
                self.shares = result;
                return;
            }
            for h in newly {
                pinned.insert(h, floors[h]);
            }
        }
        // Every host pinned: only possible when the floors sum to 1, i.e. the floors are the
        // proportional shares scaled by `floor_fraction`; renormalise them.
        let sum: f64 = floors.values().sum();
        self.shares = floors.into_iter().map(|(h, f)| (h, f / sum)).collect();
    }
}

/// Alg. 1 inside one proxy, on its own per-host measurements, for when no control plane runs.
///
/// Contract for the caller (the proxy's IO loop):
/// - Call [`LocalShifter::step`] periodically (once a second is plenty) with, per host of the
///   service, `(latency_ms, samples, containers)`: the mean outbound RTT of this proxy's calls to
///   the service's endpoints on that host, ideally over the calls since the last returned weights
///   (a window no longer than the interval), the number of calls behind it, and how many of the
///   service's endpoints live on that host.
/// - It returns `Some(host weights)` (summing to 1) when the proxy should install new weights, as
///   `ServicePlan::host_weights`; `None` means keep what you have.
/// - `Some` comes on the first call (the proportional start `S_j / sum S`), immediately whenever the
///   membership changes (reset; the interval restarts), and otherwise at most once per interval,
///   only when a step was taken. An interval whose hosts lack samples holds and returns `None`.
/// - `now` is the caller's clock (time since an epoch it chose); it must not go backwards.
#[derive(Clone, Debug)]
pub struct LocalShifter {
    shifter: Shifter,
    last: Option<Duration>,
}

impl LocalShifter {
    pub fn new(params: ShiftParams) -> Self {
        Self {
            shifter: Shifter::new(params),
            last: None,
        }
    }

    /// The current host shares.
    pub fn shares(&self) -> &BTreeMap<String, f64> {
        self.shifter.shares()
    }

    /// See the type's contract.
    pub fn step(
        &mut self,
        now: Duration,
        per_host_latency: &BTreeMap<String, (f64, u64, u32)>,
    ) -> Option<BTreeMap<String, f64>> {
        let hosts: BTreeMap<String, HostSample> = per_host_latency
            .iter()
            .map(|(h, &(latency_ms, samples, containers))| {
                (
                    h.clone(),
                    HostSample {
                        latency_ms,
                        samples,
                        containers,
                    },
                )
            })
            .collect();
        let due = self
            .last
            .is_none_or(|t| now.saturating_sub(t) >= self.shifter.params.interval());
        let membership_changed = hosts
            .iter()
            .filter(|(_, h)| h.containers > 0)
            .map(|(n, h)| (n, h.containers))
            .ne(self.shifter.containers.iter().map(|(n, &c)| (n, c)));
        if !due && !membership_changed {
            return None;
        }
        let first = self.last.is_none();
        self.last = Some(now);
        let changed = match self.shifter.step(&hosts) {
            StepOutcome::Reset | StepOutcome::Stepped | StepOutcome::Reprobed => true,
            StepOutcome::Held => first,
        };
        (changed && !self.shifter.shares.is_empty()).then(|| self.shifter.shares.clone())
    }
}

#[cfg(test)]
mod tests;
