//! loadshift's policies, sans-IO: the contract between the control plane (or the simulator) and
//! the algorithms, every planner and scaler, the performance table, and the schedule that
//! decides which policy runs when.
//!
//! A [`Planner`] turns a telemetry [`Snapshot`] into a [`PlanUpdate`] (weights, subsets, blocking);
//! a [`Scaler`] turns one into [`ScaleDecision`]s. Both are sans-IO: everything they know arrives
//! in the snapshot (including the clock), so the same implementation runs in `loadshift control`,
//! `loadshift sim` and `loadshift lab`.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::{collections::BTreeMap, time::Duration};

use loadshift_core::{
    endpoint::Endpoint,
    plan::ServicePlan,
    telemetry::{WindowSnapshot, pressure::HostPressure},
};
use serde::{Deserialize, Serialize};

pub mod planners;
pub mod scalers;
pub mod store;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

/// Identity of one proxy (pod name; unique within the mesh).
pub type ProxyId = String;

/// One container of a service as the control plane sees it.
#[derive(Clone, Debug)]
pub struct ContainerState {
    pub endpoint: Endpoint,
    /// Latency of the container's own app, measured by its inbound sidecar (the papers'
    /// "container latency"); `None` until its proxy reports.
    pub inbound: Option<WindowSnapshot>,
    /// Calls to this container as seen by every caller's outbound side, merged.
    pub outbound: WindowSnapshot,
    /// Requests in flight to the container summed over callers.
    pub in_flight: u32,
    /// Mean Peak-EWMA estimate over callers, milliseconds.
    pub ewma_ms: f64,
}

/// Everything known about one service.
#[derive(Clone, Debug, Default)]
pub struct ServiceState {
    pub name: String,
    pub containers: Vec<ContainerState>,
    /// Proxies that call this service (its downstreams), for per-proxy subsets.
    pub callers: Vec<ProxyId>,
    /// Offered load, requests per second, summed over callers (including blocked requests).
    pub offered_rps: f64,
    /// Objective the operator set, if any.
    pub objective: Option<Objective>,
}

/// A service-level objective.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    /// Latency target in milliseconds at `percentile`.
    pub sla_ms: f64,
    /// Percentile of the target, e.g. 95.0.
    pub percentile: f64,
}

/// The input of every planner and scaler.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Clock reading (time since the control plane or simulation started).
    pub now: Duration,
    pub services: BTreeMap<String, ServiceState>,
    /// Host pressure per `host` label.
    pub hosts: BTreeMap<String, HostPressure>,
    /// Placement of every connected proxy, from its Hello: what per-proxy planners need to know
    /// about a caller (`local` reads the zone, `imbres-connect` the host and inbound service).
    pub proxies: BTreeMap<ProxyId, ProxyInfo>,
}

/// Where one proxy runs and what it fronts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyInfo {
    /// Node of the proxy's pod (`host` label).
    pub host: String,
    /// Zone of the proxy's pod.
    pub zone: String,
    /// The service whose container this proxy fronts (its inbound service), if any.
    pub service: Option<String>,
}

/// A planner's output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanUpdate {
    /// Plans that apply to every caller of a service.
    pub services: BTreeMap<String, ServicePlan>,
    /// Plans for one caller only (per-proxy subsets); win over `services` for that proxy.
    pub per_proxy: BTreeMap<ProxyId, BTreeMap<String, ServicePlan>>,
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

/// One scaling decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleDecision {
    pub service: String,
    /// Containers before the decision.
    pub from: u32,
    /// Containers wanted.
    pub to: u32,
    /// Why, in words an operator reads.
    pub reason: String,
}

/// Turns telemetry into container counts. Called every `interval()`.
pub trait Scaler: Send {
    fn name(&self) -> &str;
    /// Default 60 s.
    fn interval(&self) -> Duration {
        Duration::from_secs(60)
    }
    fn scale(&mut self, snap: &Snapshot) -> Vec<ScaleDecision>;
}

/// Carries out scale decisions (dry-run, lab supervisor, Kubernetes).
pub trait Actuator: Send {
    fn name(&self) -> &str;
    /// Applies one decision; an error is logged and reported, never fatal to the loop.
    fn apply(&mut self, d: &ScaleDecision) -> Result<(), String>;
}
