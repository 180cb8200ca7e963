//! `loadshift sim`: a seeded discrete-event simulation of a scenario, the digital twin of
//! Samani & Stadler (seed 004) at any scale.
//!
//! Every container is a queue with `concurrency` servers; requests fan out along the call graph.
//! Nothing about policy is re-implemented here: every routing decision is made by the data
//! plane's [`Balancer`](loadshift_core::balance::Balancer) built from the plan in force (one per
//! caller proxy and downstream service, so per-proxy subsets apply), blocking by the data plane's
//! [`Gate`](loadshift_core::admission::Gate), telemetry by its [`Window`] and
//! [`PeakEwma`](loadshift_core::telemetry::PeakEwma), ejection by its outlier detectors (failures,
//! and latency outliers when the scenario's `ejection.latency` enables it), slow start by the
//! balancer's own rule (the scenario's `slow_start`), and plans
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

mod calls;
mod compare;
mod control;
mod engine;
mod events;
pub mod hpa_best;
pub mod objective;
pub mod oracle;
pub mod report;
mod request;
pub mod scenario;
pub mod seeds;
mod snapshot;
pub mod steps;
mod summary;
#[cfg(test)]
mod tests;
mod world;

pub use compare::{check_scaler, compare, known_scalers, run_count};
pub use engine::Refusal;
pub use summary::{CONVERGE_POOL, converged_after, onset_s};

use std::{collections::BTreeMap, time::Instant};

use loadshift_policy::{
    Planner, ScaleDecision, Scaler, Snapshot,
    planners::PlannerSettings,
    registry::{self, BuildError},
    scalers::ScalerSettings,
    schedule::{
        AssignError, Assignment, Choice, PolicyBox, Role, Round, Schedule, Scope, TaskSpec,
    },
};

use crate::{hpa_best::HpaBest, report::PolicyRun, scenario::Scenario};

/// Why a simulation could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Assign(#[from] AssignError),
    #[error("unknown scaler {name:?}; known scalers: {known}")]
    UnknownScaler { name: String, known: String },
    #[error("sla_scale {0}: must be a finite number > 0")]
    SlaScale(f64),
    #[error("management objective: {0}")]
    Objective(String),
}

/// Command-line overrides of the scenario's choices.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Planner for every service (overrides the scenario).
    pub planner: Option<String>,
    /// Scaler for every service (overrides the scenario).
    pub scaler: Option<String>,
    /// Seed (overrides the scenario).
    pub seed: Option<u64>,
    /// Planner tunables for every service (overrides the scenario's `planner_settings`).
    pub planner_settings: Option<PlannerSettings>,
    /// Scaler tunables for every service (overrides the scenario's `scaler_settings`).
    pub scaler_settings: Option<ScalerSettings>,
    /// Keep every control round with the snapshot it read ([`Outcome::rounds`]).
    pub trace: bool,
    /// Factor on every flow's SLA latency ([`Scenario::scale_sla`]), finite and > 0. Default 1.
    pub sla_scale: f64,
    /// The objective planner's system model: with it, every run of a scenario with a management
    /// objective gets its ANR (`summary.json` `anr`).
    pub objective_model:
        Option<std::sync::Arc<loadshift_policy::planners::objective::model::SystemModel>>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            planner: None,
            scaler: None,
            seed: None,
            planner_settings: None,
            scaler_settings: None,
            trace: false,
            sla_scale: 1.0,
            objective_model: None,
        }
    }
}

/// The policies of one run: a schedule built as of time 0.
pub struct Policies {
    /// `<planner>` or `<planner>+<scaler>`.
    pub name: String,
    pub schedule: Schedule,
    specs: Vec<TaskSpec>,
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
    /// Plans refused by validation (kept the last good plan).
    pub plan_rejections: u64,
    /// Latency-outlier ejections over every simulated proxy (the scenario's `ejection.latency`).
    pub latency_ejections: u64,
    pub scale_decisions: Vec<ScaleDecision>,
    /// Decisions the simulated actuator did not carry out (limits, brownout), with the reason.
    pub refusals: Vec<Refusal>,
    /// Per service at the end of the run: connections its live callers' balancers may use
    /// (caller proxy x eligible endpoint pairs), the quantity Imbres §4.2 caps.
    pub connections: BTreeMap<String, u64>,
    /// Every control round and the snapshot it read, with [`SimOptions::trace`].
    pub rounds: Vec<(Snapshot, Round)>,
    /// `hpa-best` runs: every target tried on this seed and the one kept.
    pub hpa_best: Option<HpaBest>,
    /// The step log (scenarios with a management objective): [`steps`].
    pub steps: Vec<steps::StepLog>,
    /// The run's ANR and its steps, when [`SimOptions::objective_model`] is set.
    pub anr: Option<loadshift_policy::planners::objective::Anr>,
}

impl Outcome {
    /// `<policy>: N connections (caller proxy x endpoint) at the end: <service> <n>, ...`.
    pub fn connections_note(&self) -> String {
        let total: u64 = self.connections.values().sum();
        let per: Vec<String> = self
            .connections
            .iter()
            .map(|(svc, n)| format!("{svc} {n}"))
            .collect();
        format!(
            "{}: {total} connections (caller proxy x endpoint) at the end: {}",
            self.run.policy,
            per.join(", ")
        )
    }
}

