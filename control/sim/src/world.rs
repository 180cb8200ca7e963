//! The simulated system's state: services, containers with their queues and telemetry windows,
//! and one proxy per container (plus one ingress proxy per zone) holding, per downstream service,
//! the real data-plane [`Balancer`], Peak-EWMA estimates, in-flight counts, outlier state (and the
//! latency detector's tallies), slow start, admission gates, and the load each container last
//! reported with a response (what `prequal` reads, as the proxy's `loadshift-load` header).
//!
//! A container reports as its inbound sidecar would: requests in flight are the calls it has
//! (queued, in service, or waiting on their own downstream calls), latency its [`RifLatency`]
//! estimate at that load, from the time its calls spent there, and the answered call's own time,
//! from which the caller learns the network time on its way there (inter-zone RTT); the report's
//! age is the time since that caller's last response from it.

use std::{
    collections::{HashMap, VecDeque},
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use loadshift_core::{
    admission::Gate,
    balance::{Balancer, Loads, Reported, slow_start::SlowStart},
    endpoint::Endpoint,
    outlier::{Outlier, Tally},
    plan::ServicePlan,
    telemetry::{PeakEwma, RifLatency, TelemetryParams, Window},
};

use crate::scenario::{CallMode, Scenario, Schedule, ServiceTime};
use loadshift_policy::Objective;

/// "No index" marker in the compact u32 links.
pub(super) const NONE: u32 = u32::MAX;

pub(super) struct Svc {
    pub name: String,
    pub st: ServiceTime,
    pub servers: u32,
    pub mode: CallMode,
    pub error_rate: f64,
    /// A failed call to it does not fail the caller (the scenario's `optional`).
    pub optional: bool,
    /// (child service, probability, outbound slot of the caller's proxy).
    pub calls: Vec<(u32, f64, u16)>,
    /// Distinct child services; position = outbound slot.
    pub children: Vec<u32>,
    /// Active containers in endpoint order (index = endpoint index in balancers).
    pub members: Vec<u32>,
    pub eps: Vec<Endpoint>,
    /// Proxies calling this service and the outbound slot they use for it.
    pub callers: Vec<(u32, u16)>,
    /// Plan for every caller, and per-proxy plans that win over it.
    pub plan: Option<ServicePlan>,
    pub per_proxy: HashMap<u32, ServicePlan>,
    pub objective: Option<Objective>,
    /// Calls attempted (including blocked), cumulative; and the value at the last snapshot.
    pub offered: u64,
    pub offered_at_snapshot: u64,
    /// Calls refused by a caller's gate, calls answered and their latency summed (caller side),
    /// cumulative: the step log's counters (`steps.rs`).
    pub blocked: u64,
    pub answered: u64,
    pub answered_ns: u64,
}

pub(super) struct Ctr {
    pub svc: u32,
    pub host: u32,
    pub zone: u32,
    pub proxy: u32,
    pub busy: u32,
    pub queue: VecDeque<u32>,
    /// The container's own queue + service latency (its inbound sidecar's view).
    pub inbound: Window,
    /// Calls to this container as every caller saw them, merged.
    pub outbound: Window,
    /// The same calls by the callers' zone index, when the scenario has more than one zone
    /// (made on a zone's first call).
    pub outbound_by_zone: Vec<Option<Box<Window>>>,
    pub in_flight: u32,
    /// Endpoint index in its service, `NONE` once scaled in.
    pub slot: u32,
    /// Service time started here, cumulative, ns (the container's CPU use); and its value at the
    /// last snapshot.
    pub busy_ns: u64,
    pub busy_ns_at_snapshot: u64,
    /// Calls that arrived and are not answered yet: the requests in flight its sidecar counts.
    pub rif: u32,
    /// Its calls' time there by the calls there at arrival, for its load reports.
    pub load: RifLatency,
}

/// A load report as a caller keeps it: what the container said, and when.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Report {
    pub rif: u32,
    pub latency_ms: f64,
    pub at: Duration,
}

/// Weight of a call in a caller's mean overhead to an endpoint (the proxy's `OVERHEAD_WEIGHT`).
pub(super) const OVERHEAD_WEIGHT: f64 = 0.125;

