//! The event loop: one binary heap of events ordered by (time, sequence), the report-interval
//! clock, the control rounds of the shared schedule, the proxies' latency-outlier rounds, and the
//! end of the run (drain, unfinished requests). The request path itself is in `request.rs`, the
//! control side in `snapshot.rs` and `control.rs`.

use std::{cmp::Reverse, collections::BinaryHeap, sync::Arc, time::Duration};

use loadshift_core::{
    balance::slow_start::SlowStart,
    outlier::{LatencyEjection, LatencySample, OutlierParams, Transition, latency_outliers},
};
use loadshift_policy::{
    ApplicationState, ScaleDecision, Snapshot,
    schedule::{Role, Round, Schedule},
};
use rand::{SeedableRng, rngs::SmallRng};

use super::{
    calls::{CallRec, Req},
    events::{Event, ns, secs},
    summary::{self, Recorder},
    world::World,
};
use crate::scenario::{ArrivalState, InterferenceModel, Placement, Scenario, dist::Normals};

/// A decision the simulated actuator refused, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub decision: ScaleDecision,
    pub error: String,
}

pub(super) struct Engine {
    pub(super) w: World,
    pub(super) heap: BinaryHeap<Reverse<(u64, u64, Event)>>,
    pub(super) seq: u64,
    pub(super) now: u64,
    pub(super) rng_work: SmallRng,
    pub(super) rng_bal: SmallRng,
    pub(super) normals: Normals,
    pub(super) arrivals: Vec<ArrivalState>,
    pub(super) calls: Vec<CallRec>,
    pub(super) free_calls: Vec<u32>,
    pub(super) reqs: Vec<Req>,
    pub(super) free_reqs: Vec<u32>,
    pub(super) live_reqs: u64,
    pub(super) rec: Recorder,
    pub(super) schedule: Schedule,
    /// Every round with the snapshot it read, when tracing.
    pub(super) trace: Option<Vec<(Snapshot, Round)>>,
    /// The step log (`steps.rs`): per control round, what each service was offered and carried,
    /// how fast, under which routing and blocking; kept when the scenario has a management
    /// objective.
    pub(super) steps: Option<crate::steps::Recorder>,
    pub(super) scale_decisions: Vec<ScaleDecision>,
    pub(super) refusals: Vec<Refusal>,
    /// The scenario as one application, with its management objective (its services never
    /// change, so every snapshot shares this one).
    pub(super) application: Arc<ApplicationState>,
    pub(super) duration_ns: u64,
    pub(super) warmup_ns: u64,
    pub(super) report_ns: u64,
    pub(super) next_report: u64,
    pub(super) interference: InterferenceModel,
    /// Where scaled-out containers start, and the host the next round-robin placement tries.
    pub(super) placement: Placement,
    pub(super) next_host: usize,
    pub(super) outlier: OutlierParams,
    /// The latency detector, when the scenario's `ejection.latency` enables it.
    pub(super) latency: Option<LatencyEjection>,
    pub(super) slow_start: SlowStart,
    /// Latency-outlier ejections, every proxy together.
    pub(super) latency_ejections: u64,
    pub(super) timeout_ns: Vec<u64>,
    pub(super) sla_ns: Vec<u64>,
    pub(super) svc_names: Vec<String>,
    pub(super) host_names: Vec<String>,
    /// Container-seconds bookkeeping: when the count last changed.
    pub(super) cs_last: u64,
    pub(super) events: u64,
    pub(super) last_snapshot_ns: u64,
    pub(super) plan_rejections: u64,
}

