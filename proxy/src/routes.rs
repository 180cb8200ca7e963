//! The route table every worker reads: services by authority, their endpoints with live state,
//! the balancer and the admission gates built from the plan in force. Swapped whole through
//! `arc-swap` on a plan or membership change, so a request never waits for an update and an update
//! never sees half a table. Endpoint state (telemetry, ejection) and gates (in-flight counts) are
//! carried over by key into the new table; an endpoint new to a service that had endpoints starts
//! its slow start ramp there.
//!
//! An endpoint also keeps the latest load report its inbound sidecar sent (`loadshift-load`,
//! [`crate::load`]) in atomics, for `prequal`; the inbound endpoint (the local app) keeps the
//! latency by requests in flight it reports from.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;

use crate::{FastMap, config::Protocol, load::Report, metrics::EndpointMetrics};
use loadshift_core::{
    admission::Gate,
    balance::{Balancer, Loads, Reported, slow_start::SlowStart},
    endpoint::Endpoint,
    outlier::{Outlier, OutlierParams, Tally, Transition},
    plan::{Plan, ServicePlan},
    telemetry::{EndpointTelemetry, RifLatency, TelemetryParams, ewma},
};

/// The locked part of an endpoint's state.
#[derive(Debug)]
pub struct Tracked {
    pub t: EndpointTelemetry,
    pub outlier: Outlier,
    /// Calls since the latency-outlier detector last read them (`crate::ejection`).
    pub tally: Tally,
    /// Latency by requests in flight at arrival; fed only on the inbound endpoint, whose
    /// reports it makes ([`EndpointState::record_inbound`]).
    pub by_rif: RifLatency,
}

impl std::ops::Deref for Tracked {
    type Target = EndpointTelemetry;
    fn deref(&self) -> &EndpointTelemetry {
        &self.t
    }
}

/// Live state of one upstream endpoint, shared by all workers.
#[derive(Debug)]
pub struct EndpointState {
    pub endpoint: Endpoint,
    pub in_flight: AtomicU32,
    /// Mirror of the Peak-EWMA estimate (f64 bits), so picking takes no lock.
    ewma_ns: AtomicU64,
    /// Clock reading (ns) of the estimate's last sample, for its idle decay.
    ewma_last_ns: AtomicU64,
    /// The estimate's decay time constant, ns.
    ewma_tau_ns: f64,
    /// Ejected until this clock reading (ns); 0 = not ejected.
    ejected_until_ns: AtomicU64,
    /// Slow start ramps from this clock reading (ns): when the endpoint joined, or when its last
    /// ejection ends. [`NOT_WARMING`]: present from the start and never ejected.
    warm_since_ns: AtomicU64,
    /// Its latest load report: requests in flight (high 32 bits) and latency in ms (`f32` bits).
    report: AtomicU64,
    /// Clock reading (ns) when that report arrived; 0 before the first.
    report_at_ns: AtomicU64,
    /// Requests sent to it since that report (Prequal's increment on use).
    sent_since_report: AtomicU32,
    /// What the network and the proxies add on the way to it, ns (`f64` bits; NaN before the
    /// first report that says the app's own time): a mean with weight [`OVERHEAD_WEIGHT`].
    overhead_ns: AtomicU64,
    /// Window, Peak-EWMA and ejection state behind one lock: one acquisition per call.
    pub telemetry: Mutex<Tracked>,
    pub metrics: EndpointMetrics,
}

/// `warm_since_ns` of an endpoint with no ramp to run.
const NOT_WARMING: u64 = u64::MAX;

/// Weight of a call in an endpoint's overhead mean: 1/8, about its last eight calls (the same
/// memory as the app's own latency estimate, `loadshift_core::telemetry::rif_latency::WEIGHT`).
const OVERHEAD_WEIGHT: f64 = 0.125;

