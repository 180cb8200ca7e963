//! Routing and blocking to a management objective (Samani & Stadler, seed 004): the planner
//! `objective` and its baseline `random`, both application-scoped.
//!
//! - **State**: per managed service its offered load `l_i` (requests/s over the last step,
//!   blocked ones included) from the snapshot; the response times `d_i` are what the model
//!   predicts, the paper's simplification (eq. 5: `d_{t+1}` does not depend on `d_t`).
//! - **Action** ([`space`]): per managed service routing weights over its hosts (`p_ij`, sent as
//!   `host_weights`) and a blocking fraction at its callers (`b_i`, sent as `blocking["*"]`);
//!   every dimension discretised to `levels` values (default 6, the paper's).
//! - **Objective** ([`reward`]): the application's MO1 / MO2 / MO3 as the operator set it
//!   (`loadshift ctl objective set ... --mo`), mapped to the tanh-shaped rewards.
//! - **Policy**: every step (5 s, the paper's time step) `objective` evaluates every action of
//!   the space on the learned [`model::SystemModel`] for the loads of the last step and applies
//!   the one with the highest reward (the paper's optimal policy on the model; PPO is not built).
//!   `random` applies an action drawn uniformly from the same space.
//! - **ANR** ([`anr`], eq. 6): per step the reward obtained (from the measured carried load and
//!   response times) over the best reward the model predicts for that step's offered load,
//!   averaged over the steps.
//!
//! The managed services are the ones the objective names (bounds, utilities, MO3's favoured and
//! protected service); with no name at all, the application's services that have a latency
//! objective. Without a management objective both planners leave every plan as it is, and
//! `objective` does too while nothing is offered (before the first reports, every action would
//! tie at zero reward).

pub mod model;
pub mod reward;
pub mod space;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
};

use loadshift_core::plan::{Blocking, ServicePlan};
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use self::{
    model::{ModelError, Predictor, SystemModel, TraceStep},
    reward::Reward,
    space::{Action, ActionSpace, ManagedService},
};
use crate::{BadSetting, ManagementObjective, PlanUpdate, Planner, Snapshot};

/// Settings of `objective` and `random` (`planner_settings.objective`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectiveSettings {
    /// The system model file written by `loadshift model train objective`; `objective` needs
    /// one (`loadshift sim` trains one when a scenario needs it and names none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// Values per action dimension (default 6, the paper's).
    pub levels: u32,
    /// Steepness `k` of the reward's tanh components (default 10, [`reward::STEEPNESS`]).
    pub steepness: f64,
    /// Seed of `random`'s draws (default 1).
    pub seed: u64,
}

impl Default for ObjectiveSettings {
    fn default() -> Self {
        Self {
            model: None,
            levels: 6,
            steepness: reward::STEEPNESS,
            seed: 1,
        }
    }
}

impl ObjectiveSettings {
    /// `levels` in [2, 11], `steepness` finite and > 0.
    pub fn validate(&self) -> Result<(), BadSetting> {
        if !(2..=11).contains(&self.levels) {
            return Err(BadSetting {
                field: "objective.levels".into(),
                value: self.levels.to_string(),
                reason: "must be in [2, 11]".into(),
            });
        }
        if !(self.steepness.is_finite() && self.steepness > 0.0) {
            return Err(BadSetting {
                field: "objective.steepness".into(),
                value: self.steepness.to_string(),
                reason: "must be finite and > 0".into(),
            });
        }
        Ok(())
    }

    /// The model file named by `model`, read and parsed.
    pub fn load_model(&self) -> Result<SystemModel, BadSetting> {
        let bad = |value: String, reason: String| BadSetting {
            field: "objective.model".into(),
            value,
            reason,
        };
        let Some(path) = &self.model else {
            return Err(bad(
                "(none)".into(),
                "the objective planner needs a system model: train one with `loadshift model \
                 collect` and `loadshift model train objective`"
                    .into(),
            ));
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| bad(shown.clone(), e.to_string()))?;
        SystemModel::from_json(&text).map_err(|e| bad(shown, e.to_string()))
    }
}

