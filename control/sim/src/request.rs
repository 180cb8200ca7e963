//! The request path.
//!
//! A request enters at its flow's ingress proxy and becomes a tree of calls. Each call: admission
//! by the caller proxy's gate -> endpoint choice by the caller proxy's balancer -> network delay
//! (inter-zone RTT) -> the container's queue (c servers, FIFO) -> service time x interference ->
//! the service's calls (in sequence or in parallel, each with its probability) -> the response
//! back to the caller, which feeds the caller's Peak-EWMA, outlier state (and the latency
//! detector's tally) and the container's windows, and carries the container's load report (its
//! calls in flight and latency estimate at that load, as the inbound sidecar's `loadshift-load`).
//! The balancer reads ejection, slow start and the reports. The response of the root call ends
//! the request.
//!
//! A call that fails (the container's error, no endpoint, blocked) fails its request, unless it
//! is to an optional service or below one: the optional service's caller goes on without it and
//! the request is degraded, not failed, as `loadshift app --optional` does in the lab.

use std::time::Duration;

use loadshift_core::telemetry::window::Window;
use rand::Rng;

use super::{
    calls::{CallRec, Req},
    engine::Engine,
    events::{Event, ns, secs},
    world::{LiveLoads, NONE, OVERHEAD_WEIGHT, Report},
};
use crate::scenario::CallMode;

impl Engine {
    pub(super) fn arrival(&mut self, f: usize) {
        if let Some(t) = self.arrivals[f].next_after(secs(self.now), secs(self.duration_ns)) {
            self.push(ns(t).max(self.now + 1), Event::Arrival(f as u32));
        }
        let counted = self.now >= self.warmup_ns;
        let r = Req {
            flow: f as u16,
            t_start: self.now,
            blocked: false,
            failed: false,
            counted,
            live: true,
        };
        let req = match self.free_reqs.pop() {
            Some(i) => {
                self.reqs[i as usize] = r;
                i
            }
            None => {
                self.reqs.push(r);
                (self.reqs.len() - 1) as u32
            }
        };
        self.rec.arrived(f, counted);
        self.w.flows[f].arrivals += 1;
        self.live_reqs += 1;
        let (p, slot) = self.w.ingress[f];
        if !self.send(p, slot, NONE, req) {
            self.finish_request(req);
        }
    }

    /// Sends one call from proxy `p`'s outbound `slot`; false when it was blocked or had nowhere
    /// to go (the request is marked accordingly and nothing was sent).
    fn send(&mut self, p: u32, slot: u16, parent: u32, req: u32) -> bool {
        let flow = self.reqs[req as usize].flow as usize;
        let now_d = Duration::from_nanos(self.now);
        let proxy = &mut self.w.proxies[p as usize];
        let pzone = proxy.zone;
        let ob = &mut proxy.out[slot as usize];
        let svc = ob.svc;
        self.w.svcs[svc as usize].offered += 1;
        let degradable = parent != NONE
            && (self.w.svcs[svc as usize].optional || self.calls[parent as usize].degradable);
        let mut gated = false;
        if let Some(g) = ob.gates.get_mut(flow) {
            let blocked = g.gate.admit().is_err() || g.cap.is_some_and(|c| g.in_flight >= c);
            if blocked {
                self.w.svcs[svc as usize].blocked += 1;
                if !degradable {
                    self.reqs[req as usize].blocked = true;
                }
                return false;
            }
            g.in_flight += 1;
            gated = true;
        }
        let pick = ob.bal.pick(
            &mut self.rng_bal,
            &LiveLoads {
                ob: &*ob,
                now: now_d,
                slow_start: &self.slow_start,
            },
        );
        let Some(i) = pick else {
            if let Some(g) = ob.gates.get_mut(flow).filter(|_| gated) {
                g.in_flight -= 1;
            }
            if !degradable {
                self.reqs[req as usize].failed = true;
            }
            return false;
        };
        let c = ob.layout[i];
        ob.in_flight[i] += 1;
        ob.sent_since[i] += 1;
        let ctr = &mut self.w.ctrs[c as usize];
        ctr.in_flight += 1;
        let (czone, host) = (ctr.zone, ctr.host as usize);
        self.rec.calls[svc as usize * self.rec.n_hosts + host] += 1;
        self.rec.counts.calls += 1;
        let delay = self.w.rtt_ns(pzone, czone, secs(self.now));
        let rec = CallRec {
            req,
            parent,
            svc,
            ctr: c,
            proxy: p,
            slot,
            next: 0,
            pending: 0,
            error: false,
            degradable,
            gated,
            t_send: self.now,
            t_arrive: self.now + delay,
            rif_at_arrive: 0,
        };
        let call = match self.free_calls.pop() {
            Some(k) => {
                self.calls[k as usize] = rec;
                k
            }
            None => {
                self.calls.push(rec);
                (self.calls.len() - 1) as u32
            }
        };
        if delay == 0 {
            self.arrive(call);
        } else {
            self.push(self.now + delay, Event::CallArrive(call));
        }
        true
    }

