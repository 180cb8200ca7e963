//! Objectives handed to policies: a service's latency objective ([`Objective`]) and an
//! application's management objective ([`ManagementObjective`], Samani & Stadler, seed 004 §II,
//! eq. 1-3). Both are validated where they enter (config, scenario, operator API) with the field,
//! the value and the reason.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A service-level objective.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    /// Latency target in milliseconds at `percentile`.
    pub sla_ms: f64,
    /// Percentile of the target, e.g. 95.0.
    pub percentile: f64,
}

/// A value an objective cannot hold: `field` is the path below the objective.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{field} = {value}: {reason}")]
pub struct BadObjective {
    pub field: String,
    pub value: String,
    pub reason: String,
}

fn bad(field: impl Into<String>, value: impl ToString, reason: &str) -> BadObjective {
    BadObjective {
        field: field.into(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

impl Objective {
    /// `sla_ms` finite and > 0, `percentile` in (0, 100].
    pub fn validate(&self) -> Result<(), BadObjective> {
        if !(self.sla_ms.is_finite() && self.sla_ms > 0.0) {
            return Err(bad("sla_ms", self.sla_ms, "must be finite and > 0"));
        }
        if !(self.percentile > 0.0 && self.percentile <= 100.0) {
            return Err(bad("percentile", self.percentile, "must be in (0, 100]"));
        }
        Ok(())
    }
}

/// What an application's routing and blocking should achieve, with every service's mean response
/// time `d_i` bounded by `O_i` (`bounds_ms`; a service without one there is bounded by its own
/// latency objective's `sla_ms`, and without either it has no bound):
///
/// ```yaml
/// management: { kind: mo1, bounds_ms: { front: 100, search: 250 } }
/// management: { kind: mo2, bounds_ms: { front: 100, search: 250 }, utility: { front: 1, search: 5 } }
/// management: { kind: mo3, bounds_ms: { search: 250 }, favoured: search, protected: front,
///               min_carried_rps: 20 }
/// ```
///
/// MO3 names the favoured service `i`; without it, every service but the protected one is
/// favoured (the paper's two-service case is the same either way).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ManagementObjective {
    /// MO1 (eq. 1): maximise the carried load summed over services, `sum_i l_i^c`.
    Mo1 {
        /// `O_i` per service, milliseconds.
        #[serde(default)]
        bounds_ms: BTreeMap<String, f64>,
    },
    /// MO2 (eq. 2): maximise the sum of utilities `u_i = utility_i * l_i^c` (the paper's
    /// scenario 2 gives service 2 five times service 1's).
    Mo2 {
        /// `O_i` per service, milliseconds.
        #[serde(default)]
        bounds_ms: BTreeMap<String, f64>,
        /// Utility weight per service; a service without one weighs 1.
        #[serde(default)]
        utility: BTreeMap<String, f64>,
    },
    /// MO3 (eq. 3): maximise the carried load of `favoured` while `protected` carries more than
    /// `min_carried_rps` (no starvation).
    Mo3 {
        /// `O_i` per service, milliseconds.
        #[serde(default)]
        bounds_ms: BTreeMap<String, f64>,
        /// Service `i` whose carried load is maximised; `None`: every service but `protected`.
        #[serde(default)]
        favoured: Option<String>,
        /// Service `k` kept from starving.
        protected: String,
        /// `l_min`, requests per second.
        min_carried_rps: f64,
    },
}

impl ManagementObjective {
    /// `mo1`, `mo2` or `mo3`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Mo1 { .. } => "mo1",
            Self::Mo2 { .. } => "mo2",
            Self::Mo3 { .. } => "mo3",
        }
    }

    /// Response-time bounds `O_i` by service.
    pub fn bounds_ms(&self) -> &BTreeMap<String, f64> {
        match self {
            Self::Mo1 { bounds_ms } | Self::Mo2 { bounds_ms, .. } | Self::Mo3 { bounds_ms, .. } => {
                bounds_ms
            }
        }
    }

    /// Every bound finite and > 0; utilities finite and >= 0; MO3's services named and
    /// different, its floor finite and >= 0. `known` lists the services the objective may name
    /// (the application's); an empty list accepts any name.
    pub fn validate(&self, known: &[&str]) -> Result<(), BadObjective> {
        let check_name = |field: &str, name: &str| {
            if name.is_empty() {
                return Err(bad(field, "\"\"", "names no service"));
            }
            if !known.is_empty() && !known.contains(&name) {
                return Err(bad(
                    field,
                    name,
                    &format!("is not a service here; known: {}", known.join(", ")),
                ));
            }
            Ok(())
        };
        for (svc, ms) in self.bounds_ms() {
            check_name(&format!("bounds_ms.{svc}"), svc)?;
            if !(ms.is_finite() && *ms > 0.0) {
                return Err(bad(
                    format!("bounds_ms.{svc}"),
                    ms,
                    "must be finite and > 0",
                ));
            }
        }
        match self {
            Self::Mo1 { .. } => {}
            Self::Mo2 { utility, .. } => {
                for (svc, w) in utility {
                    check_name(&format!("utility.{svc}"), svc)?;
                    if !(w.is_finite() && *w >= 0.0) {
                        return Err(bad(format!("utility.{svc}"), w, "must be finite and >= 0"));
                    }
                }
            }
            Self::Mo3 {
                favoured,
                protected,
                min_carried_rps,
                ..
            } => {
                if let Some(f) = favoured {
                    check_name("favoured", f)?;
                }
                check_name("protected", protected)?;
                if favoured.as_ref() == Some(protected) {
                    return Err(bad(
                        "protected",
                        protected,
                        "must differ from `favoured` (MO3 keeps another service from starving)",
                    ));
                }
                if !(min_carried_rps.is_finite() && *min_carried_rps >= 0.0) {
                    return Err(bad(
                        "min_carried_rps",
                        min_carried_rps,
                        "must be finite and >= 0",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_and_names_the_bad_field() {
        let mo2: ManagementObjective = serde_yaml_ng::from_str(
            "kind: mo2\nbounds_ms: {front: 100, search: 250}\nutility: {search: 5}\n",
        )
        .unwrap();
        assert_eq!(mo2.kind(), "mo2");
        assert_eq!(mo2.bounds_ms()["search"], 250.0);
        assert!(mo2.validate(&["front", "search"]).is_ok());
        let mo3: ManagementObjective = serde_yaml_ng::from_str(
            "{kind: mo3, bounds_ms: {search: 250}, favoured: search, protected: front, min_carried_rps: 20}",
        )
        .unwrap();
        assert!(mo3.validate(&[]).is_ok());
        assert!(serde_yaml_ng::from_str::<ManagementObjective>("{kind: mo4}").is_err());
        assert!(
            serde_yaml_ng::from_str::<ManagementObjective>(
                "{kind: mo1, bounds_ms: {a: 1}, favoured: a}"
            )
            .is_err()
        );

        // Without bounds the services' own objectives bound them.
        assert!(
            ManagementObjective::Mo1 {
                bounds_ms: BTreeMap::new(),
            }
            .validate(&[])
            .is_ok()
        );
        let e = ManagementObjective::Mo1 {
            bounds_ms: [("a".to_string(), -1.0)].into(),
        }
        .validate(&[])
        .unwrap_err();
        assert_eq!(e.to_string(), "bounds_ms.a = -1: must be finite and > 0");
        let e = ManagementObjective::Mo1 {
            bounds_ms: [("x".to_string(), 1.0)].into(),
        }
        .validate(&["a", "b"])
        .unwrap_err();
        assert!(e.to_string().contains("known: a, b"), "{e}");
        let e = ManagementObjective::Mo3 {
            bounds_ms: [("a".to_string(), 1.0)].into(),
            favoured: Some("a".into()),
            protected: "a".into(),
            min_carried_rps: 1.0,
        }
        .validate(&[])
        .unwrap_err();
        assert_eq!(e.field, "protected");
        let e = Objective {
            sla_ms: 10.0,
            percentile: 101.0,
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.to_string(), "percentile = 101: must be in (0, 100]");
    }
}
