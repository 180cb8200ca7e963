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
//! container on a host getting the same share `D_j / S_j`. Paper defaults: `eta = 0.2`, one step every
//! 5 s; the paper reports convergence in about 6 iterations.
//!
//! The paper's algorithm has no guard rails; a product needs them, and each is a parameter:
//! - **floor**: a host never drops below `floor_fraction * S_j / sum S` (default 0.1), so it keeps
//!   receiving the probe traffic that tells us when it recovers. Enforced after renormalisation by
//!   water-filling (pinned hosts at their floor, the rest scaled proportionally), so shares still
//!   sum to 1.
//! - **step cap**: the multiplier `1 + eta F_j dl_j` is clamped to `[1 - max_step, 1 + max_step]`
//!   (default 0.5). Without it one host far slower than the rest (`dl_j > 1 / eta`) would get a
//!   negative share.
//! - **hold**: a host with fewer than `min_samples` latency samples (default 20), or a non-finite
//!   latency, takes no step and keeps its share; it is also left out of `l_mean`. With fewer than two
//!   measured hosts there is nothing to compare and no step is taken.
//! - **re-probe**: a host held for `reprobe_after` consecutive steps (default 6, i.e. 30 s) while
//!   the service has traffic elsewhere moves halfway back to its proportional share. A host pushed
//!   to its floor on a low-traffic service may get too few samples to ever be measured again; this
//!   gives it the traffic to show whether it recovered. 0 disables it.
//! - **reset**: when the membership (hosts and their container counts) changes, shares return to
//!   `S_j / sum S`, as the paper's initialisation.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;

/// Parameters of Alg. 1 and its guard rails.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShiftParams {
    /// Learning rate `eta` (paper: 0.2).
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
}

