//! The plan a proxy applies: per service, endpoint weights, a connection subset with shares, and
//! blocking per priority class.
//!
//! This is the one plan type of the product: the control plane sends it (as `loadshift.v1.Plan`,
//! converted in `control_client`), the file source loads it, `/plan` shows it, and the simulator
//! feeds it to the same balancer. A plan is validated against the endpoints the proxy knows before
//! it is swapped in; an invalid plan is refused whole and the last good one stays.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;

/// A versioned set of per-service plans.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Monotonic version chosen by the plan's author; echoed in ACK / NACK.
    #[serde(default)]
    pub version: u64,
    /// Per outbound service. A service missing here runs on the data plane's default (P2C over
    /// Peak-EWMA among all healthy endpoints, no blocking).
    #[serde(default)]
    pub services: BTreeMap<String, ServicePlan>,
}

/// What one service's traffic should look like.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePlan {
    /// Weights keyed by endpoint address (`ip:port`). Relative; need not sum to 1.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoint_weights: BTreeMap<String, f64>,
    /// Weights per `host` label, split equally over the endpoints on that host.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_weights: BTreeMap<String, f64>,
    /// Weights per `zone` label, split equally over the endpoints in that zone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zone_weights: BTreeMap<String, f64>,
    /// Explicit connection subset: the only endpoints this proxy may connect to, each with its
    /// share of this proxy's traffic. Takes precedence over weights when non-empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subset: Vec<SubsetEntry>,
    /// Without an explicit subset: connect to at most `k` endpoints chosen by rendezvous hashing of
    /// this proxy's identity. `None` or 0 means all endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset_size: Option<u32>,
    /// Use weighted P2C over Peak-EWMA inside the weights (two candidates drawn by weight, the one
    /// with the lower load estimate wins) instead of drawing by weight alone. Default false.
    #[serde(default)]
    pub weighted_p2c: bool,
    /// How endpoints are picked among the eligible ones (default `weighted`).
    #[serde(default, skip_serializing_if = "Algorithm::is_default")]
    pub algorithm: Algorithm,
    /// Blocking per priority class (value of the class header; `"*"` matches every class that has
    /// no entry of its own).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blocking: BTreeMap<String, Blocking>,
    /// The control plane's revision of this service's plan when it last changed: the number
    /// `ctl status` shows and the control plane's events carry. 0 for plans from a file or the
    /// proxy's own shifter. Not part of what the plan means: see [`ServicePlan::same_as`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Selection algorithm of a service. Eligibility (explicit subset, endpoints with weight, or the
/// rendezvous subset of `subset_size`) is the same for every algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Draw by the plan's weights (weighted P2C with `weighted_p2c`); without weights, P2C over
    /// Peak-EWMA. The default.
    #[default]
    Weighted,
    /// Cycle through the eligible endpoints in order, ignoring weights.
    RoundRobin,
    /// Two random eligible candidates, the one with fewer requests in flight wins (Envoy's
    /// least-request with two choices), ignoring weights.
    LeastRequest,
    /// P2C over Peak-EWMA among the eligible endpoints, ignoring weights.
    P2cEwma,
    /// Prequal's hot-cold rule over a pool of the endpoints' server-reported requests in flight
    /// and latency ([`crate::balance::prequal`]). With weights (a shifting planner's shares), two
    /// candidates are drawn by weight and the hot-cold rule settles between them.
    Prequal,
}

impl Algorithm {
    /// True for `weighted` (lets plans omit the field).
    pub fn is_default(&self) -> bool {
        *self == Self::Weighted
    }
}

/// One endpoint of an explicit subset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsetEntry {
    /// Endpoint address (`ip:port`), must be a known endpoint of the service.
    pub endpoint: String,
    /// Share of this proxy's requests for the service; relative, must be finite and >= 0.
    pub share: f64,
}

