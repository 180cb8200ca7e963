//! The objective planner's part of the twin (Samani & Stadler, seed 004): collecting the trace
//! its system model learns from, training that model, and the ANR of a run.
//!
//! - [`collect`] runs the scenario with the `random` planner (actions drawn uniformly from the
//!   discretised space every 5 s step) and every flow's arrivals replaced by the paper's
//!   random-level load (`U{5, 10, 15, 20}` requests/s redrawn every 5 s, independently per flow),
//!   and returns the step log over the managed services: the trace of seed 004 §IV.
//! - [`train`] fits the random forests on it ([`SystemModel::fit`]).
//! - [`anr`] scores a run's steps after warm-up against the model's optimal reward (eq. 6).

use std::sync::Arc;

use loadshift_policy::{
    ManagementObjective,
    planners::{
        ObjectiveSettings, PlannerSettings,
        objective::{
            self, Anr,
            model::{ForestParams, ModelError, SystemModel, TraceStep},
            space::ManagedService,
        },
    },
    schedule::Schedule,
};

use crate::{
    SimError, SimOptions,
    engine::Engine,
    scenario::{Arrival, Scenario},
    steps,
};

/// Why the objective planner's model could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ObjectiveError {
    #[error(
        "scenario {0:?} has no management objective (policy.management); the objective planner \
         and ANR need one"
    )]
    NoObjective(String),
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Length of a collection step, seconds (the paper's time step).
pub const STEP_S: f64 = 5.0;

/// The scenario's management objective and the services it manages, with their hosts.
pub fn managed(s: &Scenario) -> Result<(ManagementObjective, Vec<ManagedService>), ObjectiveError> {
    let mut e = Engine::new(s, s.seed, Schedule::new());
    objective::managed(&e.snapshot()).ok_or_else(|| ObjectiveError::NoObjective(s.name.clone()))
}

/// The latency objectives of the scenario's services (bounds of services the management
/// objective leaves unbounded).
pub fn fallback_bounds(s: &Scenario) -> std::collections::BTreeMap<String, f64> {
    let mut e = Engine::new(s, s.seed, Schedule::new());
    objective::fallback_bounds(&e.snapshot())
}

/// The scenario as the collection runs it: random-level load on every flow, `steps` steps after
/// the warm-up.
pub fn collection_scenario(s: &Scenario, steps: usize) -> Scenario {
    let mut c = s.clone();
    for f in &mut c.flows {
        f.arrival = Arrival::RandomLevel {
            levels: vec![5.0, 10.0, 15.0, 20.0],
            every_s: STEP_S,
        };
    }
    c.duration_s = s.warmup_s + steps as f64 * STEP_S;
    c
}

/// Runs the collection (`random` actions, random-level load) for `steps` steps on `seed`;
/// returns the managed services and the trace over them.
pub fn collect(
    s: &Scenario,
    steps_wanted: usize,
    seed: u64,
    settings: &ObjectiveSettings,
    progress: &mut dyn FnMut(f64),
) -> Result<(Vec<ManagedService>, Vec<TraceStep>), ObjectiveError> {
    let (_, services) = managed(s)?;
    let c = collection_scenario(s, steps_wanted);
    let o = SimOptions {
        planner: Some("random".into()),
        seed: Some(seed),
        planner_settings: Some(PlannerSettings {
            interval_ms: Some((STEP_S * 1e3) as u64),
            objective: ObjectiveSettings {
                seed,
                ..settings.clone()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let out = crate::run(&c, &o, progress)?;
    let trace = steps::trace(&out.steps, &services, c.warmup_s);
    Ok((services, trace))
}

/// Collects on `s` and fits the model: what `loadshift sim` does when a scenario needs a model
/// and names none.
pub fn train(
    s: &Scenario,
    steps_wanted: usize,
    seed: u64,
    settings: &ObjectiveSettings,
    params: ForestParams,
    progress: &mut dyn FnMut(f64),
) -> Result<SystemModel, ObjectiveError> {
    let (services, trace) = collect(s, steps_wanted, seed, settings, progress)?;
    Ok(SystemModel::fit(services, &trace, params)?)
}

/// The ANR of a run of `s` whose step log is `log`, over the steps after the warm-up.
pub fn anr(
    s: &Scenario,
    model: &Arc<SystemModel>,
    settings: &ObjectiveSettings,
    log: &[steps::StepLog],
) -> Result<Option<Anr>, ObjectiveError> {
    let (mo, _) = managed(s)?;
    let trace = steps::trace(log, &model.services, s.warmup_s);
    Ok(objective::anr(
        model,
        &mo,
        &fallback_bounds(s),
        settings,
        &trace,
    )?)
}