/// Builds a spec's policy: the registry's, with `round-robin` falling back to `even` when no
/// planner of that name is registered (older scenarios name it).
fn build(spec: &TaskSpec) -> Result<PolicyBox, BuildError> {
    match registry::build(spec) {
        Err(e) if spec.role == Role::Planner && spec.name == "round-robin" => {
            let even = TaskSpec {
                name: "even".into(),
                ..spec.clone()
            };
            registry::build(&even).map_err(|_| e)
        }
        other => other,
    }
}

impl Policies {
    /// Resolves planner and scaler per service (the override when given, else the scenario's)
    /// into the schedule's tasks, one application of every service.
    pub fn resolve(s: &Scenario, o: &SimOptions) -> Result<Self, SimError> {
        let mut a = Assignment::default();
        for svc in &s.services {
            let own = s.policy.services.get(&svc.name);
            let choice = Choice {
                planner: o
                    .planner
                    .clone()
                    .unwrap_or_else(|| s.planner_for(&svc.name).to_string()),
                planner_settings: o
                    .planner_settings
                    .clone()
                    .or_else(|| own.and_then(|p| p.planner_settings.clone()))
                    .unwrap_or_else(|| s.policy.planner_settings.clone()),
                scaler: o
                    .scaler
                    .clone()
                    .unwrap_or_else(|| s.scaler_for(&svc.name).to_string()),
                scaler_settings: o
                    .scaler_settings
                    .clone()
                    .or_else(|| own.and_then(|p| p.scaler_settings.clone()))
                    .unwrap_or_else(|| s.policy.scaler_settings.clone()),
            };
            a.services.insert(svc.name.clone(), choice);
        }
        let specs = a.tasks()?;
        let mut schedule = Schedule::new();
        schedule.sync(specs.clone(), std::time::Duration::ZERO, build)?;
        let planner_name = o
            .planner
            .clone()
            .unwrap_or_else(|| s.policy.planner.clone());
        let scaler_name = o.scaler.clone().unwrap_or_else(|| s.policy.scaler.clone());
        let name = if scaler_name == "none" {
            planner_name
        } else {
            format!("{planner_name}+{scaler_name}")
        };
        Ok(Policies {
            name,
            schedule,
            specs,
        })
    }

    /// Replaces every planner with `planner`, one instance owning and seeing every service (an
    /// oracle, or a test's planner).
    pub fn with_planner(self, s: &Scenario, planner: Box<dyn Planner>) -> Self {
        self.replace(s, Role::Planner, PolicyBox::Planner(planner))
    }

    /// Replaces every scaler with `scaler`, one instance owning and seeing every service.
    pub fn with_scaler(self, s: &Scenario, scaler: Box<dyn Scaler>) -> Self {
        self.replace(s, Role::Scaler, PolicyBox::Scaler(scaler))
    }

    fn replace(mut self, s: &Scenario, role: Role, policy: PolicyBox) -> Self {
        let all: std::collections::BTreeSet<String> =
            s.services.iter().map(|x| x.name.clone()).collect();
        let custom = TaskSpec {
            role,
            name: match &policy {
                PolicyBox::Planner(p) => p.name().to_string(),
                PolicyBox::Scaler(x) => x.name().to_string(),
            },
            scope: Scope {
                label: "every service".into(),
                owns: all.clone(),
                sees: all,
            },
            planner_settings: PlannerSettings::default(),
            scaler_settings: ScalerSettings::default(),
        };
        let mut specs: Vec<TaskSpec> = self.specs.into_iter().filter(|t| t.role != role).collect();
        match role {
            Role::Planner => specs.insert(0, custom),
            Role::Scaler => specs.push(custom),
        }
        let mut policy = Some(policy);
        let result = self.schedule.sync(
            specs.clone(),
            std::time::Duration::ZERO,
            |_| -> Result<PolicyBox, ()> { policy.take().ok_or(()) },
        );
        debug_assert!(result.is_ok(), "only the custom spec is new");
        self.specs = specs;
        self
    }
}

/// Runs one policy on a scenario. `progress` gets the simulated seconds reached, once per report
/// interval. `hpa-best` is a comparison of several runs: see [`compare`].
pub fn run(
    s: &Scenario,
    o: &SimOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Outcome, SimError> {
    let s_scaled = compare::scaled(s, o)?;
    let s: &Scenario = &s_scaled;
    let policies = Policies::resolve(s, o)?;
    Ok(run_traced(
        s,
        o.seed.unwrap_or(s.seed),
        policies,
        o.trace,
        progress,
    ))
}

/// Runs already-built policies (custom planners or scalers included).
pub fn run_with(s: &Scenario, seed: u64, p: Policies, progress: &mut dyn FnMut(f64)) -> Outcome {
    run_traced(s, seed, p, false, progress)
}

fn run_traced(
    s: &Scenario,
    seed: u64,
    p: Policies,
    trace: bool,
    progress: &mut dyn FnMut(f64),
) -> Outcome {
    let start = Instant::now();
    let cpu0 = thread_cpu_ns();
    let mut e = engine::Engine::new(s, seed, p.schedule);
    if trace {
        e.trace = Some(Vec::new());
    }
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
        plan_rejections: e.plan_rejections,
        latency_ejections: e.latency_ejections,
        scale_decisions: std::mem::take(&mut e.scale_decisions),
        refusals: std::mem::take(&mut e.refusals),
        rounds: e.trace.take().unwrap_or_default(),
        hpa_best: None,
        steps: e.steps.take().map(|r| r.log).unwrap_or_default(),
        anr: None,
    }
}

/// CPU time of the calling thread in nanoseconds: the first field of
/// `/proc/thread-self/schedstat`.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