/// Admission control for one priority class.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blocking {
    /// Fraction of requests refused with 503, in [0, 1]. Default 0.
    #[serde(default)]
    pub fraction: f64,
    /// Cap on requests of this class in flight through this proxy; `None` = no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
}

/// Why a plan was refused. The message names the service, the field and the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("service {service:?}: unknown service (known: {known})")]
    UnknownService { service: String, known: String },
    #[error("service {service:?}: {field}[{key:?}] = {value}: weight must be finite and >= 0")]
    BadWeight {
        service: String,
        field: &'static str,
        key: String,
        value: f64,
    },
    #[error("service {service:?}: {field}[{key:?}]: no endpoint of the service has that {label}")]
    UnknownKey {
        service: String,
        field: &'static str,
        key: String,
        label: &'static str,
    },
    #[error("service {service:?}: {field}: all weights are 0, nothing could be routed")]
    AllZero {
        service: String,
        field: &'static str,
    },
    #[error("service {service:?}: {field} sum to more than {MAX_WEIGHT_SUM}; scale them down")]
    SumTooLarge {
        service: String,
        field: &'static str,
    },
    #[error("service {service:?}: blocking[{class:?}].fraction = {value}: must be in [0, 1]")]
    BadFraction {
        service: String,
        class: String,
        value: f64,
    },
    #[error("service {service:?}: subset has endpoint {endpoint:?} twice")]
    DuplicateSubset { service: String, endpoint: String },
}

/// Endpoint weights a balancer can use directly: one weight per endpoint index of the service,
/// zero for endpoints outside the subset or without weight.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedWeights {
    /// Indexed like the service's endpoint list.
    pub weights: Vec<f64>,
    /// True when the plan restricts connections to the endpoints with a weight > 0.
    pub restricts_connections: bool,
}

impl Plan {
    /// Checks every service against the endpoints the proxy knows.
    pub fn validate(&self, services: &HashMap<String, Vec<Endpoint>>) -> Result<(), PlanError> {
        for (name, sp) in &self.services {
            let Some(eps) = services.get(name) else {
                let mut known: Vec<&str> = services.keys().map(String::as_str).collect();
                known.sort_unstable();
                return Err(PlanError::UnknownService {
                    service: name.clone(),
                    known: known.join(", "),
                });
            };
            sp.validate(name, eps)?;
        }
        Ok(())
    }
}

/// Largest sum of one service's weights (or shares). Weights are relative; bounding their sum
/// keeps every cumulative sum the balancers build finite (two weights of 1.7e308 overflow to
/// infinity and would skew the split), with room to spare for any meaningful ratio.
pub const MAX_WEIGHT_SUM: f64 = 1e12;

impl ServicePlan {
    /// Whether two plans route and block the same way, whatever their revisions.
    pub fn same_as(&self, other: &ServicePlan) -> bool {
        let Self {
            endpoint_weights,
            host_weights,
            zone_weights,
            subset,
            subset_size,
            weighted_p2c,
            algorithm,
            blocking,
            revision: _,
        } = self;
        *endpoint_weights == other.endpoint_weights
            && *host_weights == other.host_weights
            && *zone_weights == other.zone_weights
            && *subset == other.subset
            && *subset_size == other.subset_size
            && *weighted_p2c == other.weighted_p2c
            && *algorithm == other.algorithm
            && *blocking == other.blocking
    }

