//! Planner registry: every planner by its name, so config files, the operator API, `loadshift sim
//! --planner` and the lab all choose planners the same way.

pub mod baselines;
mod even;
pub mod imbres_connect;
pub mod imbres_shift;
pub mod perf_table;
pub mod settings;
mod r#static;

use crate::{Planner, ScopeKind};

pub use baselines::{Connections, Local, Mode};
pub use even::Even;
pub use imbres_connect::ImbresConnect;
pub use imbres_shift::ImbresShift;
pub use settings::{PlannerSettings, build_with};
pub use r#static::Static;

/// A planner name nobody registered.
#[derive(Debug, thiserror::Error)]
#[error("unknown planner {name:?}; known planners: {known}")]
pub struct UnknownPlanner {
    pub name: String,
    pub known: String,
}

/// Names `build` accepts.
pub const NAMES: &[&str] = &[
    "even",
    "imbres-shift",
    "imbres-shift-pure",
    "imbres-connect",
    "static",
    "round-robin",
    "least-request",
    "p2c-ewma",
    "local",
    "random-partial",
    "full",
];

/// How far planner `name` sees ([`crate::schedule`]); `None` for an unknown name.
/// `imbres-connect` is the one application-scoped planner: its connection groups need the
/// performance tables and Alg. 1 shares of the callers' own services.
pub fn scope_kind(name: &str) -> Option<ScopeKind> {
    match name {
        "imbres-connect" => Some(ScopeKind::Application),
        n if NAMES.contains(&n) => Some(ScopeKind::Service),
        _ => None,
    }
}

/// Builds a planner with its defaults (the paper's, except where `PlannerSettings` documents a
/// measured departure).
pub fn build(name: &str) -> Result<Box<dyn Planner>, UnknownPlanner> {
    match name {
        "even" => Ok(Box::new(Even)),
        // Without weights; the control plane builds `Static::new` from the config instead.
        "static" => Ok(Box::new(Static::default())),
        "imbres-shift" => Ok(Box::new(ImbresShift::new(Default::default()))),
        "imbres-shift-pure" => Ok(Box::new(ImbresShift::pure(
            loadshift_core::shift::ShiftParams::paper(),
        ))),
        "imbres-connect" => Ok(Box::new(ImbresConnect::new(Default::default()))),
        "round-robin" => Ok(Box::new(Mode::round_robin())),
        "least-request" => Ok(Box::new(Mode::least_request())),
        "p2c-ewma" => Ok(Box::new(Mode::p2c_ewma())),
        "local" => Ok(Box::new(Local)),
        "random-partial" => Ok(Box::new(Connections::random_partial(
            Default::default(),
            0,
            10,
        ))),
        "full" => Ok(Box::new(Connections::full(Default::default()))),
        _ => Err(UnknownPlanner {
            name: name.to_string(),
            known: NAMES.join(", "),
        }),
    }
}
