//! Baseline planners, the comparison in every benchmark (SPEC §5 item 10, seed 002 §6.4, seed 000
//! "Local"):
//!
//! - `round-robin`: every service on the data plane's round-robin mode (no weights);
//! - `least-request`: every service on least-request (two random choices, fewer in flight wins);
//! - `p2c-ewma`: every service on P2C over Peak-EWMA, the data plane's own default without a plan;
//! - `prequal`: every service on Prequal's hot-cold rule over the endpoints' server-reported load
//!   (`loadshift_core::balance::prequal`, Wydrowski et al., NSDI 2024);
//! - `local`: each caller proxy sends only to containers in its own zone (when the zone has any;
//!   otherwise it keeps the default over all containers);
//! - `random-partial`: each caller connects to 10 containers chosen uniformly at random (seeded,
//!   stable across plans: the top 10 of a seeded hash), as the Alibaba practice the Imbres paper
//!   uses as its partial-connection baseline (§2.1.1, §6.4 "Partially");
//! - `full`: each caller connects to every container (§6.4 "Fully").
//!
//! `random-partial` and `full` isolate the connection strategy, as the paper's ablation does: both
//! run the same Alg. 1 shares as `imbres-shift-pure` (within a random subset, a caller splits its
//! traffic in proportion to its containers' shares).

use std::collections::BTreeMap;

use loadshift_core::{
    balance::subset::rendezvous,
    plan::{Algorithm, ServicePlan, SubsetEntry},
    shift::ShiftParams,
};

use super::imbres_shift::Shifters;
use crate::{PlanUpdate, Planner, Snapshot};

/// Every service with containers gets the same plan.
fn uniform(snap: &Snapshot, plan: &ServicePlan) -> PlanUpdate {
    let services = snap
        .services
        .iter()
        .filter(|(_, s)| !s.containers.is_empty())
        .map(|(name, _)| (name.clone(), plan.clone()))
        .collect();
    PlanUpdate {
        services,
        per_proxy: BTreeMap::new(),
    }
}

/// A data-plane balancing mode as a planner: `round-robin`, `least-request`, `p2c-ewma` or
/// `prequal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    name: &'static str,
    algorithm: Algorithm,
}

impl Mode {
    pub fn round_robin() -> Self {
        Self {
            name: "round-robin",
            algorithm: Algorithm::RoundRobin,
        }
    }

    pub fn least_request() -> Self {
        Self {
            name: "least-request",
            algorithm: Algorithm::LeastRequest,
        }
    }

    pub fn p2c_ewma() -> Self {
        Self {
            name: "p2c-ewma",
            algorithm: Algorithm::P2cEwma,
        }
    }

    pub fn prequal() -> Self {
        Self {
            name: "prequal",
            algorithm: Algorithm::Prequal,
        }
    }
}

impl Planner for Mode {
    fn name(&self) -> &str {
        self.name
    }

    fn plan(&mut self, snap: &Snapshot) -> PlanUpdate {
        let plan = ServicePlan {
            algorithm: self.algorithm,
            ..Default::default()
        };
        uniform(snap, &plan)
    }
}

/// `local`: same-zone only.
#[derive(Clone, Copy, Debug, Default)]
pub struct Local;

impl Planner for Local {
    fn name(&self) -> &str {
        "local"
    }

    fn plan(&mut self, snap: &Snapshot) -> PlanUpdate {
        let mut up = uniform(snap, &ServicePlan::default());
        for (name, svc) in &snap.services {
            for caller in &svc.callers {
                let Some(info) = snap.proxies.get(caller) else {
                    continue;
                };
                if svc.containers.iter().any(|c| c.endpoint.zone == info.zone) {
                    let plan = ServicePlan {
                        zone_weights: [(info.zone.clone(), 1.0)].into(),
                        ..Default::default()
                    };
                    up.per_proxy
                        .entry(caller.clone())
                        .or_default()
                        .insert(name.clone(), plan);
                }
            }
        }
        up
    }
}

/// Connection strategy of [`Connections`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    Full,
    RandomPartial { seed: u64, per_caller: usize },
}

/// `full` and `random-partial`: Alg. 1 shares over full or random partial connections.
#[derive(Clone, Debug)]
pub struct Connections {
    strategy: Strategy,
    shifters: Shifters,
}

impl Connections {
    /// `full`: every caller may use every container, weighted by the Alg. 1 shares.
    pub fn full(params: ShiftParams) -> Self {
        Self {
            strategy: Strategy::Full,
            shifters: Shifters::new(params),
        }
    }

    /// `random-partial`: each caller gets `per_caller` (paper: 10) containers drawn by a hash
    /// seeded with `seed`.
    pub fn random_partial(params: ShiftParams, seed: u64, per_caller: usize) -> Self {
        Self {
            strategy: Strategy::RandomPartial {
                seed,
                per_caller: per_caller.max(1),
            },
            shifters: Shifters::new(params),
        }
    }
}

impl Planner for Connections {
    fn name(&self) -> &str {
        match self.strategy {
            Strategy::Full => "full",
            Strategy::RandomPartial { .. } => "random-partial",
        }
    }

    fn interval(&self) -> std::time::Duration {
        self.shifters.params().interval()
    }

