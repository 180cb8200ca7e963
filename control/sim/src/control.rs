//! The control plane inside the simulation: at every instant the shared [`Schedule`] has tasks
//! due, the engine builds a snapshot (`snapshot.rs`), runs them and applies their outputs the way
//! the control plane and the proxies do. Plans follow [`PlanUpdate::touched`]: each service an
//! update speaks for gets exactly its plans (validated like a proxy validates them: an invalid
//! plan is refused and the last good one stays), every other service keeps its own. Scale
//! decisions go through [`actuate`] to the simulated actuator, which starts and stops containers
//! (on the hosts the scenario's `placement` picks) and refuses CPU / memory limits and brownout
//! (the twin does not model them yet).
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
use crate::{
    scenario::Placement,
    steps::{ServiceStep, StepLog},
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
        if self.steps.is_some() {
            self.log_step();
        }
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

    /// Starts containers on the hosts [`Engine::place`] picks, or stops the newest ones (never the
    /// last one). Stopped containers finish the work already queued at them. A new container's
    /// service times follow its host's interference schedules like every other container there
    /// (the request path reads them through the container's host).
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
                let host = self.place();
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

    /// The host of the next container a scaler adds, by the scenario's `placement`.
    fn place(&mut self) -> usize {
        match self.placement {
            Placement::RoundRobin => {
                let h = self.next_host % self.w.hosts.len().max(1);
                self.next_host = h + 1;
                h
            }
            Placement::MostFreeCores => self.roomiest_host(),
        }
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

impl Engine {
    /// Closes the step that ends now.
    pub(super) fn log_step(&mut self) {
        let Some(rec) = self.steps.as_mut() else {
            return;
        };
        let len_ns = self.now.saturating_sub(rec.last_ns);
        rec.last_ns = self.now;
        rec.prev.resize(self.w.svcs.len(), [0; 4]);
        if len_ns == 0 {
            return;
        }
        let len_s = len_ns as f64 / 1e9;
        let mut services = BTreeMap::new();
        for (svc, prev) in self.w.svcs.iter().zip(rec.prev.iter_mut()) {
            let now = [svc.offered, svc.blocked, svc.answered, svc.answered_ns];
            let d: Vec<u64> = now.iter().zip(prev.iter()).map(|(a, b)| a - b).collect();
            *prev = now;
            let plan = svc.plan.as_ref();
            let hosts: std::collections::BTreeSet<&str> =
                svc.eps.iter().map(|e| e.host.as_str()).collect();
            let mut host_shares: BTreeMap<String, f64> = plan
                .map(|p| {
                    p.host_weights
                        .iter()
                        .filter(|(h, w)| hosts.contains(h.as_str()) && w.is_finite() && **w >= 0.0)
                        .map(|(h, w)| (h.clone(), *w))
                        .collect()
                })
                .unwrap_or_default();
            let sum: f64 = host_shares.values().sum();
            if sum > 0.0 {
                host_shares.values_mut().for_each(|w| *w /= sum);
            } else {
                host_shares.clear();
            }
            services.insert(
                svc.name.clone(),
                ServiceStep {
                    offered_rps: d[0] as f64 / len_s,
                    carried_rps: (d[0] - d[1].min(d[0])) as f64 / len_s,
                    mean_ms: (d[2] > 0).then(|| d[3] as f64 / d[2] as f64 / 1e6),
                    host_shares,
                    block: plan
                        .and_then(|p| p.blocking.get("*"))
                        .map_or(0.0, |b| b.fraction),
                },
            );
        }
        rec.log.push(StepLog {
            t_s: self.now as f64 / 1e9,
            len_s,
            services,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use loadshift_policy::{ScaleDecision, Scaler, Snapshot};

    use crate::{Policies, SimOptions, engine::Engine, scenario::Scenario};

    /// Asks for five containers of every service, every 10 s.
    struct Five;

    impl Scaler for Five {
        fn name(&self) -> &str {
            "five"
        }
        fn interval(&self) -> Duration {
            Duration::from_secs(10)
        }
        fn scale(&mut self, snap: &Snapshot) -> Vec<ScaleDecision> {
            snap.services
                .values()
                .map(|s| ScaleDecision {
                    service: s.name.clone(),
                    from: s.containers.len() as u32,
                    to: 5,
                    reason: "test".into(),
                    ..Default::default()
                })
                .collect()
        }
    }

    /// Runs one container on `small` scaled to five, and returns the engine after the run.
    fn scaled_out(placement: &str) -> Engine {
        let yaml = format!(
            "name: place
duration_s: 30
placement: {placement}
hosts:
  - {{name: small, cores: 2}}
  - {{name: big, cores: 16}}
  - {{name: noisy, cores: 8, interference: {{cpu: 0.9}}}}
services:
  - {{name: q, service_time: {{dist: constant, mean_ms: 5}}, replicas: {{small: 1}}}}
flows:
  - {{name: f, entry: q, arrival: {{process: constant, rate: 20}}, sla: {{latency_ms: 100}}}}
policy: {{planner: even}}
"
        );
        let s = Scenario::parse(&yaml, None).unwrap();
        let p = Policies::resolve(&s, &SimOptions::default())
            .unwrap()
            .with_scaler(&s, Box::new(Five));
        let mut e = Engine::new(&s, 1, p.schedule);
        e.run(&mut |_| {});
        e
    }

    fn hosts(e: &Engine) -> Vec<&str> {
        e.w.svcs[0]
            .members
            .iter()
            .map(|&c| e.w.hosts[e.w.ctrs[c as usize].host as usize].name.as_str())
            .collect()
    }

    #[test]
    fn round_robin_places_over_the_hosts_in_order() {
        let mut e = scaled_out("round-robin");
        assert_eq!(hosts(&e), ["small", "small", "big", "noisy", "small"]);
        // The container started on the noisy host runs under that host's interference
        // (1 + 0.5 * 0.9 / 0.1 = 5.5x the 5 ms of work); the others run at 5 ms. At 4 requests
        // per second each, queueing adds little.
        e.now = e.duration_ns;
        let snap = e.snapshot();
        for c in &snap.services["q"].containers {
            let mean = c.inbound.map_or(0.0, |w| w.mean_ms);
            let work = if c.endpoint.host == "noisy" {
                27.5
            } else {
                5.0
            };
            assert!(
                mean >= work && mean < 1.15 * work,
                "{}: {mean} ms, work {work} ms",
                c.endpoint.host
            );
        }
    }

    #[test]
    fn most_free_cores_fills_the_roomiest_host() {
        // big: 16 free cores, then 15, 14, 13; noisy never has more than 8, small 1.
        let e = scaled_out("most-free-cores");
        assert_eq!(hosts(&e), ["small", "big", "big", "big", "big"]);
    }
}
