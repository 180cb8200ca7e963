//! Planner registry: every planner by its name, so config files, the operator API, `loadshift sim
//! --planner` and the lab all choose planners the same way.

pub mod baselines;
mod even;
pub mod imbres_connect;
pub mod imbres_shift;
pub mod objective;
pub mod perf_table;
pub mod settings;
mod r#static;

use crate::{Planner, ScopeKind};

pub use baselines::{Connections, Local, Mode};
pub use even::Even;
pub use imbres_connect::ImbresConnect;
pub use imbres_shift::{ImbresShift, InnerPick};
pub use objective::{ObjectivePlanner, ObjectiveSettings, RandomPlanner};
pub use settings::{PlannerSettings, SettingsError, build_with};
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
    "prequal",
    "local",
    "random-partial",
    "full",
    "objective",
    "random",
];

/// Planners that cannot be built without a file their settings name (`objective`'s model).
pub const NEED_FILES: &[&str] = &["objective"];

/// One line per name of [`NAMES`], for `--help` and error messages.
pub const ABOUT: &[(&str, &str)] = &[
    (
        "even",
        "equal weight on every container (the papers' Even baseline)",
    ),
    (
        "imbres-shift",
        "Imbres Alg. 1: host shares from measured container latency, weighted P2C inside them",
    ),
    (
        "imbres-shift-pure",
        "Imbres Alg. 1 as published: host shares as weights only",
    ),
    (
        "imbres-connect",
        "Imbres Alg. 1 plus grouping-based partial connections (per application)",
    ),
    ("static", "fixed weights from the config file"),
    ("round-robin", "the data plane's round robin, no weights"),
    ("least-request", "two random choices, fewer in flight wins"),
    ("p2c-ewma", "P2C over Peak-EWMA, the data plane's default"),
    (
        "prequal",
        "Prequal's hot-cold rule over server-reported requests in flight and latency",
    ),
    (
        "local",
        "each caller sends only to containers in its own zone",
    ),
    (
        "random-partial",
        "Alg. 1 shares within 10 containers per caller chosen at random",
    ),
    (
        "full",
        "Alg. 1 shares with every caller connected to every container",
    ),
    (
        "objective",
        "Samani & Stadler: routing and blocking for the management objective on a learned model",
    ),
    (
        "random",
        "routing and blocking drawn uniformly from the objective planner's action space",
    ),
];

/// How far planner `name` sees ([`crate::schedule`]); `None` for an unknown name.
/// Application-scoped: `imbres-connect` (its connection groups need the performance tables and
/// Alg. 1 shares of the callers' own services), `objective` and `random` (one action over every
/// service the application's management objective names).
pub fn scope_kind(name: &str) -> Option<ScopeKind> {
    match name {
        "imbres-connect" | "objective" | "random" => Some(ScopeKind::Application),
        n if NAMES.contains(&n) => Some(ScopeKind::Service),
        _ => None,
    }
}

/// Builds a planner with its defaults (the paper's, except where `PlannerSettings` documents a
/// measured departure). Those of [`NEED_FILES`] need settings naming their file: [`build_with`].
pub fn build(name: &str) -> Result<Box<dyn Planner>, SettingsError> {
    build_with(name, &PlannerSettings::default())
}

/// Whether `name` is a registered planner.
pub fn check(name: &str) -> Result<(), UnknownPlanner> {
    if NAMES.contains(&name) {
        Ok(())
    } else {
        Err(UnknownPlanner {
            name: name.to_string(),
            known: NAMES.join(", "),
        })
    }
}

/// The planners without tunables.
pub(crate) fn build_plain(name: &str) -> Result<Box<dyn Planner>, UnknownPlanner> {
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
        "prequal" => Ok(Box::new(Mode::prequal())),
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