/// The application's management objective in `snap` and the services it manages (sorted by
/// name, each with the sorted hosts of its containers); `None` without an objective or services.
pub fn managed(snap: &Snapshot) -> Option<(ManagementObjective, Vec<ManagedService>)> {
    let mo = snap
        .applications
        .values()
        .find_map(|a| a.management.clone())?;
    let mut names: BTreeSet<String> = mo.bounds_ms().keys().cloned().collect();
    match &mo {
        ManagementObjective::Mo1 { .. } => {}
        ManagementObjective::Mo2 { utility, .. } => names.extend(utility.keys().cloned()),
        ManagementObjective::Mo3 {
            favoured,
            protected,
            ..
        } => {
            names.extend(favoured.iter().cloned());
            names.insert(protected.clone());
        }
    }
    if names.is_empty() {
        names = snap
            .services
            .values()
            .filter(|s| s.objective.is_some())
            .map(|s| s.name.clone())
            .collect();
    }
    let services: Vec<ManagedService> = names
        .into_iter()
        .filter_map(|name| {
            let s = snap.services.get(&name)?;
            let hosts: BTreeSet<&str> = s
                .containers
                .iter()
                .map(|c| c.endpoint.host.as_str())
                .collect();
            (!hosts.is_empty()).then(|| ManagedService {
                hosts: hosts.into_iter().map(str::to_string).collect(),
                name,
            })
        })
        .collect();
    (!services.is_empty()).then_some((mo, services))
}

/// Latency objectives of the services in `snap`: the bounds of services the management objective
/// leaves unbounded.
pub fn fallback_bounds(snap: &Snapshot) -> BTreeMap<String, f64> {
    snap.services
        .values()
        .filter_map(|s| Some((s.name.clone(), s.objective.as_ref()?.sla_ms)))
        .collect()
}

/// The best action of a space for some loads, by the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Best {
    pub action: Action,
    /// The reward the model predicts for it (the step's optimal reward).
    pub reward: f64,
    /// Predicted mean response time per service, ms.
    pub predicted_ms: Vec<f64>,
}

/// Evaluates every action of `space` on `model` for offered loads `loads` (per service of the
/// space, requests/s) and returns the one with the highest reward; ties go to the first.
pub fn best_action(
    model: &dyn Predictor,
    space: &ActionSpace,
    reward: &Reward,
    loads: &[f64],
) -> Result<Best, ModelError> {
    let actions: Vec<Action> = space.actions().collect();
    let predicted = model.predict(loads, &actions)?;
    let mut best: Option<(usize, f64)> = None;
    for (i, (a, d)) in actions.iter().zip(&predicted).enumerate() {
        let carried: Vec<f64> = loads
            .iter()
            .zip(a)
            .map(|(l, s)| l * (1.0 - s.block))
            .collect();
        let d: Vec<Option<f64>> = d.iter().map(|&x| Some(x)).collect();
        let r = reward.of(&carried, &d);
        if best.is_none_or(|(_, b)| r > b) {
            best = Some((i, r));
        }
    }
    let (i, r) = best.expect("a space has at least one action");
    Ok(Best {
        action: actions[i].clone(),
        reward: r,
        predicted_ms: predicted[i].clone(),
    })
}

/// The plans that carry out `action` over `services`: host weights and a blocking fraction for
/// every class. Hosts the service no longer has are left out; a service left with none keeps
/// its plan.
pub fn plans(snap: &Snapshot, services: &[ManagedService], action: &Action) -> PlanUpdate {
    let mut up = PlanUpdate::default();
    for (svc, a) in services.iter().zip(action) {
        let Some(state) = snap.services.get(&svc.name) else {
            continue;
        };
        let present: BTreeSet<&str> = state
            .containers
            .iter()
            .map(|c| c.endpoint.host.as_str())
            .collect();
        let host_weights: BTreeMap<String, f64> = svc
            .hosts
            .iter()
            .zip(&a.shares)
            .filter(|(h, _)| present.contains(h.as_str()))
            .map(|(h, &w)| (h.clone(), w))
            .collect();
        if host_weights.values().all(|&w| w <= 0.0) {
            continue;
        }
        let blocking = if a.block > 0.0 {
            [(
                "*".to_string(),
                Blocking {
                    fraction: a.block,
                    max_in_flight: None,
                },
            )]
            .into()
        } else {
            BTreeMap::new()
        };
        up.services.insert(
            svc.name.clone(),
            ServicePlan {
                host_weights,
                weighted_p2c: true,
                blocking,
                ..Default::default()
            },
        );
    }
    up
}

/// `objective`: the best action on the learned model, every step.
pub struct ObjectivePlanner {
    model: Arc<SystemModel>,
    settings: ObjectiveSettings,
    space: Option<ActionSpace>,
}

impl ObjectivePlanner {
    pub fn new(model: Arc<SystemModel>, settings: ObjectiveSettings) -> Self {
        Self {
            model,
            settings,
            space: None,
        }
    }
}

