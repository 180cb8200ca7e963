//! What the application-scoped scalers (`imbres`, `queueflower`, `avg`) read from their view: the
//! services they own grouped by application, each container's load, latency at an objective's
//! percentile, and the routes of flows through the call graph.
//!
//! The schedule gives such a scaler one application (its view holds every service of it, owned
//! or not). A scaler used directly on a wider snapshot (the simulator's single scaler over every
//! service) still budgets per application: owned services are grouped by the application in
//! `Snapshot::applications` that lists them, and those in none form one group, `default`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use loadshift_core::telemetry::WindowSnapshot;

use crate::{
    ContainerState, DEFAULT_APPLICATION, FlowState, ScaleDecision, ServiceState, Snapshot,
};

/// The services one scaler decides for within one application.
#[derive(Debug)]
pub(crate) struct Group<'a> {
    /// Application name.
    pub name: &'a str,
    /// The application's services present in the view, owned or not.
    pub members: BTreeSet<&'a str>,
    /// The services the scaler decides for, in name order.
    pub owned: Vec<(&'a str, &'a ServiceState)>,
}

impl<'a> Group<'a> {
    /// The application's flows: those entering at one of its services.
    pub fn flows(&self, snap: &'a Snapshot) -> impl Iterator<Item = (&'a str, &'a FlowState)> {
        snap.flows
            .iter()
            .filter(|(_, f)| self.members.contains(f.entry.as_str()))
            .map(|(n, f)| (n.as_str(), f))
    }

    /// Containers of the owned services.
    pub fn containers(&self) -> u32 {
        self.owned.iter().map(|(_, s)| count(s)).sum()
    }
}

/// Owned services (`owned`; `None`: every service of the view) grouped by application, in
/// application name order.
pub(crate) fn groups<'a>(snap: &'a Snapshot, owned: Option<&BTreeSet<String>>) -> Vec<Group<'a>> {
    // Hosts refuse an application named `default` (it is the implicit one), so the name keys.
    let mut out: BTreeMap<&str, Group<'a>> = BTreeMap::new();
    for (name, svc) in &snap.services {
        if owned.is_some_and(|o| !o.contains(name)) {
            continue;
        }
        let app = snap
            .applications
            .iter()
            .find(|(_, a)| a.services.contains(name));
        let key = app.map_or(DEFAULT_APPLICATION, |(n, _)| n.as_str());
        let g = out.entry(key).or_insert_with(|| {
            let members = match app {
                Some((_, a)) => a
                    .services
                    .iter()
                    .filter(|s| snap.services.contains_key(*s))
                    .map(String::as_str)
                    .collect(),
                None => snap
                    .services
                    .keys()
                    .filter(|s| !snap.applications.values().any(|a| a.services.contains(*s)))
                    .map(String::as_str)
                    .collect(),
            };
            Group {
                name: key,
                members,
                owned: Vec::new(),
            }
        });
        g.owned.push((name.as_str(), svc.as_ref()));
    }
    out.into_values().collect()
}

/// Containers of a service, saturated to `u32`.
pub(crate) fn count(svc: &ServiceState) -> u32 {
    u32::try_from(svc.containers.len()).unwrap_or(u32::MAX)
}

/// Requests per second a container served over its report window: its inbound sidecar's count,
/// or the callers' merged outbound count when it has no inbound report; 0 without a window.
pub(crate) fn container_rps(c: &ContainerState) -> f64 {
    let w = c.inbound.unwrap_or(c.outbound);
    if w.window_s.is_finite() && w.window_s > 0.0 {
        w.count as f64 / w.window_s
    } else {
        0.0
    }
}