impl Engine {
    pub fn new(s: &Scenario, seed: u64, schedule: Schedule) -> Self {
        let w = World::build(s);
        // Separate streams: arrivals (one per flow), work (service times, call probabilities,
        // errors) and balancing, so policies compared on one seed see the same arrivals.
        let arrivals = s
            .flows
            .iter()
            .enumerate()
            .map(|(i, f)| {
                ArrivalState::new(
                    f.arrival.clone(),
                    seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1)),
                )
            })
            .collect();
        // Convergence is counted in control intervals: the shortest planner interval (the
        // planners of one scenario usually share theirs).
        let control_ns = schedule
            .tasks()
            .iter()
            .filter(|t| t.role == Role::Planner)
            .map(|t| t.interval.as_nanos() as u64)
            .min()
            .unwrap_or(5_000_000_000)
            .max(1);
        let flows: Vec<(&str, f64)> = s
            .flows
            .iter()
            .map(|f| (f.name.as_str(), f.sla.percentile))
            .collect();
        let mut rec = Recorder::new(w.svcs.len(), w.hosts.len(), control_ns, &flows);
        rec.full_control_intervals = (ns(s.duration_s) / control_ns.max(1)) as usize;
        // Changes inside the last quarter would be judged against a tail they are part of.
        rec.onset_interval =
            (ns(summary::onset_s(s, 0.75 * s.duration_s)) / control_ns.max(1)) as usize;
        Engine {
            rec,
            svc_names: w.svcs.iter().map(|x| x.name.clone()).collect(),
            host_names: w.hosts.iter().map(|h| h.name.clone()).collect(),
            w,
            heap: BinaryHeap::new(),
            seq: 0,
            now: 0,
            rng_work: SmallRng::seed_from_u64(seed.wrapping_add(1)),
            rng_bal: SmallRng::seed_from_u64(seed.wrapping_add(2)),
            normals: Normals::default(),
            arrivals,
            calls: Vec::new(),
            free_calls: Vec::new(),
            reqs: Vec::new(),
            free_reqs: Vec::new(),
            live_reqs: 0,
            schedule,
            trace: None,
            steps: s
                .policy
                .management
                .is_some()
                .then(crate::steps::Recorder::default),
            scale_decisions: Vec::new(),
            refusals: Vec::new(),
            application: Arc::new(ApplicationState {
                services: s.services.iter().map(|x| x.name.clone()).collect(),
                management: s.policy.management.clone(),
            }),
            duration_ns: ns(s.duration_s),
            warmup_ns: ns(s.warmup_s),
            report_ns: ns(s.report_interval_s).max(1),
            next_report: ns(s.report_interval_s).max(1),
            interference: s.interference.clone(),
            placement: s.placement,
            next_host: 0,
            outlier: s.ejection.params(),
            latency: s.ejection.latency(),
            slow_start: s.slow_start,
            latency_ejections: 0,
            timeout_ns: s.flows.iter().map(|f| ns(f.timeout_ms / 1e3)).collect(),
            sla_ns: s.flows.iter().map(|f| ns(f.sla.latency_ms / 1e3)).collect(),
            cs_last: 0,
            events: 0,
            last_snapshot_ns: 0,
            plan_rejections: 0,
        }
    }

    /// Queues the next control round, if the schedule has one before the end.
    pub(super) fn push_control(&mut self) {
        if let Some(t) = self.schedule.next_due() {
            let t = t.as_nanos() as u64;
            if t <= self.duration_ns {
                self.push(t.max(self.now), Event::Control);
            }
        }
    }

    /// The latency detector's round in every proxy over every downstream service, as the proxy's
    /// `ejection::judge` does it: read and restart each endpoint's tally, judge the eligible
    /// ones, eject the outliers. Then the next round, while requests still arrive.
    fn outlier_round(&mut self) {
        let Some(p) = self.latency else { return };
        let now = Duration::from_nanos(self.now);
        for proxy in &mut self.w.proxies {
            for ob in &mut proxy.out {
                let samples: Vec<LatencySample> = ob
                    .tally
                    .iter_mut()
                    .zip(&ob.outlier)
                    .map(|(t, o)| t.take(o.is_ejected(now)))
                    .collect();
                let eligible = ob.bal.eligible();
                let judged: Vec<LatencySample> = eligible.iter().map(|&i| samples[i]).collect();
                let verdict = latency_outliers(&judged, &p);
                for k in verdict.normal {
                    ob.outlier[eligible[k]].judged_normal();
                }
                for k in verdict.eject {
                    let t = ob.outlier[eligible[k]].eject_slow(&self.outlier, now);
                    self.latency_ejections += u64::from(t != Transition::None);
                }
            }
        }
        let next = self.now + p.interval().as_nanos() as u64;
        if next < self.duration_ns {
            self.push(next, Event::Outliers);
        }
    }

    pub(super) fn interference_self_load(&self) -> bool {
        self.interference.self_load
    }

    pub(super) fn push(&mut self, t: u64, ev: Event) {
        self.seq += 1;
        self.heap.push(Reverse((t, self.seq, ev)));
    }

    /// Runs to the end: arrivals stop at `duration_s`, then requests in flight drain for up to
    /// the longest flow timeout; whatever is still unfinished then counts as failed.
    pub fn run(&mut self, progress: &mut dyn FnMut(f64)) {
        let dur_s = secs(self.duration_ns);
        for f in 0..self.arrivals.len() {
            if let Some(t) = self.arrivals[f].next_after(0.0, dur_s) {
                self.push(ns(t), Event::Arrival(f as u32));
            }
        }
        self.push_control();
        if let Some(p) = self.latency {
            let first = p.interval().as_nanos() as u64;
            if first < self.duration_ns {
                self.push(first, Event::Outliers);
            }
        }
        let hard_end =
            self.duration_ns + self.timeout_ns.iter().copied().max().unwrap_or(0) + 1_000_000_000;
        while let Some(Reverse((t, _, ev))) = self.heap.pop() {
            if t > hard_end {
                break;
            }
            while self.next_report < self.duration_ns && t >= self.next_report {
                self.now = self.next_report;
                self.close_interval();
                progress(secs(self.now));
                self.next_report += self.report_ns;
            }
            self.now = t;
            self.events += 1;
            match ev {
                Event::Arrival(f) => self.arrival(f as usize),
                Event::CallArrive(c) => self.arrive(c),
                Event::Done(c) => self.done(c),
                Event::Control => self.control_round(),
                Event::Outliers => self.outlier_round(),
            }
            if t >= self.duration_ns && self.live_reqs == 0 {
                break;
            }
        }
        while self.next_report < self.duration_ns {
            self.now = self.next_report;
            self.close_interval();
            self.next_report += self.report_ns;
        }
        self.now = self.now.max(self.duration_ns);
        self.account_containers();
        let unfinished = self.reqs.iter().filter(|r| r.live && r.counted).count() as u64;
        self.rec.counts.failed += unfinished;
        self.rec.counts.unfinished += unfinished;
        self.close_interval_at(secs(self.duration_ns));
        progress(secs(self.duration_ns));
    }

    fn close_interval(&mut self) {
        self.close_interval_at(secs(self.now));
    }

    fn close_interval_at(&mut self, t_s: f64) {
        let containers = self
            .w
            .svcs
            .iter()
            .map(|x| (x.name.clone(), x.members.len() as u32))
            .collect();
        self.rec
            .close_interval(t_s, &self.svc_names, &self.host_names, containers);
    }

    /// Adds active containers x time since the last change, clipped to [warm-up, duration].
    pub fn account_containers(&mut self) {
        let t0 = self.cs_last.max(self.warmup_ns);
        let t1 = self.now.min(self.duration_ns);
        if t1 > t0 {
            let n: usize = self.w.svcs.iter().map(|x| x.members.len()).sum();
            self.rec.container_seconds += n as f64 * secs(t1 - t0);
        }
        self.cs_last = self.cs_last.max(self.now);
    }
}