    /// Checks weights, subset and fractions against the service's endpoints.
    pub fn validate(&self, service: &str, eps: &[Endpoint]) -> Result<(), PlanError> {
        let err_weight = |field, key: &str, value: f64| PlanError::BadWeight {
            service: service.to_string(),
            field,
            key: key.to_string(),
            value,
        };
        let unknown = |field, key: &str, label| PlanError::UnknownKey {
            service: service.to_string(),
            field,
            key: key.to_string(),
            label,
        };
        let check = |field: &'static str,
                     map: &BTreeMap<String, f64>,
                     label: &'static str,
                     has: &dyn Fn(&Endpoint, &str) -> bool|
         -> Result<(), PlanError> {
            for (k, &w) in map {
                if !w.is_finite() || w < 0.0 {
                    return Err(err_weight(field, k, w));
                }
                if !eps.iter().any(|e| has(e, k)) {
                    return Err(unknown(field, k, label));
                }
            }
            if !map.is_empty() && map.values().all(|&w| w == 0.0) {
                return Err(PlanError::AllZero {
                    service: service.to_string(),
                    field,
                });
            }
            if map.values().sum::<f64>() > MAX_WEIGHT_SUM {
                return Err(PlanError::SumTooLarge {
                    service: service.to_string(),
                    field,
                });
            }
            Ok(())
        };
        check(
            "endpoint_weights",
            &self.endpoint_weights,
            "address",
            &|e, k| e.key() == k,
        )?;
        check("host_weights", &self.host_weights, "host label", &|e, k| {
            e.host == k
        })?;
        check("zone_weights", &self.zone_weights, "zone label", &|e, k| {
            e.zone == k
        })?;
        let mut seen = std::collections::HashSet::new();
        for s in &self.subset {
            if !s.share.is_finite() || s.share < 0.0 {
                return Err(err_weight("subset", &s.endpoint, s.share));
            }
            if !eps.iter().any(|e| e.key() == s.endpoint) {
                return Err(unknown("subset", &s.endpoint, "address"));
            }
            if !seen.insert(s.endpoint.as_str()) {
                return Err(PlanError::DuplicateSubset {
                    service: service.to_string(),
                    endpoint: s.endpoint.clone(),
                });
            }
        }
        if !self.subset.is_empty() && self.subset.iter().all(|s| s.share == 0.0) {
            return Err(PlanError::AllZero {
                service: service.to_string(),
                field: "subset",
            });
        }
        if self.subset.iter().map(|s| s.share).sum::<f64>() > MAX_WEIGHT_SUM {
            return Err(PlanError::SumTooLarge {
                service: service.to_string(),
                field: "subset",
            });
        }
        for (class, b) in &self.blocking {
            if !b.fraction.is_finite() || !(0.0..=1.0).contains(&b.fraction) {
                return Err(PlanError::BadFraction {
                    service: service.to_string(),
                    class: class.clone(),
                    value: b.fraction,
                });
            }
        }
        Ok(())
    }

    /// Expands subset / endpoint / host / zone weights into one weight per endpoint. The first
    /// non-empty source wins in that order; `None` when the plan sets no weights at all (the data
    /// plane then balances on its own).
    pub fn resolve(&self, eps: &[Endpoint]) -> Option<ResolvedWeights> {
        if !self.subset.is_empty() {
            let weights = eps
                .iter()
                .map(|e| {
                    self.subset
                        .iter()
                        .find(|s| s.endpoint == e.key())
                        .map_or(0.0, |s| s.share)
                })
                .collect();
            return Some(ResolvedWeights {
                weights,
                restricts_connections: true,
            });
        }
        let weights: Vec<f64> = if !self.endpoint_weights.is_empty() {
            eps.iter()
                .map(|e| self.endpoint_weights.get(e.key()).copied().unwrap_or(0.0))
                .collect()
        } else if !self.host_weights.is_empty() {
            spread(eps, &self.host_weights, |e| &e.host)
        } else if !self.zone_weights.is_empty() {
            spread(eps, &self.zone_weights, |e| &e.zone)
        } else {
            return None;
        };
        Some(ResolvedWeights {
            weights,
            restricts_connections: false,
        })
    }

    /// The blocking entry for a class: its own, else the `"*"` entry.
    pub fn blocking_for(&self, class: &str) -> Option<&Blocking> {
        self.blocking.get(class).or_else(|| self.blocking.get("*"))
    }
}