impl EndpointState {
    /// `per_endpoint`: see [`EndpointMetrics::new`]; `joining`: the endpoint joined a service
    /// that already had endpoints, so slow start ramps it from `now`.
    pub fn new(
        service: &str,
        endpoint: Endpoint,
        p: &TelemetryParams,
        now: Duration,
        per_endpoint: bool,
        joining: bool,
    ) -> Self {
        let t = EndpointTelemetry::new(p, now);
        Self {
            metrics: EndpointMetrics::new(service, &endpoint, per_endpoint),
            endpoint,
            in_flight: AtomicU32::new(0),
            ewma_ns: AtomicU64::new(t.ewma.estimate_ns().to_bits()),
            ewma_last_ns: AtomicU64::new(t.ewma.last().as_nanos() as u64),
            ewma_tau_ns: t.ewma.tau_ns(),
            ejected_until_ns: AtomicU64::new(0),
            warm_since_ns: AtomicU64::new(if joining {
                now.as_nanos() as u64
            } else {
                NOT_WARMING
            }),
            report: AtomicU64::new(0),
            report_at_ns: AtomicU64::new(0),
            sent_since_report: AtomicU32::new(0),
            overhead_ns: AtomicU64::new(f64::NAN.to_bits()),
            telemetry: Mutex::new(Tracked {
                t,
                outlier: Outlier::default(),
                tally: Tally::default(),
                by_rif: RifLatency::default(),
            }),
        }
    }