/// One request class: where it enters, its SLA and its end-to-end latency as the ingress sees it.
pub(super) struct FlowRt {
    pub name: String,
    pub entry: u32,
    pub sla: Objective,
    pub e2e: Window,
    /// Requests that arrived, cumulative; and the value at the last snapshot.
    pub arrivals: u64,
    pub arrivals_at_snapshot: u64,
}

/// Admission state of one (caller proxy, service, flow). The gate draws the drop fraction; the
/// in-flight cap is counted here because a `Permit` borrows its gate and cannot be held across
/// simulated events.
pub(super) struct GateSlot {
    pub gate: Gate,
    pub cap: Option<u32>,
    pub in_flight: u32,
}

/// One proxy's view of one downstream service.
pub(super) struct Outbound {
    pub svc: u32,
    pub bal: Balancer,
    /// Container index per endpoint index when the vectors below were last laid out.
    pub layout: Vec<u32>,
    pub ewma: Vec<PeakEwma>,
    pub in_flight: Vec<u32>,
    pub outlier: Vec<Outlier>,
    /// Calls since the latency detector's last round.
    pub tally: Vec<Tally>,
    /// When the endpoint joined this proxy's list after the list was first laid out (slow start
    /// ramps from there, as in the proxy's `routes::build_service`); `None` for the first ones.
    pub joined: Vec<Option<Duration>>,
    /// Per flow; empty until a plan blocks.
    pub gates: Vec<GateSlot>,
    /// The latest load report from each endpoint, and the calls sent to it since.
    pub reports: Vec<Option<Report>>,
    pub sent_since: Vec<u32>,
    /// Mean network time on the way to each endpoint, ms (call latency minus the container's
    /// own time), once known.
    pub overhead_ms: Vec<Option<f64>>,
}

pub(super) struct Proxy {
    pub id: String,
    pub zone: u32,
    /// The container this proxy fronts; `NONE` for an ingress.
    pub ctr: u32,
    pub out: Vec<Outbound>,
}

/// The balancer's view of live load: Peak-EWMA cost, ejection and slow start.
pub(super) struct LiveLoads<'a> {
    pub ob: &'a Outbound,
    pub now: Duration,
    pub slow_start: &'a SlowStart,
}

impl Loads for LiveLoads<'_> {
    fn cost(&self, i: usize) -> f64 {
        self.ob.ewma[i].cost(self.now, self.ob.in_flight[i])
    }
    fn available(&self, i: usize) -> bool {
        !self.ob.outlier[i].is_ejected(self.now)
    }
    fn in_flight(&self, i: usize) -> u32 {
        self.ob.in_flight[i]
    }
    /// Ramped from when it joined or its last ejection ends, whichever is later (the proxy's
    /// `EndpointState::warmth`).
    fn warmth(&self, i: usize) -> f64 {
        if !self.slow_start.is_on() {
            return 1.0;
        }
        let since = self.ob.joined[i].max(self.ob.outlier[i].ejected_until());
        self.slow_start.factor(self.now, since)
    }
    /// The container's last report plus what this proxy sent it since (the proxy's
    /// `EndpointState::reported`).
    fn reported(&self, i: usize) -> Option<Reported> {
        let r = self.ob.reports[i]?;
        Some(Reported {
            rif: r.rif.saturating_add(self.ob.sent_since[i]),
            latency_ms: r.latency_ms,
            overhead_ms: self.ob.overhead_ms[i].unwrap_or(0.0),
            age: self.now.saturating_sub(r.at),
        })
    }
}

pub(super) struct HostRt {
    pub name: String,
    pub cores: u32,
    pub cpu: Schedule,
    pub membw: Schedule,
    pub net: Schedule,
    pub zone_ix: u32,
    /// Busy servers of simulated containers on this host.
    pub busy: u32,
}

/// Static structure plus live state, built from a scenario.
pub(super) struct World {
    pub svcs: Vec<Svc>,
    pub ctrs: Vec<Ctr>,
    pub proxies: Vec<Proxy>,
    pub hosts: Vec<HostRt>,
    pub zones: Vec<String>,
    /// Row-major zone x zone RTT schedules, ms.
    pub rtt: Vec<Option<Schedule>>,
    /// Per flow: (ingress proxy, outbound slot).
    pub ingress: Vec<(u32, u16)>,
    pub flow_names: Vec<String>,
    pub flows: Vec<FlowRt>,
    /// Completed calls per (caller service + 1, or 0 for ingress) x callee service, cumulative;
    /// and the values at the last snapshot.
    pub edge_calls: Vec<u64>,
    pub edge_calls_at_snapshot: Vec<u64>,
    pub tp: TelemetryParams,
    pub proxy_index: HashMap<String, u32>,
}

