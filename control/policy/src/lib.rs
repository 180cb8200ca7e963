//! loadshift's policies, sans-IO: the contract between the control plane (or the simulator) and
//! the algorithms, every planner and scaler, the performance table, and the schedule that
//! decides which policy runs when.
//!
//! A [`Planner`] turns a telemetry [`Snapshot`] into a [`PlanUpdate`] (weights, subsets, blocking);
//! a [`Scaler`] turns one into [`ScaleDecision`]s (replicas, per-container limits, brownout), which
//! an [`Actuator`] carries out. Both are sans-IO: everything they know arrives in the snapshot
//! (including the clock), so the same implementation runs in `loadshift control`, `loadshift sim`
//! and `loadshift lab`, driven by the same [`schedule::Schedule`].
//!
//! - [`snapshot`]: what policies read (services, containers, hosts, proxies, the call graph,
//!   flows, applications) and the view of one scope.
//! - [`objective`]: latency objectives and the management objectives MO1-MO3 (seed 004).
//! - [`decision`]: scale decisions, action kinds and the actuator contract.
//! - [`planners`], [`scalers`]: every algorithm by registry name, with typed settings.
//! - [`registry`]: a policy instance from its [`schedule::TaskSpec`].
//! - [`schedule`]: who runs when, over which view; the one control loop of every host.
//! - [`store`]: the performance table's persistence contract, implemented by the hosts.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use loadshift_core::plan::ServicePlan;

pub mod decision;
pub mod objective;
pub mod planners;
pub mod registry;
pub mod scalers;
pub mod schedule;
pub mod snapshot;
pub mod store;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use decision::{ActionKind, ActuateError, Actuator, ResourceLimits, ScaleDecision, actuate};
pub use objective::{ManagementObjective, Objective};
pub use snapshot::{
    ApplicationState, CallEdge, ContainerState, ContainerUsage, FlowState, ProxyId, ProxyInfo,
    ServiceState, Snapshot,
};

/// The application every service outside the configured ones belongs to.
pub const DEFAULT_APPLICATION: &str = "default";

/// How far a policy sees, as its registry declares ([`planners::scope_kind`],
/// [`scalers::scope_kind`]); the schedule makes one instance per service or per application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeKind {
    /// One instance per service.
    Service,
    /// One instance per application.
    Application,
}

/// A tunable that cannot work: `field` is the path below the settings section
/// (`planner_settings` or `scaler_settings`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{field} = {value}: {reason}")]
pub struct BadSetting {
    pub field: String,
    pub value: String,
    pub reason: String,
}

/// A planner's output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanUpdate {
    /// Plans that apply to every caller of a service.
    pub services: BTreeMap<String, ServicePlan>,
    /// Plans for one caller only (per-proxy subsets); win over `services` for that proxy.
    pub per_proxy: BTreeMap<ProxyId, BTreeMap<String, ServicePlan>>,
}

/// A service's plans in one update: what replaces its plans when the update is applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServicePlans<'a> {
    /// For callers without a per-proxy plan; `None`: the data plane balances on its own.
    pub wide: Option<&'a ServicePlan>,
    /// Per caller.
    pub per_proxy: BTreeMap<&'a str, &'a ServicePlan>,
}

impl PlanUpdate {
    /// Services the update speaks for: named in `services` or in any caller's `per_proxy`. Every
    /// host applies an update the same way: each of these services gets exactly the plans
    /// [`PlanUpdate::for_service`] returns (a per-proxy plan not repeated is withdrawn), and every
    /// other service keeps the plans it had.
    pub fn touched(&self) -> BTreeSet<&str> {
        let mut t: BTreeSet<&str> = self.services.keys().map(String::as_str).collect();
        for plans in self.per_proxy.values() {
            t.extend(plans.keys().map(String::as_str));
        }
        t
    }

    /// The plans of `service` in this update.
    pub fn for_service(&self, service: &str) -> ServicePlans<'_> {
        ServicePlans {
            wide: self.services.get(service),
            per_proxy: self
                .per_proxy
                .iter()
                .filter_map(|(p, m)| Some((p.as_str(), m.get(service)?)))
                .collect(),
        }
    }

    /// Keeps the plans of services `keep` accepts; returns how many plans were dropped.
    pub fn retain_services(&mut self, mut keep: impl FnMut(&str) -> bool) -> usize {
        let before = self.len();
        self.services.retain(|s, _| keep(s));
        for plans in self.per_proxy.values_mut() {
            plans.retain(|s, _| keep(s));
        }
        self.per_proxy.retain(|_, plans| !plans.is_empty());
        before - self.len()
    }

    /// Plans in the update, service-wide and per proxy.
    pub fn len(&self) -> usize {
        self.services.len() + self.per_proxy.values().map(BTreeMap::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Turns telemetry into plans. Called every `interval()`.
pub trait Planner: Send {
    /// Registry name (`even`, `static`, `imbres-shift`, ...).
    fn name(&self) -> &str;
    /// How often the control loop calls `plan` (default 5 s).
    fn interval(&self) -> Duration {
        Duration::from_secs(5)
    }
    /// Plans for the services this planner owns; services absent from the update keep their plan.
    fn plan(&mut self, snap: &Snapshot) -> PlanUpdate;
    /// The performance hash table this planner learns, if any: the host restores it from its
    /// store when the planner is registered and saves what changed after every round.
    fn perf_table(&mut self) -> Option<&mut planners::perf_table::PerfTable> {
        None
    }
}

/// Turns telemetry into scale decisions. Called every `interval()`.
pub trait Scaler: Send {
    /// Registry name (`none`, `hpa`, `imbres`, ...).
    fn name(&self) -> &str;
    /// How often the control loop calls `scale` (default 60 s).
    fn interval(&self) -> Duration {
        Duration::from_secs(60)
    }
    /// Decisions for the services this scaler owns.
    fn scale(&mut self, snap: &Snapshot) -> Vec<ScaleDecision>;
    /// The services this instance owns (its scope's `owns`), told once by the schedule when it
    /// adds the instance; ignored by default. An application-scoped scaler that budgets
    /// containers over its services needs them: its view also holds the application's services
    /// that chose another scaler.
    fn set_owned(&mut self, _services: &BTreeSet<String>) {}
    /// Whether the scaler learns from every snapshot, not only those of its own rounds (default
    /// false). When true, the schedule calls [`Scaler::observe`] with the task's view at every
    /// round the scaler is not due in, so it sees snapshots at the planners' rate.
    fn observes(&self) -> bool {
        false
    }
    /// Folds in a snapshot of a round the scaler is not due in (see [`Scaler::observes`]); a
    /// due scaler observes inside `scale`. Default: nothing.
    fn observe(&mut self, _snap: &Snapshot) {}
}

#[cfg(test)]
mod about_tests {
    /// Every registered name has one line of `--help`, and nothing else does.
    #[test]
    fn every_name_is_described_once() {
        for (names, about) in [
            (crate::planners::NAMES, crate::planners::ABOUT),
            (crate::scalers::NAMES, crate::scalers::ABOUT),
        ] {
            let described: Vec<&str> = about.iter().map(|(n, _)| *n).collect();
            assert_eq!(described, names);
            assert!(
                about
                    .iter()
                    .all(|(_, a)| !a.is_empty() && !a.contains('\n'))
            );
        }
    }
}