    /// A request leaves for it: one more in flight (and sent since its last report). Returns
    /// how many were in flight before this one, the RIF a latency sample is filed under.
    pub fn begin(&self) -> u32 {
        self.sent_since_report.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed)
    }

    /// Keeps an upstream's load report (the outbound side, [`crate::load`]); `latency` is the
    /// call's as this proxy measured it, which, less the app's own time the report states, is
    /// the overhead on the way.
    pub fn store_report(&self, r: Report, now: Duration, latency: Duration) {
        if let Some(app_ms) = r.app_ms {
            let x = (latency.as_nanos() as f64 - app_ms * 1e6).max(0.0);
            let old = self.overhead_ns();
            let new = if old.is_nan() {
                x
            } else {
                old + OVERHEAD_WEIGHT * (x - old)
            };
            self.overhead_ns.store(new.to_bits(), Ordering::Relaxed);
        }
        let packed = (u64::from(r.rif) << 32) | u64::from((r.latency_ms as f32).to_bits());
        self.report.store(packed, Ordering::Relaxed);
        self.sent_since_report.store(0, Ordering::Relaxed);
        // After the value: a reader that sees the time sees this report or a later one.
        self.report_at_ns
            .store((now.as_nanos() as u64).max(1), Ordering::Release);
    }

    /// Its latest report as the balancer reads it at `now`: the requests in flight it reported
    /// plus those sent since, its latency, its age. `None` before the first.
    pub fn reported(&self, now: Duration) -> Option<Reported> {
        let at = self.report_at_ns.load(Ordering::Acquire);
        if at == 0 {
            return None;
        }
        let (rif, latency_ms) = self.report_parts();
        let overhead = self.overhead_ns();
        Some(Reported {
            rif: rif.saturating_add(self.sent_since_report.load(Ordering::Relaxed)),
            latency_ms,
            overhead_ms: if overhead.is_nan() {
                0.0
            } else {
                overhead / 1e6
            },
            age: now.saturating_sub(Duration::from_nanos(at)),
        })
    }

    /// The overhead mean, ns; NaN before the first sample.
    pub fn overhead_ns(&self) -> f64 {
        f64::from_bits(self.overhead_ns.load(Ordering::Relaxed))
    }

    /// The latest report as it came: requests in flight and latency, ms.
    pub fn report_parts(&self) -> (u32, f64) {
        let packed = self.report.load(Ordering::Relaxed);
        (
            (packed >> 32) as u32,
            f64::from(f32::from_bits(packed as u32)),
        )
    }

    /// Requests sent since the latest report.
    pub fn sent_since_report(&self) -> u32 {
        self.sent_since_report.load(Ordering::Relaxed)
    }

    /// Time of the latest report, if any.
    pub fn report_at(&self) -> Option<Duration> {
        match self.report_at_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// Records one finished call: window, Peak-EWMA, the latency tally and ejection.
    pub fn record(&self, p: &OutlierParams, now: Duration, latency: Duration, ok: bool) {
        self.record_then(p, now, latency, ok, |_| ());
    }

    /// [`record`](Self::record) for the local app's call on the inbound side, under the same
    /// lock: a success's latency is filed under `rif_at_arrival`, and the report for the caller
    /// is made from the requests in flight now (this one done), the estimate at that many and
    /// this call's own time. Failures are not filed: an app failing fast must not look fast.
    pub fn record_inbound(
        &self,
        p: &OutlierParams,
        now: Duration,
        latency: Duration,
        ok: bool,
        rif_at_arrival: u32,
    ) -> Option<Report> {
        self.record_then(p, now, latency, ok, |g| {
            if ok {
                g.by_rif.observe(rif_at_arrival, latency);
            }
            let rif = self.in_flight.load(Ordering::Relaxed);
            let latency_ms = g.by_rif.estimate_ms(rif)?;
            Some(Report {
                rif,
                latency_ms,
                app_ms: Some(latency.as_secs_f64() * 1e3),
            })
        })
    }

    fn record_then<T>(
        &self,
        p: &OutlierParams,
        now: Duration,
        latency: Duration,
        ok: bool,
        then: impl FnOnce(&mut Tracked) -> T,
    ) -> T {
        let (transition, out) = {
            let mut g = self.telemetry.lock();
            g.t.record(now, latency, !ok);
            g.tally.record(latency);
            self.ewma_ns
                .store(g.t.ewma.estimate_ns().to_bits(), Ordering::Relaxed);
            self.ewma_last_ns
                .store(g.t.ewma.last().as_nanos() as u64, Ordering::Relaxed);
            let transition = g.outlier.observe(p, now, ok);
            (transition, then(&mut g))
        };
        self.eject_on(transition);
        out
    }

    fn eject_on(&self, transition: Transition) {
        if let Transition::Ejected { until } = transition {
            self.mark_ejected(until);
            self.metrics.ejections.increment(1);
            tracing::warn!(endpoint = %self.endpoint.addr, until_s = until.as_secs_f64(), "endpoint ejected");
        }
    }

    /// Ejects the endpoint as a latency outlier (`crate::ejection`), with the latency backoff.
    pub fn eject_slow(&self, p: &OutlierParams, now: Duration, mean: Duration) {
        let transition = self.telemetry.lock().outlier.eject_slow(p, now);
        if let Transition::Ejected { until } = transition {
            self.mark_ejected(until);
            self.metrics.latency_ejections.increment(1);
            tracing::warn!(
                endpoint = %self.endpoint.addr,
                mean_ms = mean.as_secs_f64() * 1e3,
                until_s = until.as_secs_f64(),
                "endpoint ejected as a latency outlier"
            );
        }
    }

    /// Out of the balancer's choices until `until`, and ramped by slow start from then.
    fn mark_ejected(&self, until: Duration) {
        let ns = until.as_nanos() as u64;
        self.ejected_until_ns.store(ns, Ordering::Relaxed);
        self.warm_since_ns.store(ns, Ordering::Relaxed);
    }

    /// Slow start factor at `now` ([`SlowStart::factor`]); no atomic load with slow start off,
    /// one when not warming.
    pub fn warmth(&self, p: &SlowStart, now: Duration) -> f64 {
        if !p.is_on() {
            return 1.0;
        }
        match self.warm_since_ns.load(Ordering::Relaxed) {
            NOT_WARMING => 1.0,
            ns => p.factor(now, Some(Duration::from_nanos(ns))),
        }
    }

    pub fn ewma_ns(&self) -> f64 {
        f64::from_bits(self.ewma_ns.load(Ordering::Relaxed))
    }

    /// P2C's cost at `now` ([`loadshift_core::telemetry::ewma::cost_ns`]: idle estimates decay).
    pub fn cost(&self, now: Duration) -> f64 {
        let last = Duration::from_nanos(self.ewma_last_ns.load(Ordering::Relaxed));
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        ewma::cost_ns(self.ewma_ns(), last, now, self.ewma_tau_ns, in_flight)
    }

    pub fn is_ejected(&self, now: Duration) -> bool {
        (now.as_nanos() as u64) < self.ejected_until_ns.load(Ordering::Relaxed)
    }
}

/// One service as the request path sees it.
#[derive(Debug)]
pub struct ServiceRoute {
    pub name: String,
    pub protocol: Protocol,
    pub endpoints: Vec<Arc<EndpointState>>,
    pub balancer: Balancer,
    /// Gates per priority class; `"*"` applies to classes without their own.
    pub gates: FastMap<String, Arc<Gate>>,
    pub plan: Option<ServicePlan>,
}