/// A synthetic, unique address per container: 10.x.y.z:8080.
pub(super) fn addr(ctr: u32) -> SocketAddr {
    let n = ctr + 1;
    SocketAddr::from((
        Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8),
        8080,
    ))
}

impl World {
    /// Builds the world of a validated scenario (every name lookup below resolves: validation
    /// checked each reference).
    pub fn build(s: &Scenario) -> Self {
        let tp = s.telemetry.params();
        let zones = s.zone_names();
        let names = zones.clone();
        let zone_ix: HashMap<&str, u32> = names
            .iter()
            .enumerate()
            .map(|(i, z)| (z.as_str(), i as u32))
            .collect();
        let nz = zones.len();
        let mut rtt = vec![None; nz * nz];
        for r in &s.rtt {
            let (a, b) = (
                zone_ix[r.between[0].as_str()] as usize,
                zone_ix[r.between[1].as_str()] as usize,
            );
            rtt[a * nz + b] = Some(r.ms.clone());
            rtt[b * nz + a] = Some(r.ms.clone());
        }
        let hosts: Vec<HostRt> = s
            .hosts
            .iter()
            .map(|h| HostRt {
                name: h.name.clone(),
                cores: h.cores,
                cpu: h.interference.cpu.clone(),
                membw: h.interference.membw.clone(),
                net: h.interference.net.clone(),
                zone_ix: zone_ix[h.zone.as_str()],
                busy: 0,
            })
            .collect();
        let host_ix: HashMap<&str, u32> = s
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.as_str(), i as u32))
            .collect();
        let svc_ix: HashMap<&str, u32> = s
            .services
            .iter()
            .enumerate()
            .map(|(i, x)| (x.name.as_str(), i as u32))
            .collect();
        let mut svcs: Vec<Svc> = s
            .services
            .iter()
            .map(|x| {
                let mut children: Vec<u32> = Vec::new();
                let calls = x
                    .calls
                    .iter()
                    .map(|c| {
                        let child = svc_ix[c.service.as_str()];
                        let slot = children
                            .iter()
                            .position(|&k| k == child)
                            .unwrap_or_else(|| {
                                children.push(child);
                                children.len() - 1
                            });
                        (child, c.probability, slot as u16)
                    })
                    .collect();
                let objective = x
                    .objective
                    .as_ref()
                    .or_else(|| s.flows.iter().find(|f| f.entry == x.name).map(|f| &f.sla))
                    .map(|o| Objective {
                        sla_ms: o.latency_ms,
                        percentile: o.percentile,
                    });
                Svc {
                    name: x.name.clone(),
                    st: x.service_time.clone(),
                    servers: x.concurrency,
                    mode: x.mode,
                    error_rate: x.error_rate,
                    optional: x.optional,
                    calls,
                    children,
                    members: Vec::new(),
                    eps: Vec::new(),
                    callers: Vec::new(),
                    plan: None,
                    per_proxy: HashMap::new(),
                    objective,
                    offered: 0,
                    offered_at_snapshot: 0,
                    blocked: 0,
                    answered: 0,
                    answered_ns: 0,
                }
            })
            .collect();
        let mut w = World {
            svcs: Vec::new(),
            ctrs: Vec::new(),
            proxies: Vec::new(),
            hosts,
            zones,
            rtt,
            ingress: Vec::new(),
            flow_names: s.flows.iter().map(|f| f.name.clone()).collect(),
            flows: s
                .flows
                .iter()
                .map(|f| FlowRt {
                    name: f.name.clone(),
                    entry: svc_ix[f.entry.as_str()],
                    sla: Objective {
                        sla_ms: f.sla.latency_ms,
                        percentile: f.sla.percentile,
                    },
                    e2e: Window::new(tp.slots, tp.slot_width),
                    arrivals: 0,
                    arrivals_at_snapshot: 0,
                })
                .collect(),
            edge_calls: vec![0; (s.services.len() + 1) * s.services.len()],
            edge_calls_at_snapshot: vec![0; (s.services.len() + 1) * s.services.len()],
            tp,
            proxy_index: HashMap::new(),
        };
        // Containers: per service, per host in name order, so the layout is the same every run.
        for (si, x) in s.services.iter().enumerate() {
            for (h, &n) in &x.replicas {
                for _ in 0..n {
                    let host = host_ix[h.as_str()];
                    let c = w.new_container(&mut svcs, si as u32, host);
                    svcs[si].members.push(c);
                }
            }
        }
        for svc in &mut svcs {
            svc.eps = svc.members.iter().map(|&c| w.endpoint(c)).collect();
        }
        // Ingress proxies, one per zone that has flows, with one outbound slot per entry service.
        for f in &s.flows {
            let z = f.zone.as_deref().map_or(0, |z| zone_ix[z]);
            let id = format!("ingress-{}", w.zones[z as usize]);
            let p = *w.proxy_index.entry(id.clone()).or_insert_with(|| {
                w.proxies.push(Proxy {
                    id,
                    zone: z,
                    ctr: NONE,
                    out: Vec::new(),
                });
                (w.proxies.len() - 1) as u32
            });
            let entry = svc_ix[f.entry.as_str()];
            let slot = match w.proxies[p as usize]
                .out
                .iter()
                .position(|o| o.svc == entry)
            {
                Some(k) => k,
                None => {
                    w.proxies[p as usize].out.push(Outbound::placeholder(entry));
                    svcs[entry as usize]
                        .callers
                        .push((p, (w.proxies[p as usize].out.len() - 1) as u16));
                    w.proxies[p as usize].out.len() - 1
                }
            };
            w.ingress.push((p, slot as u16));
        }
        w.svcs = svcs;
        for p in 0..w.proxies.len() {
            for k in 0..w.proxies[p].out.len() {
                w.rebuild_outbound(p as u32, k, Duration::ZERO);
            }
        }
        w
    }

    /// Creates a container and its proxy (with one outbound slot per child service) and registers
    /// the proxy as a caller of those children. Endpoint lists are the caller's job.
    pub fn new_container(&mut self, svcs: &mut [Svc], svc: u32, host: u32) -> u32 {
        let c = self.ctrs.len() as u32;
        let p = self.proxies.len() as u32;
        let id = format!("{}-{}", svcs[svc as usize].name, c);
        let out: Vec<Outbound> = svcs[svc as usize]
            .children
            .iter()
            .map(|&ch| Outbound::placeholder(ch))
            .collect();
        for (k, &ch) in svcs[svc as usize].children.clone().iter().enumerate() {
            svcs[ch as usize].callers.push((p, k as u16));
        }
        self.proxy_index.insert(id.clone(), p);
        let zone = self.hosts[host as usize].zone_ix;
        self.proxies.push(Proxy {
            id,
            zone,
            ctr: c,
            out,
        });
        self.ctrs.push(Ctr {
            svc,
            host,
            zone,
            proxy: p,
            busy: 0,
            queue: VecDeque::new(),
            inbound: Window::new(self.tp.slots, self.tp.slot_width),
            outbound: Window::new(self.tp.slots, self.tp.slot_width),
            outbound_by_zone: Vec::new(),
            in_flight: 0,
            slot: svcs[svc as usize].members.len() as u32,
            busy_ns: 0,
            busy_ns_at_snapshot: 0,
            rif: 0,
            load: RifLatency::default(),
        });
        c
    }

    pub fn endpoint(&self, c: u32) -> Endpoint {
        let ctr = &self.ctrs[c as usize];
        Endpoint::new(
            addr(c),
            self.hosts[ctr.host as usize].name.clone(),
            self.zones[ctr.zone as usize].clone(),
            self.proxies[ctr.proxy as usize].id.clone(),
        )
    }

    /// Lays the per-endpoint vectors of one proxy's outbound slot out again for the service's
    /// current members (keeping state of containers still there) and rebuilds its balancer and
    /// gates from the plan in force.
    pub fn rebuild_outbound(&mut self, p: u32, k: usize, now: Duration) {
        let svc = &self.svcs[self.proxies[p as usize].out[k].svc as usize];
        let plan = svc.per_proxy.get(&p).or(svc.plan.as_ref());
        let proxy = &mut self.proxies[p as usize];
        let ob = &mut proxy.out[k];
        if ob.layout != svc.members {
            let old: HashMap<u32, usize> =
                ob.layout.iter().enumerate().map(|(i, &c)| (c, i)).collect();
            let mut ewma = Vec::with_capacity(svc.members.len());
            let mut in_flight = Vec::with_capacity(svc.members.len());
            let mut outlier = Vec::with_capacity(svc.members.len());
            let mut tally = Vec::with_capacity(svc.members.len());
            let mut joined = Vec::with_capacity(svc.members.len());
            let mut reports = Vec::with_capacity(svc.members.len());
            let mut sent_since = Vec::with_capacity(svc.members.len());
            let mut overhead_ms = Vec::with_capacity(svc.members.len());
            // A list's first endpoints have nothing to be protected from; later ones join under
            // load.
            let joining = (!ob.layout.is_empty()).then_some(now);
            for c in &svc.members {
                match old.get(c) {
                    Some(&i) => {
                        ewma.push(ob.ewma[i].clone());
                        in_flight.push(ob.in_flight[i]);
                        outlier.push(ob.outlier[i].clone());
                        tally.push(ob.tally[i]);
                        joined.push(ob.joined[i]);
                        reports.push(ob.reports[i]);
                        sent_since.push(ob.sent_since[i]);
                        overhead_ms.push(ob.overhead_ms[i]);
                    }
                    None => {
                        ewma.push(PeakEwma::new(self.tp.default_rtt, self.tp.ewma_tau, now));
                        in_flight.push(0);
                        outlier.push(Outlier::default());
                        tally.push(Tally::default());
                        joined.push(joining);
                        reports.push(None);
                        sent_since.push(0);
                        overhead_ms.push(None);
                    }
                }
            }
            ob.layout = svc.members.clone();
            ob.ewma = ewma;
            ob.in_flight = in_flight;
            ob.outlier = outlier;
            ob.tally = tally;
            ob.joined = joined;
            ob.reports = reports;
            ob.sent_since = sent_since;
            ob.overhead_ms = overhead_ms;
        }
        ob.bal = Balancer::new(&svc.eps, plan, &proxy.id);
        let blocks = plan.is_some_and(|pl| !pl.blocking.is_empty());
        if blocks && ob.gates.is_empty() {
            ob.gates = self
                .flow_names
                .iter()
                .map(|_| GateSlot {
                    gate: Gate::new(0.0, None),
                    cap: None,
                    in_flight: 0,
                })
                .collect();
        }
        for (f, g) in ob.gates.iter_mut().enumerate() {
            let b = plan.and_then(|pl| pl.blocking_for(&self.flow_names[f]));
            g.gate.set(b.map_or(0.0, |b| b.fraction), None);
            g.cap = b.and_then(|b| b.max_in_flight);
        }
    }

    /// Index into `edge_calls` of calls from proxy `p` to service `callee`.
    pub fn edge(&self, p: u32, callee: u32) -> usize {
        let caller = match self.proxies[p as usize].ctr {
            NONE => 0,
            c => self.ctrs[c as usize].svc as usize + 1,
        };
        caller * self.svcs.len() + callee as usize
    }

    /// Round-trip time between two zones at `t_s`, nanoseconds.
    pub fn rtt_ns(&self, a: u32, b: u32, t_s: f64) -> u64 {
        let n = self.zones.len();
        match &self.rtt[a as usize * n + b as usize] {
            Some(s) => (s.at(t_s).max(0.0) * 1e6) as u64,
            None => 0,
        }
    }
}

impl Outbound {
    fn placeholder(svc: u32) -> Self {
        Outbound {
            svc,
            bal: Balancer::new(&[], None, ""),
            layout: Vec::new(),
            ewma: Vec::new(),
            in_flight: Vec::new(),
            outlier: Vec::new(),
            tally: Vec::new(),
            joined: Vec::new(),
            gates: Vec::new(),
            reports: Vec::new(),
            sent_since: Vec::new(),
            overhead_ms: Vec::new(),
        }
    }
}
