//! The control loop inside the simulation: telemetry snapshots built from the simulated proxies'
//! windows and estimators, plans from the real planners applied to the real balancers (validated
//! like a proxy validates them: an invalid plan is refused and the last good one stays), and
//! scale decisions from the real scalers turned into containers started or stopped.

use std::{collections::BTreeMap, time::Duration};

use loadshift_core::{plan::ServicePlan, telemetry::pressure::HostPressure};

use super::{engine::Engine, world::NONE};
use loadshift_policy::{
    ContainerState, PlanUpdate, ProxyInfo, ScaleDecision, ServiceState, Snapshot,
};

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
                        in_flight: ctr.in_flight,
                        ewma_ms: if n == 0 {
                            0.0
                        } else {
                            sum / f64::from(n) / 1e6
                        },
                    }
                })
                .collect();
            let offered = svc.offered - svc.offered_at_snapshot;
            svc.offered_at_snapshot = svc.offered;
            services.insert(
                svc.name.clone(),
                ServiceState {
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
                },
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
        Snapshot {
            now,
            services,
            hosts,
            proxies,
        }
    }

    pub(super) fn planner_tick(&mut self, i: usize) {
        let snap = self.snapshot();
        let update = self.planners[i].planner.plan(&snap);
        self.planners[i].iterations += 1;
        let owned = std::mem::take(&mut self.planners[i].owned);
        self.apply_plans(update, &owned);
        self.planners[i].owned = owned;
        let next = self.now + self.planners[i].interval_ns;
        if next <= self.duration_ns {
            self.push_control(next, true, i);
        }
    }

    pub(super) fn scaler_tick(&mut self, i: usize) {
        let snap = self.snapshot();
        let decisions = self.scalers[i].scaler.scale(&snap);
        let owned = std::mem::take(&mut self.scalers[i].owned);
        for d in &decisions {
            self.apply_scale(d, &owned);
        }
        self.scalers[i].decisions.extend(decisions);
        self.scalers[i].owned = owned;
        let next = self.now + self.scalers[i].interval_ns;
        if next <= self.duration_ns {
            self.push_control(next, false, i);
        }
    }

    fn svc_index(&self, name: &str) -> Option<usize> {
        self.svc_names.iter().position(|n| n == name)
    }

    /// Applies the services `owned` by the planner that produced `up`.
    fn apply_plans(&mut self, up: PlanUpdate, owned: &[bool]) {
        let now = Duration::from_nanos(self.now);
        for (name, sp) in up.services {
            let Some(s) = self.svc_index(&name).filter(|&s| owned[s]) else {
                continue;
            };
            if !self.valid(s, &sp) {
                continue;
            }
            if self.w.svcs[s].plan.as_ref() != Some(&sp) {
                self.w.svcs[s].plan = Some(sp);
                self.rec.plan_pushes += 1;
                for (p, k) in self.w.svcs[s].callers.clone() {
                    if !self.w.svcs[s].per_proxy.contains_key(&p) {
                        self.w.rebuild_outbound(p, k as usize, now);
                    }
                }
            }
        }
        for (proxy_id, plans) in up.per_proxy {
            let Some(&p) = self.w.proxy_index.get(&proxy_id) else {
                self.plan_rejections += 1;
                continue;
            };
            for (name, sp) in plans {
                let Some(s) = self.svc_index(&name).filter(|&s| owned[s]) else {
                    continue;
                };
                let Some(k) = self.w.proxies[p as usize]
                    .out
                    .iter()
                    .position(|o| o.svc as usize == s)
                else {
                    self.plan_rejections += 1;
                    continue;
                };
                if !self.valid(s, &sp) {
                    continue;
                }
                if self.w.svcs[s].per_proxy.get(&p) != Some(&sp) {
                    self.w.svcs[s].per_proxy.insert(p, sp);
                    self.rec.plan_pushes += 1;
                    self.w.rebuild_outbound(p, k, now);
                }
            }
        }
    }

    fn valid(&mut self, s: usize, sp: &ServicePlan) -> bool {
        let ok = sp
            .validate(&self.w.svcs[s].name, &self.w.svcs[s].eps)
            .is_ok();
        if !ok {
            self.plan_rejections += 1;
        }
        ok
    }

    /// Starts containers on the hosts with the most free cores, or stops the newest ones (never
    /// the last one). Stopped containers finish the work already queued at them.
    fn apply_scale(&mut self, d: &ScaleDecision, owned: &[bool]) {
        let Some(s) = self.svc_index(&d.service).filter(|&s| owned[s]) else {
            return;
        };
        let cur = self.w.svcs[s].members.len();
        let want = (d.to as usize).max(1);
        if want == cur {
            return;
        }
        self.account_containers();
        let now = Duration::from_nanos(self.now);
        if want > cur {
            for _ in cur..want {
                let host = self.roomiest_host();
                let mut svcs = std::mem::take(&mut self.w.svcs);
                let c = self.w.new_container(&mut svcs, s as u32, host as u32);
                svcs[s].members.push(c);
                self.w.svcs = svcs;
                let ep = self.w.endpoint(c);
                self.w.svcs[s].eps.push(ep);
                let p = self.w.ctrs[c as usize].proxy;
                for k in 0..self.w.proxies[p as usize].out.len() {
                    self.w.rebuild_outbound(p, k, now);
                }
            }
        } else {
            for _ in want..cur {
                if let Some(c) = self.w.svcs[s].members.pop() {
                    self.w.svcs[s].eps.pop();
                    self.w.ctrs[c as usize].slot = NONE;
                    // Its proxy leaves with it: no longer a caller planners should plan for. Calls
                    // it still makes while draining its queue use the balancers it has.
                    let p = self.w.ctrs[c as usize].proxy;
                    for k in 0..self.w.svcs[s].children.len() {
                        let child = self.w.svcs[s].children[k] as usize;
                        self.w.svcs[child].callers.retain(|&(q, _)| q != p);
                    }
                }
            }
        }
        for (p, k) in self.w.svcs[s].callers.clone() {
            self.w.rebuild_outbound(p, k as usize, now);
        }
    }

    /// Per service: eligible endpoints summed over the balancers of its current callers.
    pub(super) fn connections(&self) -> BTreeMap<String, u64> {
        self.w
            .svcs
            .iter()
            .map(|svc| {
                let n = svc
                    .callers
                    .iter()
                    .map(|&(p, k)| {
                        self.w.proxies[p as usize].out[k as usize]
                            .bal
                            .eligible()
                            .len() as u64
                    })
                    .sum();
                (svc.name.clone(), n)
            })
            .collect()
    }

    /// Host with the most cores not yet taken by container servers; ties to the first.
    fn roomiest_host(&self) -> usize {
        let mut used = vec![0i64; self.w.hosts.len()];
        for svc in &self.w.svcs {
            for &c in &svc.members {
                used[self.w.ctrs[c as usize].host as usize] += i64::from(svc.servers);
            }
        }
        (0..self.w.hosts.len())
            .max_by_key(|&h| {
                (
                    i64::from(self.w.hosts[h].cores) - used[h],
                    std::cmp::Reverse(h),
                )
            })
            .unwrap_or(0)
    }
}