/// `Loads` over live endpoint state at one clock reading.
pub struct LiveLoads<'a> {
    pub endpoints: &'a [Arc<EndpointState>],
    pub now: Duration,
    pub slow_start: &'a SlowStart,
    /// Endpoints this request already failed on before sending: a retry goes elsewhere when
    /// any other endpoint is available.
    pub tried: &'a [usize],
}

impl Loads for LiveLoads<'_> {
    fn cost(&self, i: usize) -> f64 {
        self.endpoints[i].cost(self.now)
    }

    fn available(&self, i: usize) -> bool {
        !self.tried.contains(&i) && !self.endpoints[i].is_ejected(self.now)
    }

    fn in_flight(&self, i: usize) -> u32 {
        self.endpoints[i].in_flight.load(Ordering::Relaxed)
    }

    fn warmth(&self, i: usize) -> f64 {
        self.endpoints[i].warmth(self.slow_start, self.now)
    }

    fn reported(&self, i: usize) -> Option<Reported> {
        self.endpoints[i].reported(self.now)
    }
}

impl ServiceRoute {
    /// The gate for a class (its own, else `"*"`).
    pub fn gate(&self, class: &str) -> Option<&Gate> {
        if self.gates.is_empty() {
            return None;
        }
        self.gates
            .get(class)
            .or_else(|| self.gates.get("*"))
            .map(Arc::as_ref)
    }

    /// Endpoint list as plans see it.
    pub fn endpoint_list(&self) -> Vec<Endpoint> {
        self.endpoints.iter().map(|e| e.endpoint.clone()).collect()
    }
}

/// Everything needed to (re)build a service route.
pub struct RouteSpec<'a> {
    pub name: &'a str,
    pub protocol: Protocol,
    pub endpoints: Vec<Endpoint>,
    pub plan: Option<&'a ServicePlan>,
}

/// Builds a service route, reusing endpoint state and gates from `old` by key.
pub fn build_service(
    spec: RouteSpec<'_>,
    old: Option<&ServiceRoute>,
    identity: &str,
    p: &TelemetryParams,
    now: Duration,
) -> ServiceRoute {
    let per_endpoint = spec.endpoints.len() <= crate::metrics::ENDPOINT_SERIES_MAX;
    // A service's first endpoints have nothing to be protected from; later ones join under load.
    let joining = old.is_some_and(|o| !o.endpoints.is_empty());
    let endpoints: Vec<Arc<EndpointState>> = spec
        .endpoints
        .into_iter()
        .map(|ep| {
            old.and_then(|o| o.endpoints.iter().find(|e| e.endpoint == ep).cloned())
                .unwrap_or_else(|| {
                    Arc::new(EndpointState::new(
                        spec.name,
                        ep,
                        p,
                        now,
                        per_endpoint,
                        joining,
                    ))
                })
        })
        .collect();
    let eps: Vec<Endpoint> = endpoints.iter().map(|e| e.endpoint.clone()).collect();
    let balancer = Balancer::new(&eps, spec.plan, identity);
    let gates = spec
        .plan
        .map(|sp| {
            sp.blocking
                .iter()
                .map(|(class, b)| {
                    let gate = match old.and_then(|o| o.gates.get(class)) {
                        Some(g) => {
                            g.set(b.fraction, b.max_in_flight);
                            g.clone()
                        }
                        None => Arc::new(Gate::new(b.fraction, b.max_in_flight)),
                    };
                    (class.clone(), gate)
                })
                .collect()
        })
        .unwrap_or_default();
    ServiceRoute {
        name: spec.name.to_string(),
        protocol: spec.protocol,
        endpoints,
        balancer,
        gates,
        plan: spec.plan.cloned(),
    }
}

/// The whole table.
#[derive(Debug)]
pub struct Routes {
    pub services: Vec<ServiceRoute>,
    /// Lower-case authority (no port) -> index into `services`.
    pub by_authority: FastMap<String, usize>,
    pub default_service: Option<usize>,
    /// The local app behind the inbound listener (sidecar mode).
    pub inbound: Option<ServiceRoute>,
    /// The plan in force (version 0 and empty before any plan).
    pub plan: Arc<Plan>,
    /// Bumped on every swap; workers prune idle connections the new table no longer allows.
    pub generation: u64,
}

