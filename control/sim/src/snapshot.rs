//! The snapshot the simulated control plane reads, built from the simulated proxies' windows and
//! estimators the way the control plane builds one from proxy reports: per container its inbound
//! window, the callers' merged outbound window, in-flight and mean Peak-EWMA; per host its
//! interference as pressure; the call graph's completed calls per second; per flow its end-to-end
//! window at the ingress; and per container its CPU use (service time started since the last
//! snapshot). Rates cover the time since the previous snapshot.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use loadshift_core::telemetry::pressure::HostPressure;
use loadshift_policy::{
    CallEdge, ContainerState, ContainerUsage, FlowState, ProxyInfo, ServiceState, Snapshot,
    schedule::DEFAULT_APPLICATION,
};

use super::engine::Engine;

impl Engine {
    /// The snapshot every planner and scaler reads, at the current simulated time.
    pub(super) fn snapshot(&mut self) -> Snapshot {
        let now = Duration::from_nanos(self.now);
        let elapsed = (self.now.saturating_sub(self.last_snapshot_ns)) as f64 / 1e9;
        self.last_snapshot_ns = self.now;
        let self_load = self.interference_self_load();
        let w = &mut self.w;
        let mut services = BTreeMap::new();
        for svc in &mut w.svcs {
            let containers = svc
                .members
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    let ctr = &w.ctrs[c as usize];
                    let (sum, n) = svc.callers.iter().fold((0.0, 0u32), |(s, n), &(p, k)| {
                        let ob = &w.proxies[p as usize].out[k as usize];
                        match ob.ewma.get(i) {
                            Some(e) => (s + e.estimate_ns(), n + 1),
                            None => (s, n),
                        }
                    });
                    ContainerState {
                        endpoint: svc.eps[i].clone(),
                        inbound: Some(ctr.inbound.snapshot(now)),
                        outbound: ctr.outbound.snapshot(now),
                        outbound_by_zone: ctr
                            .outbound_by_zone
                            .iter()
                            .enumerate()
                            .filter_map(|(z, win)| {
                                let snap = win.as_ref()?.snapshot(now);
                                (snap.count > 0).then(|| (w.zones[z].clone(), snap))
                            })
                            .collect(),
                        in_flight: ctr.in_flight,
                        ewma_ms: if n == 0 {
                            0.0
                        } else {
                            sum / f64::from(n) / 1e6
                        },
                        usage: ContainerUsage {
                            cpu_cores: (elapsed > 0.0).then(|| {
                                (ctr.busy_ns - ctr.busy_ns_at_snapshot) as f64 / 1e9 / elapsed
                            }),
                            cpu_limit_cores: Some(f64::from(svc.servers)),
                            ..Default::default()
                        },
                    }
                })
                .collect();
            let offered = svc.offered - svc.offered_at_snapshot;
            svc.offered_at_snapshot = svc.offered;
            services.insert(
                svc.name.clone(),
                Arc::new(ServiceState {
                    name: svc.name.clone(),
                    containers,
                    callers: svc
                        .callers
                        .iter()
                        .map(|&(p, _)| w.proxies[p as usize].id.clone())
                        .collect(),
                    offered_rps: if elapsed > 0.0 {
                        offered as f64 / elapsed
                    } else {
                        0.0
                    },
                    objective: svc.objective.clone(),
                }),
            );
        }
        let t = self.now as f64 / 1e9;
        // HostPressure has no memory-bandwidth or network utilisation field; the simulator reports
        // them as PSI memory / io percentages, the nearest signals a real host exposes.
        let hosts = w
            .hosts
            .iter()
            .map(|h| {
                let own = if self_load {
                    f64::from(h.busy) / f64::from(h.cores)
                } else {
                    0.0
                };
                let p = HostPressure {
                    cpu_util: (h.cpu.at(t) + own).clamp(0.0, 1.0),
                    psi_cpu: None,
                    psi_memory: Some(100.0 * h.membw.at(t).clamp(0.0, 1.0)),
                    psi_io: Some(100.0 * h.net.at(t).clamp(0.0, 1.0)),
                };
                (h.name.clone(), p)
            })
            .collect();
        let proxies = w
            .proxies
            .iter()
            .map(|p| {
                let info = match w.ctrs.get(p.ctr as usize) {
                    Some(c) => ProxyInfo {
                        host: w.hosts[c.host as usize].name.clone(),
                        zone: w.zones[c.zone as usize].clone(),
                        service: Some(w.svcs[c.svc as usize].name.clone()),
                    },
                    None => ProxyInfo {
                        host: String::new(),
                        zone: w.zones[p.zone as usize].clone(),
                        service: None,
                    },
                };
                (p.id.clone(), info)
            })
            .collect();
        let rate = |n: u64| {
            if elapsed > 0.0 {
                n as f64 / elapsed
            } else {
                0.0
            }
        };
        let n = w.svcs.len();
        let mut edges = Vec::new();
        for (i, (&total, &before)) in w
            .edge_calls
            .iter()
            .zip(&w.edge_calls_at_snapshot)
            .enumerate()
        {
            if total > 0 {
                let (caller, callee) = (i / n, i % n);
                edges.push(CallEdge {
                    caller: caller.checked_sub(1).map(|c| w.svcs[c].name.clone()),
                    callee: w.svcs[callee].name.clone(),
                    rps: rate(total - before),
                });
            }
        }
        w.edge_calls_at_snapshot.clone_from(&w.edge_calls);
        let flows = w
            .flows
            .iter_mut()
            .map(|f| {
                let offered = f.arrivals - f.arrivals_at_snapshot;
                f.arrivals_at_snapshot = f.arrivals;
                let state = FlowState {
                    entry: w.svcs[f.entry as usize].name.clone(),
                    sla: Some(f.sla.clone()),
                    e2e: Some(f.e2e.snapshot(now)),
                    offered_rps: rate(offered),
                };
                (f.name.clone(), state)
            })
            .collect();
        for c in &mut w.ctrs {
            c.busy_ns_at_snapshot = c.busy_ns;
        }
        Snapshot {
            now,
            services,
            hosts: Arc::new(hosts),
            proxies: Arc::new(proxies),
            edges,
            flows,
            applications: [(DEFAULT_APPLICATION.to_string(), self.application.clone())].into(),
        }
    }
}
