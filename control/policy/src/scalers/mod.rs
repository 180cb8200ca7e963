//! Scaler registry: every scaler by its name, chosen per service in the config file or through
//! the operator API, the same way planners are. Tunables come per service as
//! [`ScalerSettings`] (`scaler_settings:` in the control config), each defaulting to its
//! source's value.
//!
//! - Service-scoped: `none` (fixed size), `hpa` (Kubernetes HPA).
//! - Application-scoped (one instance per application, budgeting over the services of it that
//!   chose the scaler): `imbres` (Imbres Alg. 2 + Alg. 3), `queueflower` (QueueFlower Alg. 1),
//!   `avg` (QueueFlower's even-split baseline).

mod app;
mod avg;
mod hpa;
mod imbres;
mod none;
mod queueflower;

use serde::{Deserialize, Serialize};

use crate::{Scaler, ScopeKind};

pub use avg::{Avg, AvgParams};
pub use hpa::{Hpa, HpaParams};
pub use imbres::{Imbres, ImbresParams};
pub use none::NoScaling;
pub use queueflower::{QueueFlower, QueueFlowerParams};

/// A scaler name nobody registered.
#[derive(Debug, thiserror::Error)]
#[error("unknown scaler {name:?}; known scalers: {known}")]
pub struct UnknownScaler {
    pub name: String,
    pub known: String,
}

/// Names `build` accepts.
pub const NAMES: &[&str] = &["none", "hpa", "imbres", "queueflower", "avg"];

/// One line per name of [`NAMES`], for `--help` and error messages.
pub const ABOUT: &[(&str, &str)] = &[
    ("none", "fixed size: never scales"),
    (
        "hpa",
        "the Kubernetes HPA rule on each container's occupancy",
    ),
    (
        "imbres",
        "Imbres Alg. 2 + 3: application containers from the tail against the SLA (per application)",
    ),
    (
        "queueflower",
        "QueueFlower: a fixed budget split by virtual queues (per application)",
    ),
    ("avg", "a fixed budget split evenly (per application)"),
];

/// Scaler tunables of one service.
///
/// ```yaml
/// scaler_settings:
///   hpa: { target_utilization: 0.6, tolerance: 0.1, min_replicas: 1, max_replicas: 10,
///          scale_down_stabilization_ms: 300000, capacity: 0 }
///   imbres: { eta1: 0.5, eta2: 0.2, beta: 0.1, min_replicas: 1, max_replicas: 20, max_step: 0,
///             cooldown_ms: 120000, converged_shift: 0.05, max_busy: 0.7,
///             servers_per_container: 0, interval_ms: 60000 }
///   queueflower: { w1: 1, w2: 1, w3: 1, budget: 0, seed: 0, interval_ms: 60000 }
///   avg: { budget: 0, interval_ms: 60000 }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalerSettings {
    /// `hpa` (Kubernetes HPA defaults).
    pub hpa: HpaParams,
    /// `imbres` (the paper's Alg. 2 values and the operator guards of [`Imbres`]).
    pub imbres: ImbresParams,
    /// `queueflower` (weights 1, budget from the first round).
    pub queueflower: QueueFlowerParams,
    /// `avg` (budget from the first round).
    pub avg: AvgParams,
}

pub use crate::BadSetting;

impl ScalerSettings {
    /// Checks every tunable; the error's field is the path below `scaler_settings`.
    pub fn validate(&self) -> Result<(), BadSetting> {
        /// A section's `check()` error as a [`BadSetting`] under `section`.
        fn at(section: &'static str) -> impl Fn((&str, String, &str)) -> BadSetting {
            move |(field, value, reason): (&str, String, &str)| BadSetting {
                field: format!("{section}.{field}"),
                value,
                reason: reason.to_string(),
            }
        }
        self.hpa.check().map_err(at("hpa"))?;
        self.imbres.check().map_err(at("imbres"))?;
        self.queueflower.check().map_err(at("queueflower"))?;
        self.avg.check().map_err(at("avg"))
    }
}

/// How far scaler `name` sees ([`crate::schedule`]); `None` for an unknown name. `imbres`,
/// `queueflower` and `avg` budget containers over an application, the others scale one service.
pub fn scope_kind(name: &str) -> Option<ScopeKind> {
    match name {
        "imbres" | "queueflower" | "avg" => Some(ScopeKind::Application),
        n if NAMES.contains(&n) => Some(ScopeKind::Service),
        _ => None,
    }
}