    fn plan(&mut self, snap: &Snapshot) -> PlanUpdate {
        self.shifters.step_all(snap);
        let mut up = PlanUpdate::default();
        for (name, svc) in &snap.services {
            let Some(sh) = self.shifters.get(name) else {
                continue;
            };
            if sh.shares().is_empty() {
                continue;
            }
            up.services.insert(
                name.clone(),
                ServicePlan {
                    host_weights: sh.shares().clone(),
                    ..Default::default()
                },
            );
            let Strategy::RandomPartial { seed, per_caller } = self.strategy else {
                continue;
            };
            let keys: Vec<&str> = svc.containers.iter().map(|c| c.endpoint.key()).collect();
            for caller in &svc.callers {
                let chosen = rendezvous(&format!("{seed}/{caller}"), &keys, per_caller);
                let subset = chosen
                    .into_iter()
                    .map(|i| {
                        let c = &svc.containers[i];
                        SubsetEntry {
                            endpoint: c.endpoint.key().to_string(),
                            share: sh.container_share(&c.endpoint.host).unwrap_or(0.0),
                        }
                    })
                    .collect();
                let plan = ServicePlan {
                    subset,
                    ..Default::default()
                };
                up.per_proxy
                    .entry(caller.clone())
                    .or_default()
                    .insert(name.clone(), plan);
            }
        }
        up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{container, snapshot};
    use crate::{ProxyInfo, ServiceState};

    fn service(n: u16, callers: &[&str]) -> ServiceState {
        ServiceState {
            name: "s".into(),
            containers: (0..n)
                .map(|i| {
                    let mut c = container(1000 + i, &format!("h{}", i % 4), 10.0, 100);
                    c.endpoint.zone = format!("z{}", i % 2);
                    c
                })
                .collect(),
            callers: callers.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn registry_builds_every_listed_name() {
        for &name in crate::planners::NAMES {
            if crate::planners::NEED_FILES.contains(&name) {
                continue;
            }
            let p = crate::planners::build(name).unwrap();
            assert_eq!(p.name(), name);
        }
        assert!(crate::planners::build("nope").is_err());
    }

    #[test]
    fn modes_set_the_algorithm_on_every_service() {
        let snap = snapshot(vec![service(4, &[])]);
        for (mut p, alg) in [
            (Mode::round_robin(), Algorithm::RoundRobin),
            (Mode::least_request(), Algorithm::LeastRequest),
            (Mode::p2c_ewma(), Algorithm::P2cEwma),
            (Mode::prequal(), Algorithm::Prequal),
        ] {
            let up = p.plan(&snap);
            assert_eq!(up.services["s"].algorithm, alg, "{}", p.name());
            assert!(up.services["s"].resolve(&[]).is_none(), "no weights");
        }
    }

    #[test]
    fn local_keeps_callers_in_their_zone() {
        let mut snap = snapshot(vec![service(4, &["p1", "p2", "p3"])]);
        let info = |zone: &str| ProxyInfo {
            host: "hx".into(),
            zone: zone.into(),
            service: None,
        };
        snap.proxies = std::sync::Arc::new(
            [
                ("p1".to_string(), info("z1")),
                ("p2".to_string(), info("z0")),
                ("p3".to_string(), info("elsewhere")),
            ]
            .into(),
        );
        let up = Local.plan(&snap);
        assert_eq!(
            up.per_proxy["p1"]["s"].zone_weights,
            [("z1".into(), 1.0)].into()
        );
        assert_eq!(
            up.per_proxy["p2"]["s"].zone_weights,
            [("z0".into(), 1.0)].into()
        );
        assert!(
            !up.per_proxy.contains_key("p3"),
            "no container in its zone: default"
        );
        let eps: Vec<_> = snap.services["s"]
            .containers
            .iter()
            .map(|c| c.endpoint.clone())
            .collect();
        let w = up.per_proxy["p1"]["s"].resolve(&eps).unwrap().weights;
        assert_eq!(w, vec![0.0, 0.5, 0.0, 0.5]);
    }

    #[test]
    fn random_partial_gives_each_caller_ten_stable_seeded_containers() {
        let callers: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
        let refs: Vec<&str> = callers.iter().map(String::as_str).collect();
        let snap = snapshot(vec![service(40, &refs)]);
        let mut p = Connections::random_partial(ShiftParams::default(), 7, 10);
        let a = p.plan(&snap);
        let b = p.plan(&snap);
        let mut used = std::collections::BTreeSet::new();
        for c in &callers {
            let sa = &a.per_proxy[c]["s"].subset;
            assert_eq!(sa.len(), 10);
            let ka: Vec<_> = sa.iter().map(|e| &e.endpoint).collect();
            let kb: Vec<_> = b.per_proxy[c]["s"]
                .subset
                .iter()
                .map(|e| &e.endpoint)
                .collect();
            assert_eq!(ka, kb, "stable across plans");
            used.extend(sa.iter().map(|e| e.endpoint.clone()));
            // Equal latency everywhere: equal shares.
            assert!(sa.iter().all(|e| (e.share - 1.0 / 40.0).abs() < 1e-12));
        }
        assert!(
            used.len() > 30,
            "callers spread over containers: {}",
            used.len()
        );
        let other = Connections::random_partial(ShiftParams::default(), 8, 10).plan(&snap);
        assert_ne!(
            other.per_proxy["p0"]["s"], a.per_proxy["p0"]["s"],
            "seed matters"
        );
    }

    #[test]
    fn full_uses_every_container_with_shift_weights() {
        let snap = snapshot(vec![service(8, &["p1"])]);
        let mut p = Connections::full(ShiftParams::default());
        let up = p.plan(&snap);
        assert!(up.per_proxy.is_empty());
        assert_eq!(up.services["s"].host_weights.len(), 4);
        assert!(!up.services["s"].weighted_p2c);
        assert_eq!(p.name(), "full");
    }
}
