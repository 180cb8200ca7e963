//! The input of every planner and scaler: what the control plane (from proxy reports) or the
//! simulator (from its simulated proxies) knows at one instant, and [`Snapshot::view`], the part of
//! it one policy's scope sees.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

pub use loadshift_core::telemetry::usage::ContainerUsage;
use loadshift_core::{
    endpoint::Endpoint,
    telemetry::{WindowSnapshot, pressure::HostPressure},
};

use crate::objective::{ManagementObjective, Objective};

/// Identity of one proxy (pod name; unique within the mesh).
pub type ProxyId = String;

/// One container of a service as the control plane sees it.
#[derive(Clone, Debug, PartialEq)]
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
    /// What the container itself uses, where its sidecar (or the simulator) knows it.
    pub usage: ContainerUsage,
}

/// Everything known about one service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceState {
    pub name: String,
    pub containers: Vec<ContainerState>,
    /// Proxies that call this service (its downstreams), for per-proxy subsets.
    pub callers: Vec<ProxyId>,
    /// Offered load, requests per second, summed over callers (including blocked requests).
    pub offered_rps: f64,
    /// Latency objective the operator (or the scenario) set, if any.
    pub objective: Option<Objective>,
}

/// Calls from one service (or from outside the mesh) to another, as the callers observed them.
#[derive(Clone, Debug, PartialEq)]
pub struct CallEdge {
    /// The calling service; `None` for entry traffic (gateways and clients outside the mesh).
    pub caller: Option<String>,
    pub callee: String,
    /// Completed calls per second over the callers' windows.
    pub rps: f64,
}

/// One request class (flow) entering the mesh at `entry`, as the entry proxies measure it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowState {
    /// The service the flow enters at.
    pub entry: String,
    /// The flow's end-to-end objective, if any.
    pub sla: Option<Objective>,
    /// End-to-end latency of the flow's requests; `None` where no entry proxy measures it.
    pub e2e: Option<WindowSnapshot>,
    /// Requests per second entering, blocked ones included.
    pub offered_rps: f64,
}

/// A set of services managed together (the services of one call graph).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApplicationState {
    pub services: BTreeSet<String>,
    /// The application's management objective (Samani & Stadler MO1-MO3), if the operator set
    /// one.
    pub management: Option<ManagementObjective>,
}

/// The input of every planner and scaler.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Clock reading (time since the control plane or simulation started).
    pub now: Duration,
    pub services: BTreeMap<String, ServiceState>,
    /// Host pressure per `host` label.
    pub hosts: BTreeMap<String, HostPressure>,
    /// Placement of every connected proxy, from its Hello: what per-proxy planners need to know
    /// about a caller (`local` reads the zone, `imbres-connect` the host and inbound service).
    pub proxies: BTreeMap<ProxyId, ProxyInfo>,
    /// The call graph with observed call rates.
    pub edges: Vec<CallEdge>,
    /// Request classes by name.
    pub flows: BTreeMap<String, FlowState>,
    /// Applications by name.
    pub applications: BTreeMap<String, ApplicationState>,
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

impl Snapshot {
    /// The part of the snapshot a policy that sees `services` reads: those services, every host
    /// (pressure is per node, whoever runs there), the proxies that call or front one of them,
    /// the edges into them, the flows entering at them and the applications they belong to.
    pub fn view(&self, services: &BTreeSet<String>) -> Snapshot {
        let mut proxies = BTreeMap::new();
        let mut out = BTreeMap::new();
        for name in services {
            let Some(svc) = self.services.get(name) else {
                continue;
            };
            for p in &svc.callers {
                if let Some(info) = self.proxies.get(p) {
                    proxies.insert(p.clone(), info.clone());
                }
            }
            out.insert(name.clone(), svc.clone());
        }
        for (p, info) in &self.proxies {
            if info.service.as_ref().is_some_and(|s| services.contains(s)) {
                proxies.insert(p.clone(), info.clone());
            }
        }
        Snapshot {
            now: self.now,
            services: out,
            hosts: self.hosts.clone(),
            proxies,
            edges: self
                .edges
                .iter()
                .filter(|e| services.contains(&e.callee))
                .cloned()
                .collect(),
            flows: self
                .flows
                .iter()
                .filter(|(_, f)| services.contains(&f.entry))
                .map(|(n, f)| (n.clone(), f.clone()))
                .collect(),
            applications: self
                .applications
                .iter()
                .filter(|(_, a)| !a.services.is_disjoint(services))
                .map(|(n, a)| (n.clone(), a.clone()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::container;

    #[test]
    fn a_view_keeps_its_services_their_callers_and_the_edges_into_them() {
        let svc = |name: &str, callers: &[&str]| ServiceState {
            name: name.into(),
            containers: vec![container(1, "h1", 5.0, 10)],
            callers: callers.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        };
        let proxy = |service: Option<&str>| ProxyInfo {
            host: "h1".into(),
            zone: "z".into(),
            service: service.map(String::from),
        };
        let edge = |caller: Option<&str>, callee: &str| CallEdge {
            caller: caller.map(String::from),
            callee: callee.into(),
            rps: 1.0,
        };
        let snap = Snapshot {
            now: Duration::from_secs(3),
            services: [
                ("a".to_string(), svc("a", &["gw"])),
                ("b".to_string(), svc("b", &["a-1"])),
                ("c".to_string(), svc("c", &["b-1"])),
            ]
            .into(),
            hosts: [("h1".to_string(), HostPressure::default())].into(),
            proxies: [
                ("gw".to_string(), proxy(None)),
                ("a-1".to_string(), proxy(Some("a"))),
                ("b-1".to_string(), proxy(Some("b"))),
                ("c-1".to_string(), proxy(Some("c"))),
            ]
            .into(),
            edges: vec![edge(None, "a"), edge(Some("a"), "b"), edge(Some("b"), "c")],
            flows: [(
                "read".to_string(),
                FlowState {
                    entry: "a".into(),
                    ..Default::default()
                },
            )]
            .into(),
            applications: [(
                "app".to_string(),
                ApplicationState {
                    services: ["a", "b", "c"].map(String::from).into(),
                    management: None,
                },
            )]
            .into(),
        };
        let v = snap.view(&["b".to_string()].into());
        assert_eq!(v.now, snap.now);
        assert_eq!(v.services.keys().collect::<Vec<_>>(), ["b"]);
        // Its caller a-1 and its own container's proxy b-1; not the gateway nor c-1.
        assert_eq!(v.proxies.keys().collect::<Vec<_>>(), ["a-1", "b-1"]);
        assert_eq!(v.edges, vec![edge(Some("a"), "b")]);
        assert!(v.flows.is_empty());
        assert_eq!(v.applications.len(), 1);
        assert_eq!(v.hosts.len(), 1);
        let all = snap.view(&snap.services.keys().cloned().collect());
        assert_eq!(all, snap);
    }
}