impl Planner for ObjectivePlanner {
    fn name(&self) -> &str {
        "objective"
    }

    fn plan(&mut self, snap: &Snapshot) -> PlanUpdate {
        let Some((mo, _)) = managed(snap) else {
            return PlanUpdate::default();
        };
        let services = &self.model.services;
        if services
            .iter()
            .any(|s| !snap.services.contains_key(&s.name))
        {
            return PlanUpdate::default();
        }
        if self.space.is_none() {
            match ActionSpace::new(services.clone(), self.settings.levels) {
                Ok(s) => self.space = Some(s),
                Err(_) => return PlanUpdate::default(),
            }
        }
        let space = self.space.as_ref().expect("set above");
        let names = self.model.service_names();
        let reward = Reward::new(&mo, &names, &fallback_bounds(snap), self.settings.steepness);
        let loads: Vec<f64> = names.iter().map(|n| snap.services[n].offered_rps).collect();
        // Nothing offered yet (no reports, or no traffic): every action earns nothing, and the
        // first of the ties would send everything to one host. Leave the plans as they are.
        if loads.iter().all(|&l| l <= 0.0) {
            return PlanUpdate::default();
        }
        match best_action(self.model.as_ref(), space, &reward, &loads) {
            Ok(best) => plans(snap, services, &best.action),
            Err(_) => PlanUpdate::default(),
        }
    }
}

/// `random`: an action drawn uniformly from the same space every step (the paper's baseline).
pub struct RandomPlanner {
    settings: ObjectiveSettings,
    rng: StdRng,
}

impl RandomPlanner {
    pub fn new(settings: ObjectiveSettings) -> Self {
        Self {
            rng: StdRng::seed_from_u64(settings.seed),
            settings,
        }
    }
}

impl Planner for RandomPlanner {
    fn name(&self) -> &str {
        "random"
    }

    fn plan(&mut self, snap: &Snapshot) -> PlanUpdate {
        let Some((_, services)) = managed(snap) else {
            return PlanUpdate::default();
        };
        let Ok(space) = ActionSpace::new(services.clone(), self.settings.levels) else {
            return PlanUpdate::default();
        };
        let action = space.sample(&mut self.rng);
        plans(snap, &services, &action)
    }
}

/// One step's normalised reward.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormalizedStep {
    pub t_s: f64,
    pub obtained: f64,
    pub optimal: f64,
}

/// ANR (eq. 6) of a run and its steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Anr {
    /// Mean of obtained over optimal reward over the steps that could earn a reward.
    pub anr: f64,
    pub steps: Vec<NormalizedStep>,
}

/// Steps whose optimal reward is below this earn nothing whatever the action (no load) and
/// are left out of the mean.
pub const MIN_OPTIMAL: f64 = 1e-6;

/// The ANR of `steps` (services in the model's order) under objective `mo`: the reward obtained
/// from each step's measured carried load and response times over the best reward the model
/// predicts for the step's offered load. `None` when no step could earn a reward. A step can
/// score above 1 where the model underrates what the system did (the paper saw the same).
pub fn anr(
    model: &SystemModel,
    mo: &ManagementObjective,
    fallback_bounds_ms: &BTreeMap<String, f64>,
    settings: &ObjectiveSettings,
    steps: &[TraceStep],
) -> Result<Option<Anr>, ModelError> {
    let space = ActionSpace::new(model.services.clone(), settings.levels)
        .map_err(|e| ModelError::Forest(e.to_string()))?;
    let names = model.service_names();
    let reward = Reward::new(mo, &names, fallback_bounds_ms, settings.steepness);
    let mut out = Vec::with_capacity(steps.len());
    for s in steps {
        let loads: Vec<f64> = s.services.iter().map(|x| x.offered_rps).collect();
        let best = best_action(model, &space, &reward, &loads)?;
        if best.reward < MIN_OPTIMAL {
            continue;
        }
        let carried: Vec<f64> = s.services.iter().map(|x| x.carried_rps).collect();
        let d: Vec<Option<f64>> = s.services.iter().map(|x| x.mean_ms).collect();
        out.push(NormalizedStep {
            t_s: s.t_s,
            obtained: reward.of(&carried, &d),
            optimal: best.reward,
        });
    }
    if out.is_empty() {
        return Ok(None);
    }
    let anr = out.iter().map(|s| s.obtained / s.optimal).sum::<f64>() / out.len() as f64;
    Ok(Some(Anr { anr, steps: out }))
}

#[cfg(test)]
mod tests;