    pub(super) fn arrive(&mut self, call: u32) {
        let c = self.calls[call as usize].ctr as usize;
        self.calls[call as usize].t_arrive = self.now;
        self.calls[call as usize].rif_at_arrive = self.w.ctrs[c].rif;
        self.w.ctrs[c].rif += 1;
        let servers = self.w.svcs[self.w.ctrs[c].svc as usize].servers;
        if self.w.ctrs[c].busy < servers {
            self.start(call);
        } else {
            self.w.ctrs[c].queue.push_back(call);
        }
    }

    fn start(&mut self, call: u32) {
        let c = self.calls[call as usize].ctr as usize;
        let ctr = &mut self.w.ctrs[c];
        ctr.busy += 1;
        let (svc, h) = (ctr.svc as usize, ctr.host as usize);
        let host = &mut self.w.hosts[h];
        host.busy += 1;
        let t = secs(self.now);
        let mut cpu = host.cpu.at(t);
        if self.interference.self_load {
            cpu += f64::from(host.busy) / f64::from(host.cores);
        }
        let factor = self
            .interference
            .factor(cpu, host.membw.at(t), host.net.at(t));
        let work = self.w.svcs[svc]
            .st
            .sample_ns(&mut self.rng_work, &mut self.normals)
            * factor;
        let work = (work as u64).max(1);
        self.w.ctrs[c].busy_ns += work;
        self.push(self.now + work, Event::Done(call));
    }

    pub(super) fn done(&mut self, call: u32) {
        let cr = self.calls[call as usize];
        let now_d = Duration::from_nanos(self.now);
        let ctr = &mut self.w.ctrs[cr.ctr as usize];
        ctr.busy -= 1;
        self.w.hosts[ctr.host as usize].busy -= 1;
        ctr.inbound
            .record(now_d, Duration::from_nanos(self.now - cr.t_arrive), false);
        if let Some(next) = ctr.queue.pop_front() {
            self.start(next);
        }
        let er = self.w.svcs[cr.svc as usize].error_rate;
        if er > 0.0 && self.rng_work.random::<f64>() < er {
            self.calls[call as usize].error = true;
            self.reply(call);
        } else {
            self.children(call);
        }
    }

    /// Makes the service's downstream calls (or the next one, in sequence mode); replies when
    /// there is nothing (left) to wait for.
    fn children(&mut self, call: u32) {
        let cr = self.calls[call as usize];
        let svc = cr.svc as usize;
        let p = self.w.ctrs[cr.ctr as usize].proxy;
        let n = self.w.svcs[svc].calls.len();
        match self.w.svcs[svc].mode {
            CallMode::Sequence => {
                let mut j = cr.next as usize;
                while j < n {
                    let (_, prob, slot) = self.w.svcs[svc].calls[j];
                    j += 1;
                    self.calls[call as usize].next = j as u16;
                    if prob < 1.0 && self.rng_work.random::<f64>() >= prob {
                        continue;
                    }
                    if self.send(p, slot, call, cr.req) {
                        self.calls[call as usize].pending = 1;
                        return;
                    }
                }
                self.reply(call);
            }
            CallMode::Parallel => {
                for j in 0..n {
                    let (_, prob, slot) = self.w.svcs[svc].calls[j];
                    if prob < 1.0 && self.rng_work.random::<f64>() >= prob {
                        continue;
                    }
                    if self.send(p, slot, call, cr.req) {
                        self.calls[call as usize].pending += 1;
                    }
                }
                if self.calls[call as usize].pending == 0 {
                    self.reply(call);
                }
            }
        }
    }

