//! A policy instance from its [`TaskSpec`]: the planner or scaler registered under the spec's
//! name, built with the spec's settings. Hosts call [`build`] from [`Schedule::sync`]; a host with
//! planners of its own (the control plane's `static`, which takes its weights from the config)
//! builds those itself and passes every other spec here.
//!
//! [`Schedule::sync`]: crate::schedule::Schedule::sync

use crate::{
    planners::{self, settings::SettingsError},
    scalers::{self, UnknownScaler},
    schedule::{PolicyBox, Role, TaskSpec},
};

/// Why a policy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Planner(#[from] SettingsError),
    #[error(transparent)]
    Scaler(#[from] UnknownScaler),
}

/// Builds the policy `spec` names.
pub fn build(spec: &TaskSpec) -> Result<PolicyBox, BuildError> {
    Ok(match spec.role {
        Role::Planner => {
            PolicyBox::Planner(planners::build_with(&spec.name, &spec.planner_settings)?)
        }
        Role::Scaler => PolicyBox::Scaler(scalers::build_with(&spec.name, &spec.scaler_settings)?),
    })
}
