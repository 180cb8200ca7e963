//! `loadshift sim`: a seeded discrete-event simulation of a scenario, the digital twin of
//! Samani & Stadler (seed 004) at any scale.
//!
//! Every container is a queue with `concurrency` servers; requests fan out along the call graph.
//! Nothing about policy is re-implemented here: every routing decision is made by the data
//! plane's [`Balancer`](loadshift_core::balance::Balancer) built from the plan in force (one per
//! caller proxy and downstream service, so per-proxy subsets apply), blocking by the data plane's
//! [`Gate`](loadshift_core::admission::Gate), telemetry by its [`Window`] and
//! [`PeakEwma`](loadshift_core::telemetry::PeakEwma), ejection by its outlier detector, and plans
//! and scale decisions by the real planners and scalers from their registries, called at their own
//! `interval()` with a [`Snapshot`](loadshift_policy::Snapshot) built from the simulated telemetry.
//!
//! Deterministic for a seed: one binary heap of events ordered by (time, sequence), and seeded
//! `SmallRng` streams for arrivals (one per flow, so policies compared on one seed see the same
//! arrivals), work and balancing.
//!
//! [`Window`]: loadshift_core::telemetry::Window
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod control;
mod engine;
mod metrics;
pub mod oracle;
pub mod report;
mod request;
pub mod scenario;
pub mod seeds;
#[cfg(test)]
mod tests;
mod world;

pub use metrics::{CONVERGE_POOL, converged_after, onset_s};

use std::{collections::BTreeMap, time::Instant};

use crate::{
    report::{PolicyRun, Report},
    scenario::Scenario,
};
use loadshift_policy::{
    Planner, ScaleDecision, Scaler,
    planners::{self, settings::SettingsError},
    scalers,
};

/// Policy names the simulator runs without a planner: the data plane balances on its own.
pub const DATA_PLANE_ONLY: &[&str] = &["p2c-ewma"];

/// Why a simulation could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Planner(#[from] planners::settings::SettingsError),
    #[error(transparent)]
    Scaler(#[from] scalers::UnknownScaler),
}

/// Command-line overrides of the scenario's choices.
#[derive(Clone, Debug, Default)]
pub struct SimOptions {
    /// Planner for every service (overrides the scenario).
    pub planner: Option<String>,
    /// Scaler for every service (overrides the scenario).
    pub scaler: Option<String>,
    /// Seed (overrides the scenario).
    pub seed: Option<u64>,
    /// Tunables of the shifting and connection planners (default: the papers').
    pub planner_settings: planners::PlannerSettings,
}

/// A planner instance and the services it plans.
pub struct PlannerRt {
    pub planner: Box<dyn Planner>,
    /// Indexed like the scenario's services.
    pub owned: Vec<bool>,
    pub interval_ns: u64,
    pub iterations: u32,
}

/// A scaler instance and the services it scales.
pub struct ScalerRt {
    pub scaler: Box<dyn Scaler>,
    pub owned: Vec<bool>,
    pub interval_ns: u64,
    pub decisions: Vec<ScaleDecision>,
}

/// The policies of one run, resolved.
pub struct Policies {
    /// `<planner>` or `<planner>+<scaler>`.
    pub name: String,
    pub planners: Vec<PlannerRt>,
    pub scalers: Vec<ScalerRt>,
}

/// What one run produced.
#[derive(Debug)]
pub struct Outcome {
    pub run: PolicyRun,
    /// Events processed.
    pub events: u64,
    /// Requests that arrived, warm-up included.
    pub arrivals: u64,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
    /// CPU seconds the simulating thread used (Linux `/proc/thread-self/schedstat`); `None` where
    /// unavailable. Unlike wall time it does not grow when other processes share the core.
    pub cpu_s: Option<f64>,
    /// Mean counted end-to-end latency, ms.
    pub mean_ms: f64,
    /// Plans refused by validation (kept the last good plan).
    pub plan_rejections: u64,
    pub scale_decisions: Vec<ScaleDecision>,
    /// Per service at the end of the run: connections its live callers' balancers may use
    /// (caller proxy x eligible endpoint pairs), the quantity Imbres §4.2 caps.
    pub connections: BTreeMap<String, u64>,
}

