//! Telemetry state built from proxy reports, and the [`Snapshot`] planners and scalers read.
//!
//! Memory is bounded by design: the store keeps each connected proxy's identity and its latest
//! report only (every report already carries the proxy's rotating windows, 10 x 1 s by default),
//! and forgets a proxy when its stream ends. Snapshots then merge over proxies:
//! - `ContainerState.inbound` is the container's own inbound sidecar report (matched by the
//!   `container` label of the endpoint and `Hello.container`, within the service);
//! - `ContainerState.outbound` merges every caller's window for that endpoint: counts and errors
//!   add up, the mean and the percentiles are count-weighted means of the callers' values (exact
//!   for the mean, an approximation for percentiles, which cannot be merged from summaries);
//! - `offered_rps` sums the callers' offered counts over their window length;
//! - `edges` sum, per (caller's inbound service or entry traffic, callee), the callers' completed
//!   calls over their window length;
//! - `ContainerState.usage` is the container's own sidecar's cgroup reading;
//! - a flow's end-to-end window merges the windows of the entry proxies (callers of its entry
//!   service that front no service, such as gateways).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use loadshift_core::{
    endpoint::Endpoint,
    telemetry::{WindowSnapshot, pressure::HostPressure, usage::ContainerUsage},
};
use loadshift_policy::{
    CallEdge, ContainerState, FlowState, Objective, ProxyId, ProxyInfo, ServiceState, Snapshot,
};

/// Identity of a connected proxy (from `Hello`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyIdentity {
    pub pod: ProxyId,
    pub container: String,
    pub host: String,
    pub zone: String,
    pub inbound_service: Option<String>,
    pub outbound_services: Vec<String>,
}

/// One endpoint entry of a report.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointSample {
    /// Interned: every proxy's reports share one copy of each name.
    pub service: Arc<str>,
    pub addr: SocketAddr,
    pub window: WindowSnapshot,
    pub in_flight: u32,
    pub ewma_ms: f64,
}

/// The latest report of one proxy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredReport {
    /// Control-plane clock when it arrived.
    pub received: Duration,
    pub endpoints: Vec<EndpointSample>,
    pub inbound: Option<WindowSnapshot>,
    pub host: HostPressure,
    /// The proxy's own container's resource use, where its sidecar reads a cgroup.
    pub usage: Option<ContainerUsage>,
    /// (service, class, count).
    pub blocked: Vec<(String, String, u64)>,
    /// (service, count, window seconds).
    pub offered: Vec<(String, u64, f64)>,
}

#[derive(Debug)]
struct ProxyEntry {
    /// Stream that registered it; a late cleanup of an older stream must not remove a newer one.
    stream: u64,
    id: ProxyIdentity,
    report: Option<StoredReport>,
}

/// Connected proxies and their latest reports.
#[derive(Debug, Default)]
pub struct TelemetryStore {
    proxies: HashMap<ProxyId, ProxyEntry>,
    names: HashSet<Arc<str>>,
}

/// Service names interned at most; past this, names are stored per report (a misbehaving proxy
/// cannot grow the table without bound).
const MAX_INTERNED: usize = 4096;

impl TelemetryStore {
    /// The shared copy of a service name.
    pub fn intern(&mut self, name: String) -> Arc<str> {
        if let Some(n) = self.names.get(name.as_str()) {
            return n.clone();
        }
        let n: Arc<str> = name.into();
        if self.names.len() < MAX_INTERNED {
            self.names.insert(n.clone());
        }
        n
    }

    /// Registers a proxy for a stream; replaces an older stream of the same pod.
    pub fn connect(&mut self, stream: u64, id: ProxyIdentity) {
        self.proxies.insert(
            id.pod.clone(),
            ProxyEntry {
                stream,
                id,
                report: None,
            },
        );
    }

    /// Forgets the proxy if `stream` is still the one that registered it.
    pub fn disconnect(&mut self, pod: &str, stream: u64) {
        if self.proxies.get(pod).is_some_and(|e| e.stream == stream) {
            self.proxies.remove(pod);
        }
    }