/// Requests per second each member of `g` would be offered if nothing in front of it were
/// throttled.
///
/// First what it is offered now: at an entry service the offered load of the flows entering
/// there (blocked requests included), elsewhere the calls its callers sent (`offered_rps`, queued
/// and blocked ones included), never less than what it completed. A saturated service completes
/// only what it can; what it is offered is what it would need to serve. A service behind a
/// saturated one is offered only what that one passes on, so the demand is then carried down the
/// call graph by visit ratios: each edge's calls per request its caller completed (the callee's
/// offered calls split over its callers by their completed calls), times the caller's demand.
/// A saturated caller completes fewer requests, but each still makes the same calls, so the
/// ratio holds where throughput does not. A member keeps the larger of the two; the relaxation
/// runs at most once per member, so an acyclic graph settles and a cycle stops.
pub(crate) fn demand<'a>(snap: &'a Snapshot, g: &Group<'a>) -> BTreeMap<&'a str, f64> {
    let served = |s: &ServiceState| -> f64 { s.containers.iter().map(container_rps).sum() };
    let mut entry: BTreeMap<&str, f64> = BTreeMap::new();
    for (_, f) in g.flows(snap) {
        if f.offered_rps.is_finite() && f.offered_rps > 0.0 {
            *entry.entry(f.entry.as_str()).or_default() += f.offered_rps;
        }
    }
    let base: BTreeMap<&str, f64> = g
        .members
        .iter()
        .filter_map(|&m| {
            let s = snap.services.get(m)?;
            let offered = entry.get(m).copied().unwrap_or(s.offered_rps);
            let done = served(s);
            Some((
                m,
                if offered.is_finite() {
                    offered.max(done)
                } else {
                    done
                },
            ))
        })
        .collect();
    let inside = |e: &&crate::CallEdge| {
        e.caller
            .as_deref()
            .is_some_and(|c| base.contains_key(c) && base.contains_key(e.callee.as_str()))
            && e.rps.is_finite()
            && e.rps > 0.0
    };
    let mut into: BTreeMap<&str, f64> = BTreeMap::new();
    for e in snap.edges.iter().filter(inside) {
        *into.entry(e.callee.as_str()).or_default() += e.rps;
    }
    // (caller, callee, calls offered per completed caller request).
    let ratios: Vec<(&str, &str, f64)> = snap
        .edges
        .iter()
        .filter(inside)
        .filter_map(|e| {
            let caller = e.caller.as_deref()?;
            let callee = snap.services.get(&e.callee)?;
            let sent = callee.offered_rps * e.rps / into.get(e.callee.as_str())?;
            let r = sent / served(snap.services.get(caller)?);
            (r.is_finite() && r > 0.0).then_some((caller, e.callee.as_str(), r))
        })
        .collect();
    let mut d = base.clone();
    for _ in 0..g.members.len() {
        let mut carried: BTreeMap<&str, f64> = BTreeMap::new();
        for &(caller, callee, r) in &ratios {
            *carried.entry(callee).or_default() += d[caller] * r;
        }
        let next: BTreeMap<&str, f64> = base
            .iter()
            .map(|(&m, &b)| (m, b.max(carried.get(m).copied().unwrap_or(0.0))))
            .collect();
        if next == d {
            break;
        }
        d = next;
    }
    d
}

/// A service's load per host, requests per second: every host with one of its containers, 0
/// where they served nothing.
pub(crate) fn host_loads(svc: &ServiceState) -> BTreeMap<&str, f64> {
    let mut d: BTreeMap<&str, f64> = BTreeMap::new();
    for c in &svc.containers {
        *d.entry(c.endpoint.host.as_str()).or_default() += container_rps(c);
    }
    d
}

/// The latency window of a container with requests in it: inbound, else outbound.
fn latency_window(c: &ContainerState) -> Option<WindowSnapshot> {
    c.inbound
        .filter(|w| w.count > 0)
        .or_else(|| (c.outbound.count > 0).then_some(c.outbound))
}

/// Mean latency of a service, milliseconds: its containers' means weighted by their requests
/// (inbound windows; outbound where a container has no inbound requests). `None` without
/// requests.
pub(crate) fn mean_latency_ms(svc: &ServiceState) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0u64);
    for w in svc.containers.iter().filter_map(latency_window) {
        if w.mean_ms.is_finite() {
            sum += w.mean_ms * w.count as f64;
            n += w.count;
        }
    }
    (n > 0).then(|| sum / n as f64)
}

/// The latency of `w` at `percentile`: whichever of p50, p95 and p99 is nearest (a tie goes to
/// the higher one, the stricter reading).
pub(crate) fn at_percentile(w: &WindowSnapshot, percentile: f64) -> f64 {
    [(99.0, w.p99_ms), (95.0, w.p95_ms), (50.0, w.p50_ms)]
        .into_iter()
        .min_by(|a, b| {
            (a.0 - percentile)
                .abs()
                .total_cmp(&(b.0 - percentile).abs())
        })
        .map_or(w.p99_ms, |(_, v)| v)
}

/// A flow's end-to-end latency against its objective: `(mean / sla, tail at the objective's
/// percentile / sla)`; `None` without an objective or measured requests.
pub(crate) fn flow_ratios(f: &FlowState) -> Option<(f64, f64)> {
    let (sla, w) = (f.sla.as_ref()?, f.e2e.filter(|w| w.count > 0)?);
    if !(sla.sla_ms.is_finite() && sla.sla_ms > 0.0) {
        return None;
    }
    let tail = at_percentile(&w, sla.percentile);
    (w.mean_ms.is_finite() && tail.is_finite()).then(|| (w.mean_ms / sla.sla_ms, tail / sla.sla_ms))
}