impl Default for ShiftParams {
    fn default() -> Self {
        Self {
            eta: 0.2,
            interval_ms: 5000,
            floor_fraction: 0.1,
            max_step: 0.5,
            min_samples: 20,
            reprobe_after: 6,
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
        let mut old_mass = 0.0;
        let mut new_vals = Vec::with_capacity(active.len());
        for &(host, l) in active {
            let d = self.shares.get(host).copied().unwrap_or(0.0);
            let f = if l > l_mean { -1.0 } else { 1.0 };
            let dl = (l_mean - l).abs() / l_mean;
            let factor = (1.0 + p.eta * f * dl).clamp(1.0 - p.max_step, 1.0 + p.max_step);
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(latency_ms: f64, samples: u64, containers: u32) -> HostSample {
        HostSample {
            latency_ms,
            samples,
            containers,
        }
    }

    fn hosts(v: &[(&str, f64, u64, u32)]) -> BTreeMap<String, HostSample> {
        v.iter()
            .map(|&(h, l, n, s)| (h.to_string(), sample(l, n, s)))
            .collect()
    }

    #[test]
    fn one_step_matches_hand_computation() {
        let mut sh = Shifter::new(ShiftParams::default());
        // S = (2, 1, 1): D starts at (0.5, 0.25, 0.25).
        let h = hosts(&[
            ("a", 30.0, 100, 2),
            ("b", 10.0, 100, 1),
            ("c", 20.0, 100, 1),
        ]);
        assert_eq!(sh.step(&h), StepOutcome::Reset);
        assert_eq!(sh.shares()["a"], 0.5);
        assert_eq!(sh.step(&h), StepOutcome::Stepped);
        // l_mean = (30 + 10 + 20) / 3 = 20.
        // a: F = -1, dl = 10/20 = 0.5, D = 0.5  * (1 - 0.2 * 0.5) = 0.45
        // b: F = +1, dl = 0.5,          D = 0.25 * (1 + 0.2 * 0.5) = 0.275
        // c: l = l_mean so F = +1, dl = 0, D = 0.25
        // sum = 0.975; normalised: 0.45/0.975, 0.275/0.975, 0.25/0.975.
        // Floors 0.1 * (0.5, 0.25, 0.25) are far below, so they do not bind.
        let want = [
            ("a", 0.45 / 0.975),
            ("b", 0.275 / 0.975),
            ("c", 0.25 / 0.975),
        ];
        for (host, w) in want {
            assert!(
                (sh.shares()[host] - w).abs() < 1e-12,
                "{host}: {:?}",
                sh.shares()
            );
        }
        // Equal share per container within a host: host a has two.
        assert!((sh.container_share("a").unwrap() - 0.45 / 0.975 / 2.0).abs() < 1e-12);
        let eps = vec![
            Endpoint::new("127.0.0.1:1".parse().unwrap(), "a", "z", "c1"),
            Endpoint::new("127.0.0.1:2".parse().unwrap(), "a", "z", "c2"),
            Endpoint::new("127.0.0.1:3".parse().unwrap(), "b", "z", "c3"),
        ];
        let w = sh.endpoint_weights(&eps);
        assert!((w["127.0.0.1:1"] - 0.45 / 0.975 / 2.0).abs() < 1e-12);
        assert!((w["127.0.0.1:3"] - 0.275 / 0.975).abs() < 1e-12);
    }

    #[test]
    fn step_cap_keeps_a_very_slow_host_positive() {
        // Ten hosts, one 10^4 times slower: uncapped, its factor 1 - eta dl would be negative.
        let mut many = vec![("slow", 10_000.0, 100, 1)];
        let names: Vec<String> = (0..9).map(|i| format!("h{i}")).collect();
        for n in &names {
            many.push((n.as_str(), 1.0, 100, 1));
        }
        let h = hosts(&many);
        let mut sh = Shifter::new(ShiftParams {
            floor_fraction: 0.0,
            ..Default::default()
        });
        sh.step(&h);
        sh.step(&h);
        // l_mean = 1000.9, dl_slow = 8.99, 1 - 0.2 * 8.99 < 0: the cap makes the factor 0.5.
        // Fast hosts: dl = 1 - 1/1000.9, factor 1 + 0.2 dl (below the 1.5 cap).
        // D_slow = 0.1 * 0.5 / (0.1 * 0.5 + 9 * 0.1 * factor).
        let want = 0.05 / (0.05 + 0.9 * (1.0 + 0.2 * (1.0 - 1.0 / ((10_000.0 + 9.0) / 10.0))));
        assert!(
            (sh.shares()["slow"] - want).abs() < 1e-12,
            "{:?}",
            sh.shares()
        );
    }

    #[test]
    fn floor_keeps_probe_traffic_and_sum_stays_one() {
        let mut sh = Shifter::new(ShiftParams::default());
        let h = hosts(&[("slow", 500.0, 100, 1), ("fast", 5.0, 100, 1)]);
        for _ in 0..100 {
            sh.step(&h);
        }
        // Floor = 0.1 * 1/2.
        assert!(
            (sh.shares()["slow"] - 0.05).abs() < 1e-12,
            "{:?}",
            sh.shares()
        );
        assert!((sh.shares()["fast"] - 0.95).abs() < 1e-12);
    }

    #[test]
    fn hold_with_few_samples_and_reset_on_membership_change() {
        let mut sh = Shifter::new(ShiftParams::default());
        let h = hosts(&[("a", 30.0, 100, 1), ("b", 10.0, 100, 1), ("c", 99.0, 3, 1)]);
        sh.step(&h);
        assert_eq!(sh.step(&h), StepOutcome::Stepped);
        // c had 3 < 20 samples: it keeps exactly 1/3 and is left out of l_mean (= 20).
        assert_eq!(sh.shares()["c"], 1.0 / 3.0);
        let a = (1.0 / 3.0) * 0.9;
        let b = (1.0 / 3.0) * 1.1;
        let scale = (2.0 / 3.0) / (a + b);
        assert!((sh.shares()["a"] - a * scale).abs() < 1e-12);
        // Only one measured host: hold.
        let lone = hosts(&[("a", 30.0, 100, 1), ("b", 10.0, 0, 1), ("c", 99.0, 3, 1)]);
        let before = sh.shares().clone();
        assert_eq!(sh.step(&lone), StepOutcome::Held);
        assert_eq!(sh.shares(), &before);
        // A container joins host b: back to S_j / sum S.
        let grown = hosts(&[("a", 30.0, 100, 1), ("b", 10.0, 100, 2), ("c", 99.0, 3, 1)]);
        assert_eq!(sh.step(&grown), StepOutcome::Reset);
        assert_eq!(sh.shares()["b"], 0.5);
        assert_eq!(sh.steps(), 0);
    }

    #[test]
    fn a_starved_host_is_reprobed_after_being_held() {
        let mut sh = Shifter::new(ShiftParams::default());
        let busy = hosts(&[
            ("a", 10.0, 100, 1),
            ("b", 50.0, 100, 1),
            ("c", 10.0, 100, 1),
        ]);
        sh.step(&busy);
        for _ in 0..30 {
            sh.step(&busy);
        }
        let floor = 0.1 / 3.0;
        assert!(
            (sh.shares()["b"] - floor).abs() < 1e-12,
            "{:?}",
            sh.shares()
        );
        // b now gets too little traffic to be measured: held for 5 steps, re-probed on the 6th.
        let starved = hosts(&[("a", 10.0, 100, 1), ("b", 10.0, 2, 1), ("c", 10.0, 100, 1)]);
        for _ in 0..5 {
            assert_eq!(sh.step(&starved), StepOutcome::Stepped);
            assert!((sh.shares()["b"] - floor).abs() < 1e-12);
        }
        let before = sh.shares().clone();
        sh.step(&starved);
        // a and c are equally fast: their step changes nothing; b goes halfway to 1/3.
        let want = (floor + 1.0 / 3.0) / 2.0;
        assert!((sh.shares()["b"] - want).abs() < 1e-12, "{:?}", sh.shares());
        let scale = (1.0 - want) / (1.0 - floor);
        assert!((sh.shares()["a"] - before["a"] * scale).abs() < 1e-12);
        // With no traffic anywhere nothing is re-probed.
        let idle = hosts(&[("a", 0.0, 0, 1), ("b", 0.0, 0, 1), ("c", 0.0, 0, 1)]);
        for _ in 0..20 {
            assert_eq!(sh.step(&idle), StepOutcome::Held);
        }
        // Two hosts, one starved: no gradient step is possible, the re-probe still happens.
        let mut two = Shifter::new(ShiftParams::default());
        let h = hosts(&[("a", 10.0, 100, 1), ("b", 90.0, 100, 1)]);
        for _ in 0..40 {
            two.step(&h);
        }
        let low = two.shares()["b"];
        let h = hosts(&[("a", 10.0, 100, 1), ("b", 90.0, 1, 1)]);
        let outcomes: Vec<StepOutcome> = (0..6).map(|_| two.step(&h)).collect();
        assert_eq!(outcomes[5], StepOutcome::Reprobed, "{outcomes:?}");
        assert!(two.shares()["b"] > low);
    }

    #[test]
    fn converges_toward_equal_latency_on_a_queue_model() {
        // Host b is three times slower per request. Latency of an M/M/1-like host:
        // l = s / (1 - rho), rho = load * s.
        let mut sh = Shifter::new(ShiftParams::default());
        let serve = [("a", 1.0), ("b", 3.0)];
        let lat = |sh: &Shifter| -> BTreeMap<String, HostSample> {
            serve
                .iter()
                .map(|&(h, s)| {
                    let load = sh.shares().get(h).copied().unwrap_or(0.5) * 0.25;
                    let rho: f64 = (load * s).min(0.99);
                    (h.to_string(), sample(s / (1.0 - rho), 100, 1))
                })
                .collect()
        };
        sh.step(&lat(&sh));
        let spread0 = {
            let l = lat(&sh);
            l["b"].latency_ms / l["a"].latency_ms
        };
        for _ in 0..30 {
            let l = lat(&sh);
            sh.step(&l);
        }
        let l = lat(&sh);
        let spread = l["b"].latency_ms / l["a"].latency_ms;
        assert!(sh.shares()["a"] > 0.6, "{:?}", sh.shares());
        assert!(spread < spread0, "{spread} vs {spread0}");
    }

    #[test]
    fn local_shifter_follows_its_contract() {
        let p = ShiftParams::default();
        let mut ls = LocalShifter::new(p);
        let obs: BTreeMap<String, (f64, u64, u32)> = [
            ("a".to_string(), (30.0, 100, 1)),
            ("b".to_string(), (10.0, 100, 1)),
        ]
        .into();
        let s = Duration::from_secs(1);
        let w = ls.step(Duration::ZERO, &obs).unwrap();
        assert_eq!(w["a"], 0.5);
        assert_eq!(ls.step(4 * s, &obs), None, "inside the interval");
        let w = ls.step(5 * s, &obs).unwrap();
        assert!(w["a"] < 0.5 && (w.values().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(ls.step(6 * s, &obs), None);
        // Membership change: immediate reset.
        let mut grown = obs.clone();
        grown.insert("c".into(), (10.0, 100, 1));
        let w = ls.step(7 * s, &grown).unwrap();
        assert!((w["c"] - 1.0 / 3.0).abs() < 1e-12);
        // Too few samples: the interval passes without new weights.
        let quiet: BTreeMap<String, (f64, u64, u32)> = grown
            .iter()
            .map(|(h, &(l, _, c))| (h.clone(), (l, 1, c)))
            .collect();
        assert_eq!(ls.step(20 * s, &quiet), None);
        assert_eq!(
            LocalShifter::new(p).step(Duration::ZERO, &BTreeMap::new()),
            None
        );
    }

    #[test]
    fn params_validate_names_the_field() {
        let e = ShiftParams {
            eta: -1.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("eta"), "{e}");
        let e = ShiftParams {
            max_step: 1.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("max_step"), "{e}");
        assert!(ShiftParams::default().validate().is_ok());
        let p: ShiftParams = serde_json::from_str(r#"{"eta": 0.3}"#).unwrap();
        assert_eq!((p.eta, p.interval_ms), (0.3, 5000));
        assert!(serde_json::from_str::<ShiftParams>(r#"{"etta": 0.3}"#).is_err());
    }

    proptest! {
        #[test]
        fn shares_sum_to_one_and_respect_the_floor(
            members in prop::collection::vec((1u32..6, 0u64..60), 1..8),
            rounds in prop::collection::vec(prop::collection::vec(prop::num::f64::ANY, 8), 1..12),
            floor_fraction in 0.0f64..0.9,
            eta in 0.01f64..3.0,
        ) {
            let p = ShiftParams { floor_fraction, eta, ..Default::default() };
            let mut sh = Shifter::new(p);
            let total: u32 = members.iter().map(|m| m.0).sum();
            for lat in &rounds {
                let h: BTreeMap<String, HostSample> = members
                    .iter()
                    .enumerate()
                    .map(|(i, &(s, n))| (format!("h{i}"), sample(lat[i], n, s)))
                    .collect();
                sh.step(&h);
                let sum: f64 = sh.shares().values().sum();
                prop_assert!((sum - 1.0).abs() < 1e-9, "sum {sum}: {:?}", sh.shares());
                for (i, &(s, _)) in members.iter().enumerate() {
                    let d = sh.shares()[&format!("h{i}")];
                    let floor = floor_fraction * f64::from(s) / f64::from(total);
                    prop_assert!(d.is_finite() && d >= floor - 1e-12, "h{i}: {d} < {floor}");
                }
            }
        }
    }
}