    /// Stores a report; ignored for a proxy that is not (or no longer) registered by `stream`.
    pub fn report(&mut self, pod: &str, stream: u64, r: StoredReport) {
        if let Some(e) = self.proxies.get_mut(pod).filter(|e| e.stream == stream) {
            e.report = Some(r);
        }
    }

    pub fn len(&self) -> usize {
        self.proxies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.proxies.is_empty()
    }

    /// Connected proxies.
    pub fn identities(&self) -> impl Iterator<Item = &ProxyIdentity> {
        self.proxies.values().map(|e| &e.id)
    }

    /// Requests blocked per (service, class), summed over proxies with fresh reports.
    pub fn blocked(&self, now: Duration, stale: Duration) -> BTreeMap<(String, String), u64> {
        let mut out = BTreeMap::new();
        for r in self.fresh_reports(now, stale) {
            for (s, c, n) in &r.1.blocked {
                *out.entry((s.clone(), c.clone())).or_default() += n;
            }
        }
        out
    }

    fn fresh_reports(
        &self,
        now: Duration,
        stale: Duration,
    ) -> impl Iterator<Item = (&ProxyIdentity, &StoredReport)> {
        self.proxies.values().filter_map(move |e| {
            let r = e.report.as_ref()?;
            (now.saturating_sub(r.received) <= stale).then_some((&e.id, r))
        })
    }