impl Policies {
    /// Resolves planner and scaler per service: the override when given, else the scenario's.
    /// `round-robin` is the `even` planner when no planner of that name is registered;
    /// `p2c-ewma` without a registered planner means no plan at all.
    pub fn resolve(s: &Scenario, o: &SimOptions) -> Result<Self, SimError> {
        let n = s.services.len();
        let mut by_planner: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        let mut by_scaler: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        for (i, svc) in s.services.iter().enumerate() {
            let p = o
                .planner
                .clone()
                .unwrap_or_else(|| s.planner_for(&svc.name).to_string());
            by_planner.entry(p).or_insert_with(|| vec![false; n])[i] = true;
            let sc = o
                .scaler
                .clone()
                .unwrap_or_else(|| s.scaler_for(&svc.name).to_string());
            by_scaler.entry(sc).or_insert_with(|| vec![false; n])[i] = true;
        }
        let planner_name = o
            .planner
            .clone()
            .unwrap_or_else(|| s.policy.planner.clone());
        let scaler_name = o.scaler.clone().unwrap_or_else(|| s.policy.scaler.clone());
        let mut planners_rt = Vec::new();
        // The global planner first: its interval is the run's control interval.
        let mut names: Vec<String> = by_planner.keys().cloned().collect();
        names.sort_by_key(|n| *n != planner_name);
        for name in names {
            let owned = by_planner.remove(&name).unwrap_or_default();
            let planner = match planners::build_with(&name, &o.planner_settings) {
                Ok(p) => p,
                Err(SettingsError::Unknown(_)) if DATA_PLANE_ONLY.contains(&name.as_str()) => {
                    continue;
                }
                Err(e @ SettingsError::Unknown(_)) if name == "round-robin" => {
                    planners::build("even").map_err(|_| e)?
                }
                Err(e) => return Err(e.into()),
            };
            let interval_ns = (planner.interval().as_nanos() as u64).max(1);
            planners_rt.push(PlannerRt {
                planner,
                owned,
                interval_ns,
                iterations: 0,
            });
        }
        let mut scalers_rt = Vec::new();
        for (name, owned) in by_scaler {
            let scaler = scalers::build(&name)?;
            let interval_ns = (scaler.interval().as_nanos() as u64).max(1);
            scalers_rt.push(ScalerRt {
                scaler,
                owned,
                interval_ns,
                decisions: Vec::new(),
            });
        }
        let name = if scaler_name == "none" {
            planner_name
        } else {
            format!("{planner_name}+{scaler_name}")
        };
        Ok(Policies {
            name,
            planners: planners_rt,
            scalers: scalers_rt,
        })
    }
}

/// Runs one policy on a scenario. `progress` gets the simulated seconds reached, once per report
/// interval.
pub fn run(
    s: &Scenario,
    o: &SimOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Outcome, SimError> {
    let policies = Policies::resolve(s, o)?;
    Ok(run_with(s, o.seed.unwrap_or(s.seed), policies, progress))
}

/// Runs already-built policies (custom planners or scalers included).
pub fn run_with(s: &Scenario, seed: u64, p: Policies, progress: &mut dyn FnMut(f64)) -> Outcome {
    let start = Instant::now();
    let cpu0 = thread_cpu_ns();
    let mut e = engine::Engine::new(s, seed, p.planners, p.scalers);
    e.run(progress);
    let run = PolicyRun {
        policy: p.name,
        summary: e.rec.summary(),
        counts: e.rec.counts,
        intervals: std::mem::take(&mut e.rec.intervals),
    };
    let connections = e.connections();
    let cpu_s = thread_cpu_ns()
        .zip(cpu0)
        .map(|(b, a)| b.saturating_sub(a) as f64 / 1e9);
    Outcome {
        connections,
        run,
        events: e.events,
        arrivals: e.rec.arrivals,
        wall_s: start.elapsed().as_secs_f64(),
        cpu_s,
        mean_ms: e.rec.mean_ms(),
        plan_rejections: e.plan_rejections,
        scale_decisions: e
            .scalers
            .iter_mut()
            .flat_map(|x| std::mem::take(&mut x.decisions))
            .collect(),
    }
}

/// Runs several policies on the same seed into one report (`--compare`). Each entry is a planner
/// name or `planner+scaler`; `None` is the scenario's own choice (with its per-service overrides).
pub fn compare(
    s: &Scenario,
    planners: &[Option<String>],
    o: &SimOptions,
    progress: &mut dyn FnMut(&str, f64),
) -> Result<(Report, Vec<Outcome>), SimError> {
    let seed = o.seed.unwrap_or(s.seed);
    // Resolve everything first so a typo fails before minutes of simulation.
    let resolved = planners
        .iter()
        .map(|p| {
            // `planner+scaler` picks both for that run.
            let (planner, scaler) = match p.as_deref().and_then(|p| p.split_once('+')) {
                Some((pl, sc)) => (Some(pl.to_string()), Some(sc.to_string())),
                None => (p.clone().or_else(|| o.planner.clone()), o.scaler.clone()),
            };
            Policies::resolve(
                s,
                &SimOptions {
                    planner,
                    scaler,
                    seed: o.seed,
                    planner_settings: o.planner_settings.clone(),
                },
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut outcomes = Vec::new();
    for p in resolved {
        let name = p.name.clone();
        outcomes.push(run_with(s, seed, p, &mut |t| progress(&name, t)));
    }
    let mut report = Report {
        scenario: s.name.clone(),
        seed,
        source: "sim".into(),
        notes: vec![format!(
            "Simulated {} s (warm-up {} s), {} services, {} containers, {} hosts.",
            s.duration_s,
            s.warmup_s,
            s.services.len(),
            s.container_count(),
            s.hosts.len()
        )],
        runs: Vec::new(),
    };
    if !s.description.is_empty() {
        report.notes.insert(0, s.description.clone());
    }
    for o in &outcomes {
        let total: u64 = o.connections.values().sum();
        let per: Vec<String> = o
            .connections
            .iter()
            .map(|(svc, n)| format!("{svc} {n}"))
            .collect();
        report.notes.push(format!(
            "{}: {total} connections (caller proxy x endpoint) at the end: {}",
            o.run.policy,
            per.join(", ")
        ));
        if o.plan_rejections > 0 {
            report.notes.push(format!(
                "{}: {} plans refused by validation",
                o.run.policy, o.plan_rejections
            ));
        }
        report.runs.push(o.run.clone());
    }
    Ok((report, outcomes))
}

/// CPU time of the calling thread in nanoseconds: the first field of
/// `/proc/thread-self/schedstat`.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
