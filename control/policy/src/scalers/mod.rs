//! Scaler registry: every scaler by its name, chosen per service in the config file or through
//! the operator API, the same way planners are. Tunables come per service as
//! [`ScalerSettings`] (`scaler_settings:` in the control config), each defaulting to its
//! source's value.

mod hpa;
mod none;

use serde::{Deserialize, Serialize};

use crate::{Scaler, ScopeKind};

pub use hpa::{Hpa, HpaParams};
pub use none::NoScaling;

/// A scaler name nobody registered.
#[derive(Debug, thiserror::Error)]
#[error("unknown scaler {name:?}; known scalers: {known}")]
pub struct UnknownScaler {
    pub name: String,
    pub known: String,
}

/// Names `build` accepts.
pub const NAMES: &[&str] = &["none", "hpa"];

/// Scaler tunables of one service.
///
/// ```yaml
/// scaler_settings:
///   hpa: { target_utilization: 0.6, tolerance: 0.1, min_replicas: 1, max_replicas: 10,
///          scale_down_stabilization_ms: 300000, capacity: 1 }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalerSettings {
    /// `hpa` (Kubernetes HPA defaults).
    pub hpa: HpaParams,
}

pub use crate::BadSetting;

impl ScalerSettings {
    /// Checks every tunable.
    pub fn validate(&self) -> Result<(), BadSetting> {
        self.hpa
            .check()
            .map_err(|(field, value, reason)| BadSetting {
                field: format!("hpa.{field}"),
                value,
                reason: reason.to_string(),
            })
    }
}

/// How far scaler `name` sees ([`crate::schedule`]); `None` for an unknown name. Every scaler
/// registered so far scales one service.
pub fn scope_kind(name: &str) -> Option<ScopeKind> {
    NAMES.contains(&name).then_some(ScopeKind::Service)
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
    }
}
