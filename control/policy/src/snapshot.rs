//! The input of every planner and scaler: what the control plane (from proxy reports) or the
//! simulator (from its simulated proxies) knows at one instant, and [`Snapshot::view`], the part of
//! it one policy's scope sees.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
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
    /// The same calls split by the callers' zone (network plus container time as each zone's
    /// callers see it); zones with no calls in the window are absent.
    pub outbound_by_zone: BTreeMap<String, WindowSnapshot>,
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
    /// Services by name; shared (`Arc`), so the views of one snapshot cost no copies.
    pub services: BTreeMap<String, Arc<ServiceState>>,
    /// Host pressure per `host` label, every host (shared by the views of one snapshot).
    pub hosts: Arc<BTreeMap<String, HostPressure>>,
    /// Placement of every connected proxy, from its Hello: what per-proxy planners need to know
    /// about a caller (`local` reads the zone, `imbres-connect` the host and inbound service).
    /// Every proxy, shared by the views of one snapshot.
    pub proxies: Arc<BTreeMap<ProxyId, ProxyInfo>>,
    /// The call graph with observed call rates.
    pub edges: Vec<CallEdge>,
    /// Request classes by name.
    pub flows: BTreeMap<String, FlowState>,
    /// Applications by name (shared: an application lists every one of its services).
    pub applications: BTreeMap<String, Arc<ApplicationState>>,
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

/// Lookups that make many views of one snapshot cheap: built once per round, then each view
/// costs what it holds rather than a scan of every proxy, edge and flow.
#[derive(Debug, Default)]
pub struct ViewIndex<'a> {
    /// Callee -> positions in `edges`.
    edges: HashMap<&'a str, Vec<usize>>,
    /// Entry service -> flow names.
    flows: HashMap<&'a str, Vec<&'a str>>,
    /// Service -> applications holding it.
    applications: HashMap<&'a str, Vec<&'a str>>,
}

impl Snapshot {
    /// The lookups [`Snapshot::view_indexed`] uses.
    pub fn index(&self) -> ViewIndex<'_> {
        let mut ix = ViewIndex::default();
        for (i, e) in self.edges.iter().enumerate() {
            ix.edges.entry(&e.callee).or_default().push(i);
        }
        for (name, f) in &self.flows {
            ix.flows.entry(&f.entry).or_default().push(name);
        }
        for (name, a) in &self.applications {
            for s in &a.services {
                ix.applications.entry(s).or_default().push(name);
            }
        }
        ix
    }

    /// The part of the snapshot a policy that sees `services` reads: those services, the edges
    /// into them, the flows entering at them and the applications they belong to; and the
    /// mesh-wide placement every policy may read, every host's pressure and every proxy's place.
    pub fn view(&self, services: &BTreeSet<String>) -> Snapshot {
        self.view_indexed(&self.index(), services)
    }

    /// [`Snapshot::view`] with an index of this snapshot.
    pub fn view_indexed(&self, ix: &ViewIndex<'_>, services: &BTreeSet<String>) -> Snapshot {
        let mut out = BTreeMap::new();
        let mut edges = Vec::new();
        let mut flows = BTreeMap::new();
        let mut applications = BTreeMap::new();
        for name in services {
            let Some(svc) = self.services.get(name) else {
                continue;
            };
            out.insert(name.clone(), svc.clone());
            for &i in ix.edges.get(name.as_str()).into_iter().flatten() {
                edges.push(self.edges[i].clone());
            }
            for &f in ix.flows.get(name.as_str()).into_iter().flatten() {
                flows.insert(f.to_string(), self.flows[f].clone());
            }
            for &a in ix.applications.get(name.as_str()).into_iter().flatten() {
                applications
                    .entry(a.to_string())
                    .or_insert_with(|| self.applications[a].clone());
            }
        }
        Snapshot {
            now: self.now,
            services: out,
            hosts: self.hosts.clone(),
            proxies: self.proxies.clone(),
            edges,
            flows,
            applications,
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
                ("a".to_string(), Arc::new(svc("a", &["gw"]))),
                ("b".to_string(), Arc::new(svc("b", &["a-1"]))),
                ("c".to_string(), Arc::new(svc("c", &["b-1"]))),
            ]
            .into(),
            hosts: Arc::new([("h1".to_string(), HostPressure::default())].into()),
            proxies: Arc::new(
                [
                    ("gw".to_string(), proxy(None)),
                    ("a-1".to_string(), proxy(Some("a"))),
                    ("b-1".to_string(), proxy(Some("b"))),
                ]
                .into(),
            ),
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
                Arc::new(ApplicationState {
                    services: ["a", "b", "c"].map(String::from).into(),
                    management: None,
                }),
            )]
            .into(),
        };
        let v = snap.view(&["b".to_string()].into());
        assert_eq!(v.now, snap.now);
        assert_eq!(v.services.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(v.edges, vec![edge(Some("a"), "b")]);
        assert!(v.flows.is_empty());
        assert_eq!(v.applications.len(), 1);
        // Placement is mesh-wide and shared, not copied.
        assert!(Arc::ptr_eq(&v.proxies, &snap.proxies) && Arc::ptr_eq(&v.hosts, &snap.hosts));
        assert!(Arc::ptr_eq(&v.services["b"], &snap.services["b"]));
        let all = snap.view(&snap.services.keys().cloned().collect());
        assert_eq!(all, snap);
    }
}
