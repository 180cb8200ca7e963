//! The control plane inside the simulation: at every instant the shared [`Schedule`] has tasks
//! due, the engine builds a snapshot (`snapshot.rs`), runs them and applies their outputs the way
//! the control plane and the proxies do. Plans follow [`PlanUpdate::touched`]: each service an
//! update speaks for gets exactly its plans (validated like a proxy validates them: an invalid
//! plan is refused and the last good one stays), every other service keeps its own. Scale
//! decisions go through [`actuate`] to the simulated actuator, which starts and stops containers
//! and refuses CPU / memory limits and brownout (the twin does not model them yet).
//!
//! [`Schedule`]: loadshift_policy::schedule::Schedule

use std::{collections::BTreeMap, time::Duration};

use loadshift_core::plan::ServicePlan;
use loadshift_policy::{
    ActionKind, ActuateError, Actuator, PlanUpdate, ScaleDecision, actuate, schedule::Action,
};

use super::{
    engine::{Engine, Refusal},
    world::NONE,
};

/// The simulator as an actuator: replica changes only.
struct Containers<'a>(&'a mut Engine);

impl Actuator for Containers<'_> {
    fn name(&self) -> &str {
        "sim"
    }

    fn supports(&self) -> &[ActionKind] {
        &[ActionKind::Replicas]
    }

    fn apply(&mut self, d: &ScaleDecision) -> Result<(), ActuateError> {
        self.0.apply_scale(d);
        Ok(())
    }
}

impl Engine {
    /// Runs the tasks due now and applies what they produced; queues the next round.
    pub(super) fn control_round(&mut self) {
        let snap = self.snapshot();
        let round = self.schedule.run_due(&snap);
        for out in &round.outputs {
            match &out.action {
                Action::Plans(up) => self.apply_plans(up),
                Action::Decisions(ds) => {
                    for d in ds {
                        self.scale_decisions.push(d.clone());
                        if let Err(e) = actuate(&mut Containers(self), d) {
                            self.refusals.push(Refusal {
                                decision: d.clone(),
                                error: e.to_string(),
                            });
                        }
                    }
                }
            }
        }
        if let Some(trace) = self.trace.as_mut() {
            trace.push((snap, round));
        }
        self.push_control();
    }

    fn svc_index(&self, name: &str) -> Option<usize> {
        self.svc_names.iter().position(|n| n == name)
    }

    /// Gives every service the update speaks for exactly its plans in the update.
    fn apply_plans(&mut self, up: &PlanUpdate) {
        let now = Duration::from_nanos(self.now);
        for name in up.touched() {
            let Some(s) = self.svc_index(name) else {
                continue;
            };
            let plans = up.for_service(name);
            let wide = match plans.wide {
                Some(sp) if !self.valid(s, sp) => self.w.svcs[s].plan.clone(),
                other => other.cloned(),
            };
            let mut per_proxy = std::collections::HashMap::new();
            for (proxy_id, sp) in plans.per_proxy {
                let Some(&p) = self.w.proxy_index.get(proxy_id) else {
                    self.plan_rejections += 1;
                    continue;
                };
                if !self.w.proxies[p as usize]
                    .out
                    .iter()
                    .any(|o| o.svc as usize == s)
                {
                    self.plan_rejections += 1;
                    continue;
                }
                if self.valid(s, sp) {
                    per_proxy.insert(p, sp.clone());
                } else if let Some(old) = self.w.svcs[s].per_proxy.get(&p) {
                    per_proxy.insert(p, old.clone());
                }
            }
            let svc = &mut self.w.svcs[s];
            let wide_changed = svc.plan != wide;
            let mut changed: Vec<u32> = per_proxy
                .iter()
                .filter(|(p, sp)| svc.per_proxy.get(p) != Some(sp))
                .map(|(&p, _)| p)
                .collect();
            changed.extend(svc.per_proxy.keys().filter(|p| !per_proxy.contains_key(p)));
            self.rec.plan_pushes += u64::from(wide_changed) + changed.len() as u64;
            svc.plan = wide;
            svc.per_proxy = per_proxy;
            for (p, k) in svc.callers.clone() {
                if changed.contains(&p)
                    || (wide_changed && !self.w.svcs[s].per_proxy.contains_key(&p))
                {
                    self.w.rebuild_outbound(p, k as usize, now);
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
    fn apply_scale(&mut self, d: &ScaleDecision) {
        let Some(s) = self.svc_index(&d.service) else {
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