/// Splits a group weight equally over the group's endpoints.
fn spread(
    eps: &[Endpoint],
    group_weights: &BTreeMap<String, f64>,
    label: impl Fn(&Endpoint) -> &str,
) -> Vec<f64> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for e in eps {
        *counts.entry(label(e)).or_default() += 1;
    }
    eps.iter()
        .map(|e| {
            let l = label(e);
            let w = group_weights.get(l).copied().unwrap_or(0.0);
            // A group label in the map always has at least this endpoint counted.
            w / counts.get(l).copied().unwrap_or(1) as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps() -> Vec<Endpoint> {
        vec![
            Endpoint::new("127.0.0.1:1".parse().unwrap(), "h1", "z1", "c1"),
            Endpoint::new("127.0.0.1:2".parse().unwrap(), "h1", "z1", "c2"),
            Endpoint::new("127.0.0.1:3".parse().unwrap(), "h2", "z2", "c3"),
        ]
    }

    #[test]
    fn host_weights_split_equally_within_host() {
        let sp = ServicePlan {
            host_weights: [("h1".into(), 0.6), ("h2".into(), 0.4)].into(),
            ..Default::default()
        };
        sp.validate("s", &eps()).unwrap();
        let r = sp.resolve(&eps()).unwrap();
        assert_eq!(r.weights, vec![0.3, 0.3, 0.4]);
        assert!(!r.restricts_connections);
    }

    #[test]
    fn subset_wins_and_restricts() {
        let sp = ServicePlan {
            subset: vec![SubsetEntry {
                endpoint: "127.0.0.1:3".into(),
                share: 1.0,
            }],
            host_weights: [("h1".into(), 1.0)].into(),
            ..Default::default()
        };
        let r = sp.resolve(&eps()).unwrap();
        assert_eq!(r.weights, vec![0.0, 0.0, 1.0]);
        assert!(r.restricts_connections);
    }

    #[test]
    fn rejects_bad_values_with_field_and_value() {
        let sp = ServicePlan {
            endpoint_weights: [("127.0.0.1:1".into(), f64::NAN)].into(),
            ..Default::default()
        };
        let e = sp.validate("s", &eps()).unwrap_err().to_string();
        assert!(e.contains("endpoint_weights") && e.contains("NaN"), "{e}");

        let sp = ServicePlan {
            subset: vec![SubsetEntry {
                endpoint: "10.0.0.9:1".into(),
                share: 1.0,
            }],
            ..Default::default()
        };
        let e = sp.validate("s", &eps()).unwrap_err().to_string();
        assert!(e.contains("10.0.0.9:1"), "{e}");

        let sp = ServicePlan {
            blocking: [(
                "gold".into(),
                Blocking {
                    fraction: 1.5,
                    max_in_flight: None,
                },
            )]
            .into(),
            ..Default::default()
        };
        let e = sp.validate("s", &eps()).unwrap_err().to_string();
        assert!(e.contains("gold") && e.contains("1.5"), "{e}");

        let plan = Plan {
            version: 1,
            services: [("nope".into(), ServicePlan::default())].into(),
        };
        let known: HashMap<String, Vec<Endpoint>> = [("s".to_string(), eps())].into();
        let e = plan.validate(&known).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");

        // Each weight is finite but their sum is not: refused, not split 60:0.
        let huge = ServicePlan {
            endpoint_weights: [
                ("127.0.0.1:1".into(), 1.7e308),
                ("127.0.0.1:2".into(), 1.7e308),
            ]
            .into(),
            ..Default::default()
        };
        let e = huge.validate("s", &eps()).unwrap_err().to_string();
        assert!(e.contains("endpoint_weights sum to more than"), "{e}");
    }

    #[test]
    fn blocking_falls_back_to_wildcard() {
        let sp = ServicePlan {
            blocking: [(
                "*".into(),
                Blocking {
                    fraction: 0.5,
                    max_in_flight: None,
                },
            )]
            .into(),
            ..Default::default()
        };
        assert_eq!(sp.blocking_for("bronze").map(|b| b.fraction), Some(0.5));
    }
}