    /// The call's response reaches its caller.
    fn reply(&mut self, call: u32) {
        let cr = self.calls[call as usize];
        self.free_calls.push(call);
        let now_d = Duration::from_nanos(self.now);
        let latency = Duration::from_nanos(self.now - cr.t_send);
        let flow = self.reqs[cr.req as usize].flow as usize;
        let edge = self.w.edge(cr.proxy, cr.svc);
        self.w.edge_calls[edge] += 1;
        let s = &mut self.w.svcs[cr.svc as usize];
        s.answered += 1;
        s.answered_ns += self.now - cr.t_send;
        let ctr = &mut self.w.ctrs[cr.ctr as usize];
        ctr.in_flight -= 1;
        ctr.outbound.record(now_d, latency, cr.error);
        if self.w.zones.len() > 1 {
            let z = self.w.proxies[cr.proxy as usize].zone as usize;
            let tp = &self.w.tp;
            let ctr = &mut self.w.ctrs[cr.ctr as usize];
            if ctr.outbound_by_zone.len() <= z {
                ctr.outbound_by_zone.resize_with(z + 1, || None);
            }
            ctr.outbound_by_zone[z]
                .get_or_insert_with(|| Box::new(Window::new(tp.slots, tp.slot_width)))
                .record(now_d, latency, cr.error);
        }
        let ctr = &mut self.w.ctrs[cr.ctr as usize];
        let i = ctr.slot as usize;
        // The container's inbound sidecar: this call's time there (a failure's not filed: a
        // replica failing fast must not look fast), then its report.
        let here = Duration::from_nanos(self.now - cr.t_arrive);
        ctr.rif -= 1;
        if !cr.error {
            ctr.load.observe(cr.rif_at_arrive, here);
        }
        let rif = ctr.rif;
        let report = ctr.load.estimate_ms(rif).map(|latency_ms| Report {
            rif,
            latency_ms,
            at: now_d,
        });
        let ob = &mut self.w.proxies[cr.proxy as usize].out[cr.slot as usize];
        // Scaled-in containers have left the caller's endpoint list; nothing to update there.
        if ob.layout.get(i) == Some(&cr.ctr) {
            ob.in_flight[i] = ob.in_flight[i].saturating_sub(1);
            // The data plane's rule (EndpointTelemetry::record): failures feed the estimate only
            // when they are slower than it.
            if !cr.error || latency.as_nanos() as f64 > ob.ewma[i].estimate_ns() {
                ob.ewma[i].observe(now_d, latency);
            }
            ob.outlier[i].observe(&self.outlier, now_d, !cr.error);
            ob.tally[i].record(latency);
            if report.is_some() {
                ob.reports[i] = report;
                ob.sent_since[i] = 0;
                let x = (latency - here).as_secs_f64() * 1e3;
                let o = &mut ob.overhead_ms[i];
                *o = Some(o.map_or(x, |m| m + OVERHEAD_WEIGHT * (x - m)));
            }
        }
        if cr.gated
            && let Some(g) = ob.gates.get_mut(flow)
        {
            g.in_flight = g.in_flight.saturating_sub(1);
        }
        if cr.error && !cr.degradable {
            self.reqs[cr.req as usize].failed = true;
        }
        if cr.parent == NONE {
            self.finish_request(cr.req);
            return;
        }
        let par = cr.parent as usize;
        self.calls[par].pending -= 1;
        if self.calls[par].pending == 0 {
            match self.w.svcs[self.calls[par].svc as usize].mode {
                CallMode::Sequence => self.children(cr.parent),
                CallMode::Parallel => self.reply(cr.parent),
            }
        }
    }

    fn finish_request(&mut self, req: u32) {
        let r = self.reqs[req as usize];
        self.reqs[req as usize].live = false;
        self.free_reqs.push(req);
        self.live_reqs -= 1;
        if r.blocked {
            self.rec.counts.blocked += u64::from(r.counted);
            return;
        }
        let f = r.flow as usize;
        let latency = self.now - r.t_start;
        let failed = r.failed || latency > self.timeout_ns[f];
        self.w.flows[f].e2e.record(
            Duration::from_nanos(self.now),
            Duration::from_nanos(latency),
            failed,
        );
        if r.counted {
            if failed {
                self.rec.counts.failed += 1;
            } else {
                self.rec.counts.completed += 1;
            }
        }
        let violated = failed || latency > self.sla_ns[f];
        self.rec.answered(f, self.now, latency, r.counted, violated);
    }
}