/// The balancer scaler `name`'s source ran it with, for comparisons that do not name one:
/// `imbres` with its own shifting and connection grouping (`imbres-connect`), the others with
/// round robin (QueueFlower's and AVG's evaluation, Kubernetes' service proxy for the HPA).
pub fn paper_planner(name: &str) -> &'static str {
    match name {
        "imbres" => "imbres-connect",
        _ => "round-robin",
    }
}

/// Requests container `c` serves at once at 100 % busy: `configured` when > 0, else the CPU
/// limit its sidecar reports in cores (a container limited to 2 cores serves 2 requests at once;
/// the simulator reports a container's `concurrency`), else 1. The analogue of the CPU request
/// the Kubernetes HPA divides usage by.
pub(crate) fn servers(c: &crate::ContainerState, configured: f64) -> f64 {
    if configured > 0.0 {
        return configured;
    }
    c.usage
        .cpu_limit_cores
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(1.0)
}

/// Builds a scaler with its source's defaults.
pub fn build(name: &str) -> Result<Box<dyn Scaler>, UnknownScaler> {
    build_with(name, &ScalerSettings::default())
}

/// Builds a scaler with `settings`.
pub fn build_with(name: &str, settings: &ScalerSettings) -> Result<Box<dyn Scaler>, UnknownScaler> {
    match name {
        "none" => Ok(Box::new(NoScaling)),
        "hpa" => Ok(Box::new(Hpa::new(settings.hpa))),
        "imbres" => Ok(Box::new(Imbres::new(settings.imbres))),
        "queueflower" => Ok(Box::new(QueueFlower::new(settings.queueflower))),
        "avg" => Ok(Box::new(Avg::new(settings.avg))),
        _ => Err(UnknownScaler {
            name: name.to_string(),
            known: NAMES.join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_builds_every_name_with_settings() {
        for n in NAMES {
            assert_eq!(build(n).expect("registered").name(), *n);
        }
        let e = build("magic").err().expect("unknown");
        assert!(e.to_string().contains("hpa"), "{e}");
        let s: ScalerSettings =
            serde_yaml_ng::from_str("hpa: { max_replicas: 3, interval_ms: 2000 }").expect("yaml");
        assert_eq!(s.hpa.max_replicas, 3);
        assert_eq!(
            build_with("hpa", &s).expect("hpa").interval(),
            std::time::Duration::from_secs(2)
        );
        let bad: ScalerSettings = serde_yaml_ng::from_str("hpa: { tolerance: 2 }").expect("yaml");
        let e = bad.validate().expect_err("tolerance 2");
        assert!(e.to_string().starts_with("hpa.tolerance = 2"), "{e}");
        assert!(serde_yaml_ng::from_str::<ScalerSettings>("hpa: { bogus: 1 }").is_err());

        let s: ScalerSettings = serde_yaml_ng::from_str(
            "imbres: { eta1: 0.4, max_step: 2 }\nqueueflower: { budget: 24, seed: 7 }\navg: { budget: 12 }\n",
        )
        .expect("yaml");
        assert_eq!(
            (s.imbres.eta1, s.imbres.eta2, s.imbres.max_step),
            (0.4, 0.2, 2)
        );
        assert_eq!(
            (s.queueflower.budget, s.queueflower.seed, s.queueflower.w1),
            (24, 7, 1.0)
        );
        assert_eq!(s.avg.budget, 12);
        s.validate().expect("valid");
        for (yaml, starts) in [
            (
                "imbres: { eta1: -1 }",
                "imbres.eta1 = -1: must be finite and > 0",
            ),
            ("imbres: { max_replicas: 0 }", "imbres.max_replicas = 0"),
            (
                "imbres: { converged_shift: 2 }",
                "imbres.converged_shift = 2",
            ),
            ("queueflower: { w3: -0.5 }", "queueflower.w3 = -0.5"),
            ("avg: { interval_ms: 0 }", "avg.interval_ms = 0"),
        ] {
            let bad: ScalerSettings = serde_yaml_ng::from_str(yaml).expect("yaml");
            let e = bad.validate().expect_err(yaml).to_string();
            assert!(e.starts_with(starts), "{yaml}: {e}");
        }
        for n in ["imbres", "queueflower", "avg"] {
            assert_eq!(scope_kind(n), Some(ScopeKind::Application), "{n}");
            assert_eq!(
                build_with(n, &ScalerSettings::default())
                    .expect(n)
                    .interval(),
                std::time::Duration::from_secs(60)
            );
        }
        assert_eq!(scope_kind("hpa"), Some(ScopeKind::Service));
        assert_eq!(scope_kind("magic"), None);
    }
}