impl Routes {
    /// The service an authority routes to.
    pub fn lookup(&self, authority: Option<&str>) -> Option<&ServiceRoute> {
        let idx = authority
            .map(strip_port)
            .and_then(|a| {
                self.by_authority.get(a).or_else(|| {
                    // Allocates only for an authority that has upper case in it.
                    a.bytes()
                        .any(|b| b.is_ascii_uppercase())
                        .then(|| self.by_authority.get(&a.to_ascii_lowercase()))
                        .flatten()
                })
            })
            .copied()
            .or(self.default_service)?;
        self.services.get(idx)
    }

    /// Endpoints per service, as plan validation needs them.
    pub fn known_endpoints(&self) -> HashMap<String, Vec<Endpoint>> {
        self.services
            .iter()
            .map(|s| (s.name.clone(), s.endpoint_list()))
            .collect()
    }
}

/// `host:port` or `[v6]:port` -> host.
pub fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("web:8080"), "web");
        assert_eq!(strip_port("web"), "web");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }

    #[test]
    fn endpoints_joining_later_warm_up_and_first_ones_do_not() {
        let p = TelemetryParams::default();
        let ss = SlowStart::with_window(Duration::from_secs(10));
        let s = Duration::from_secs(1);
        let ep = |port: u16| {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            Endpoint::new(addr, "h", "z", format!("c{port}"))
        };
        let spec = |endpoints| RouteSpec {
            name: "s",
            protocol: Protocol::Auto,
            endpoints,
            plan: None,
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        let a = build_service(spec(vec![ep(1)]), None, "me", &p, Duration::ZERO);
        assert_eq!(a.endpoints[0].warmth(&ss, Duration::ZERO), 1.0);
        let t = 100 * s;
        let b = build_service(spec(vec![ep(1), ep(2)]), Some(&a), "me", &p, t);
        assert_eq!(b.endpoints[0].warmth(&ss, t), 1.0);
        assert!(close(b.endpoints[1].warmth(&ss, t), 0.1));
        assert!(close(b.endpoints[1].warmth(&ss, t + 5 * s), 0.5));
        assert_eq!(b.endpoints[1].warmth(&ss, t + 10 * s), 1.0);
        // Back from an ejection (1 s, the first backoff): ramped from its end.
        let slow = &b.endpoints[0];
        slow.eject_slow(&OutlierParams::default(), t, 50 * s);
        assert!(slow.is_ejected(t) && !slow.is_ejected(t + s));
        assert!(close(slow.warmth(&ss, t + s), 0.1));
        assert!(close(slow.warmth(&ss, t + 6 * s), 0.5));
        // A service's first endpoints (a discovery result for a service that had none) are not
        // ramped.
        let empty = build_service(spec(vec![]), None, "me", &p, Duration::ZERO);
        let c = build_service(spec(vec![ep(3)]), Some(&empty), "me", &p, t);
        assert_eq!(c.endpoints[0].warmth(&ss, t), 1.0);
    }

    #[test]
    fn rebuild_keeps_endpoint_state_and_gate_counts() {
        let p = TelemetryParams::default();
        let ep = Endpoint::new("127.0.0.1:1".parse().unwrap(), "h", "z", "c");
        let mut sp = ServicePlan::default();
        sp.blocking.insert(
            "*".into(),
            loadshift_core::plan::Blocking {
                fraction: 0.0,
                max_in_flight: Some(1),
            },
        );
        let spec = |plan| RouteSpec {
            name: "s",
            protocol: Protocol::Auto,
            endpoints: vec![ep.clone()],
            plan,
        };
        let a = build_service(spec(Some(&sp)), None, "me", &p, Duration::ZERO);
        let permit = a.gate("gold").unwrap().admit().unwrap();
        a.endpoints[0].in_flight.store(3, Ordering::Relaxed);
        let b = build_service(spec(Some(&sp)), Some(&a), "me", &p, Duration::ZERO);
        assert!(Arc::ptr_eq(&a.endpoints[0], &b.endpoints[0]));
        // The cap of 1 is still taken by the permit granted under the old table.
        assert!(b.gate("gold").unwrap().admit().is_err());
        drop(permit);
        assert!(b.gate("gold").unwrap().admit().is_ok());
    }
}