    /// The planners' view: every discovered service with its containers' merged telemetry.
    pub fn snapshot(
        &self,
        now: Duration,
        stale: Duration,
        endpoints: &BTreeMap<String, Vec<Endpoint>>,
        objectives: &BTreeMap<String, Objective>,
    ) -> Snapshot {
        // (service, addr) -> merged outbound telemetry, overall and per caller zone.
        let mut outbound: HashMap<(&str, SocketAddr), Merge> = HashMap::new();
        let mut by_zone: HashMap<(&str, SocketAddr), BTreeMap<&str, Merge>> = HashMap::new();
        // (service, container) -> inbound window and usage of the container's own proxy.
        let mut inbound: HashMap<(&str, &str), WindowSnapshot> = HashMap::new();
        let mut usage: HashMap<(&str, &str), ContainerUsage> = HashMap::new();
        // (caller service or entry, callee) -> calls per second.
        let mut edges: BTreeMap<(Option<&str>, &str), f64> = BTreeMap::new();
        let mut offered: HashMap<&str, f64> = HashMap::new();
        let mut hosts: BTreeMap<String, (Duration, HostPressure)> = BTreeMap::new();
        for (id, r) in self.fresh_reports(now, stale) {
            for s in &r.endpoints {
                outbound.entry((&*s.service, s.addr)).or_default().add(s);
                if s.window.count > 0 {
                    by_zone
                        .entry((&*s.service, s.addr))
                        .or_default()
                        .entry(&id.zone)
                        .or_default()
                        .add(s);
                }
                if s.window.window_s > 0.0 {
                    *edges
                        .entry((id.inbound_service.as_deref(), &*s.service))
                        .or_default() += s.window.count as f64 / s.window.window_s;
                }
            }
            if let (Some(svc), Some(w)) = (&id.inbound_service, r.inbound) {
                inbound.insert((svc, &id.container), w);
            }
            if let (Some(svc), Some(u)) = (&id.inbound_service, r.usage) {
                usage.insert((svc, &id.container), u);
            }
            for (svc, n, win) in &r.offered {
                if *win > 0.0 {
                    *offered.entry(svc).or_default() += *n as f64 / win;
                }
            }
            let h = hosts.entry(id.host.clone()).or_insert((r.received, r.host));
            if r.received >= h.0 {
                *h = (r.received, r.host);
            }
        }
        let mut callers: HashMap<&str, Vec<ProxyId>> = HashMap::new();
        for e in self.proxies.values() {
            for s in &e.id.outbound_services {
                callers.entry(s).or_default().push(e.id.pod.clone());
            }
        }
        let services = endpoints
            .iter()
            .map(|(name, eps)| {
                let containers = eps
                    .iter()
                    .map(|ep| {
                        let m = outbound.get(&(name.as_str(), ep.addr));
                        ContainerState {
                            endpoint: ep.clone(),
                            inbound: inbound
                                .get(&(name.as_str(), ep.container.as_str()))
                                .copied(),
                            outbound: m.map(Merge::window).unwrap_or_default(),
                            outbound_by_zone: by_zone
                                .get(&(name.as_str(), ep.addr))
                                .map(|z| {
                                    z.iter()
                                        .map(|(zone, m)| (zone.to_string(), m.window()))
                                        .collect()
                                })
                                .unwrap_or_default(),
                            in_flight: m.map_or(0, |m| m.in_flight),
                            ewma_ms: m.map_or(0.0, Merge::ewma_ms),
                            usage: usage
                                .get(&(name.as_str(), ep.container.as_str()))
                                .copied()
                                .unwrap_or_default(),
                        }
                    })
                    .collect();
                let mut callers = callers.remove(name.as_str()).unwrap_or_default();
                callers.sort_unstable();
                let state = ServiceState {
                    name: name.clone(),
                    containers,
                    callers,
                    offered_rps: offered.get(name.as_str()).copied().unwrap_or(0.0),
                    objective: objectives.get(name).cloned(),
                };
                (name.clone(), Arc::new(state))
            })
            .collect();
        let proxies = self
            .proxies
            .values()
            .map(|e| {
                let info = ProxyInfo {
                    host: e.id.host.clone(),
                    zone: e.id.zone.clone(),
                    service: e.id.inbound_service.clone(),
                };
                (e.id.pod.clone(), info)
            })
            .collect();
        Snapshot {
            now,
            services,
            hosts: Arc::new(hosts.into_iter().map(|(h, (_, p))| (h, p)).collect()),
            proxies: Arc::new(proxies),
            edges: edges
                .into_iter()
                .map(|((caller, callee), rps)| CallEdge {
                    caller: caller.map(String::from),
                    callee: callee.to_string(),
                    rps,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Declared flows (name -> entry service and objective) as the entry proxies measure them:
    /// the merged windows and offered load of the fresh reports of proxies that front no service
    /// and call the entry. Flows sharing an entry share its measurement.
    pub fn flows(
        &self,
        now: Duration,
        stale: Duration,
        declared: &BTreeMap<String, (String, Option<Objective>)>,
    ) -> BTreeMap<String, FlowState> {
        declared
            .iter()
            .map(|(name, (entry, sla))| {
                let mut m = Merge::default();
                let mut offered = 0.0;
                for (id, r) in self.fresh_reports(now, stale) {
                    if id.inbound_service.is_some() {
                        continue;
                    }
                    for s in r.endpoints.iter().filter(|s| &*s.service == entry) {
                        m.add(s);
                    }
                    for (svc, n, win) in &r.offered {
                        if svc == entry && *win > 0.0 {
                            offered += *n as f64 / win;
                        }
                    }
                }
                let state = FlowState {
                    entry: entry.clone(),
                    sla: sla.clone(),
                    e2e: (m.callers > 0).then(|| m.window()),
                    offered_rps: offered,
                };
                (name.clone(), state)
            })
            .collect()
    }
}

/// Count-weighted merge of several callers' windows for one endpoint.
#[derive(Debug, Default)]
struct Merge {
    count: u64,
    errors: u64,
    /// Sums of value x count, for the weighted means.
    mean: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    window_s: f64,
    in_flight: u32,
    ewma_sum: f64,
    callers: u32,
}

impl Merge {
    fn add(&mut self, s: &EndpointSample) {
        let w = &s.window;
        let n = w.count as f64;
        self.count += w.count;
        self.errors += w.errors;
        self.mean += w.mean_ms * n;
        self.p50 += w.p50_ms * n;
        self.p95 += w.p95_ms * n;
        self.p99 += w.p99_ms * n;
        self.window_s = self.window_s.max(w.window_s);
        self.in_flight = self.in_flight.saturating_add(s.in_flight);
        self.ewma_sum += s.ewma_ms;
        self.callers += 1;
    }

    fn window(&self) -> WindowSnapshot {
        let n = self.count as f64;
        let avg = |x: f64| if self.count == 0 { 0.0 } else { x / n };
        WindowSnapshot {
            count: self.count,
            errors: self.errors,
            mean_ms: avg(self.mean),
            p50_ms: avg(self.p50),
            p95_ms: avg(self.p95),
            p99_ms: avg(self.p99),
            window_s: self.window_s,
        }
    }

    fn ewma_ms(&self) -> f64 {
        if self.callers == 0 {
            0.0
        } else {
            self.ewma_sum / f64::from(self.callers)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(count: u64, p95: f64) -> WindowSnapshot {
        WindowSnapshot {
            count,
            p95_ms: p95,
            mean_ms: p95,
            window_s: 10.0,
            ..Default::default()
        }
    }

    fn id(pod: &str, container: &str, inbound: Option<&str>, out: &[&str]) -> ProxyIdentity {
        ProxyIdentity {
            pod: pod.into(),
            container: container.into(),
            host: format!("host-{pod}"),
            zone: "z".into(),
            inbound_service: inbound.map(String::from),
            outbound_services: out.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn merges_callers_and_matches_inbound_by_container() {
        let ep = Endpoint::new("127.0.0.1:1".parse().unwrap(), "h1", "z", "b-1");
        let eps: BTreeMap<String, Vec<Endpoint>> = [("b".to_string(), vec![ep])].into();
        let mut st = TelemetryStore::default();
        st.connect(1, id("a1", "a-1", Some("a"), &["b"]));
        st.connect(
            2,
            ProxyIdentity {
                zone: "y".into(),
                ..id("a2", "a-2", Some("a"), &["b"])
            },
        );
        st.connect(3, id("b1", "b-1", Some("b"), &[]));
        let sample = |n, p95| EndpointSample {
            service: "b".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            window: win(n, p95),
            in_flight: 2,
            ewma_ms: p95,
        };
        let now = Duration::from_secs(100);
        let rep = |s: Vec<EndpointSample>, inbound| StoredReport {
            received: now,
            endpoints: s,
            inbound,
            offered: vec![("b".into(), 100, 10.0)],
            ..Default::default()
        };
        st.report("a1", 1, rep(vec![sample(30, 10.0)], None));
        st.report("a2", 2, rep(vec![sample(10, 50.0)], None));
        st.report("b1", 3, rep(vec![], Some(win(40, 7.0))));
        // A report from a stale stream id is ignored.
        st.report("a1", 99, rep(vec![sample(1000, 1000.0)], None));

        let snap = st.snapshot(now, Duration::from_secs(10), &eps, &BTreeMap::new());
        let b = &snap.services["b"];
        assert_eq!(b.callers, vec!["a1".to_string(), "a2".to_string()]);
        let c = &b.containers[0];
        assert_eq!(c.outbound.count, 40);
        assert!((c.outbound.p95_ms - 20.0).abs() < 1e-9);
        // The callers' zones apart: a1 in z, a2 in y.
        let zones: Vec<(&str, u64, f64)> = c
            .outbound_by_zone
            .iter()
            .map(|(z, w)| (z.as_str(), w.count, w.p95_ms))
            .collect();
        assert_eq!(zones, vec![("y", 10, 50.0), ("z", 30, 10.0)]);
        assert_eq!(c.in_flight, 4);
        assert!((c.ewma_ms - 30.0).abs() < 1e-9);
        assert_eq!(c.inbound.map(|w| w.p95_ms), Some(7.0));
        assert!((b.offered_rps - 30.0).abs() < 1e-9);
        assert_eq!(snap.hosts.len(), 3);
        assert_eq!(snap.proxies["b1"].service.as_deref(), Some("b"));

        // Stale reports drop out; disconnect forgets the proxy.
        let later = now + Duration::from_secs(11);
        let snap = st.snapshot(later, Duration::from_secs(10), &eps, &BTreeMap::new());
        assert_eq!(snap.services["b"].containers[0].outbound.count, 0);
        st.disconnect("a1", 42);
        assert_eq!(st.len(), 3);
        st.disconnect("a1", 1);
        assert_eq!(st.len(), 2);
    }
}