/// Services reachable from `entry` through the call edges of `snap` (`entry` included): the
/// services a flow entering there may visit.
pub(crate) fn reach<'a>(snap: &'a Snapshot, entry: &'a str) -> BTreeSet<&'a str> {
    let mut seen: BTreeSet<&str> = [entry].into();
    let mut todo = VecDeque::from([entry]);
    while let Some(s) = todo.pop_front() {
        for e in &snap.edges {
            if e.caller.as_deref() == Some(s) && seen.insert(e.callee.as_str()) {
                todo.push_back(e.callee.as_str());
            }
        }
    }
    seen
}

/// Fixed container budgets per application: `setting`, or when it is 0 the application's
/// container count the first time it is asked.
#[derive(Clone, Debug, Default)]
pub(crate) struct Budgets {
    setting: u32,
    fixed: BTreeMap<String, u32>,
}

impl Budgets {
    pub fn new(setting: u32) -> Self {
        Self {
            setting,
            fixed: BTreeMap::new(),
        }
    }

    pub fn get(&mut self, app: &str, current: u32) -> u32 {
        if self.setting > 0 {
            return self.setting;
        }
        *self.fixed.entry(app.to_string()).or_insert(current)
    }
}

/// A decision per owned service whose count `to` changes, with `reason` for it.
pub(crate) fn changes(
    g: &Group<'_>,
    to: &[u32],
    mut reason: impl FnMut(usize) -> String,
) -> Vec<ScaleDecision> {
    g.owned
        .iter()
        .zip(to)
        .enumerate()
        .filter(|(_, ((_, s), to))| count(s) != **to)
        .map(|(i, ((name, s), &to))| ScaleDecision {
            service: name.to_string(),
            from: count(s),
            to,
            reason: reason(i),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{ApplicationState, CallEdge, Objective};

    #[test]
    fn owned_services_group_by_application_and_flows_reach_along_edges() {
        let svc = |n: &str| ServiceState {
            name: n.into(),
            ..Default::default()
        };
        let mut snap = crate::testing::snapshot(["a", "b", "c", "d", "e"].map(svc).to_vec());
        snap.applications.insert(
            "shop".into(),
            Arc::new(ApplicationState {
                services: ["a", "b", "c"].map(String::from).into(),
                management: None,
            }),
        );
        let owned: BTreeSet<String> = ["a", "b", "d", "e"].map(String::from).into();
        let g = groups(&snap, Some(&owned));
        let names: Vec<(&str, Vec<&str>, usize)> = g
            .iter()
            .map(|g| {
                (
                    g.name,
                    g.owned.iter().map(|(n, _)| *n).collect(),
                    g.members.len(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [("default", vec!["d", "e"], 2), ("shop", vec!["a", "b"], 3)]
        );
        let edge = |a: Option<&str>, b: &str| CallEdge {
            caller: a.map(String::from),
            callee: b.into(),
            rps: 1.0,
        };
        snap.edges = vec![
            edge(None, "a"),
            edge(Some("a"), "b"),
            edge(Some("b"), "c"),
            edge(Some("c"), "a"),
            edge(Some("d"), "e"),
        ];
        assert_eq!(reach(&snap, "a"), ["a", "b", "c"].into());
        assert_eq!(reach(&snap, "c"), ["a", "b", "c"].into());
        assert_eq!(reach(&snap, "e"), ["e"].into());
    }

    #[test]
    fn percentiles_pick_the_nearest_measured_one() {
        let w = WindowSnapshot {
            count: 10,
            mean_ms: 10.0,
            p50_ms: 8.0,
            p95_ms: 30.0,
            p99_ms: 50.0,
            ..Default::default()
        };
        let got: Vec<f64> = [10.0, 72.5, 90.0, 97.0, 99.9]
            .map(|p| at_percentile(&w, p))
            .to_vec();
        assert_eq!(got, [8.0, 30.0, 30.0, 50.0, 50.0]);
        let flow = FlowState {
            sla: Some(Objective {
                sla_ms: 20.0,
                percentile: 95.0,
            }),
            e2e: Some(w),
            ..Default::default()
        };
        assert_eq!(flow_ratios(&flow), Some((0.5, 1.5)));
        let unmeasured = FlowState {
            e2e: Some(WindowSnapshot::default()),
            ..flow.clone()
        };
        assert_eq!(flow_ratios(&unmeasured), None);
    }
}
