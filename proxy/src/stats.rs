//! `/stats`: the telemetry windows as JSON, per endpoint and aggregated per host and zone, plus the
//! inbound (local app) window and host pressure. Also refreshes the Prometheus gauges derived
//! from the same windows at scrape time.

use std::{collections::BTreeMap, sync::Arc, sync::atomic::Ordering};

use serde::Serialize;

use crate::{admission::AdmissionStats, metrics as m, routes::ServiceRoute, state::Shared};
use loadshift_core::telemetry::{Aggregate, WindowSnapshot, pressure::HostPressure};

#[derive(Debug, Serialize)]
pub struct Stats {
    pub pod: String,
    pub plan_version: u64,
    pub services: Vec<ServiceStats>,
    pub inbound: Option<ServiceStats>,
    pub host_pressure: HostPressure,
    /// Client connections, requests in flight, resident memory, and what was refused or shed.
    pub admission: AdmissionStats,
}

#[derive(Debug, Serialize)]
pub struct ServiceStats {
    pub name: String,
    pub weighted: bool,
    pub endpoints: Vec<EndpointStats>,
    pub hosts: BTreeMap<String, WindowSnapshot>,
    pub zones: BTreeMap<String, WindowSnapshot>,
}

#[derive(Debug, Serialize)]
pub struct EndpointStats {
    pub addr: String,
    pub host: String,
    pub zone: String,
    pub container: String,
    /// May this proxy connect to it under the plan in force.
    pub eligible: bool,
    pub ejected: bool,
    /// Slow start factor in (0, 1]: the fraction of its share the endpoint gets now.
    pub warmth: f64,
    pub in_flight: u32,
    pub ewma_ms: f64,
    pub window: WindowSnapshot,
}

fn service_stats(s: &ServiceRoute, shared: &Shared) -> ServiceStats {
    let now = shared.clock.now();
    let mut hosts: BTreeMap<String, Aggregate> = BTreeMap::new();
    let mut zones: BTreeMap<String, Aggregate> = BTreeMap::new();
    let endpoints = s
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let t = e.telemetry.lock();
            hosts
                .entry(e.endpoint.host.clone())
                .or_default()
                .add(&t.window, now);
            zones
                .entry(e.endpoint.zone.clone())
                .or_default()
                .add(&t.window, now);
            EndpointStats {
                addr: e.endpoint.key().to_string(),
                host: e.endpoint.host.clone(),
                zone: e.endpoint.zone.clone(),
                container: e.endpoint.container.clone(),
                eligible: s.balancer.allows(i),
                ejected: e.is_ejected(now),
                warmth: e.warmth(&shared.config.slow_start, now),
                in_flight: e.in_flight.load(Ordering::Relaxed),
                ewma_ms: t.ewma.estimate_ns() / 1e6,
                window: t.window.snapshot(now),
            }
        })
        .collect();
    ServiceStats {
        name: s.name.clone(),
        weighted: s.balancer.is_weighted(),
        endpoints,
        hosts: hosts.into_iter().map(|(k, a)| (k, a.snapshot())).collect(),
        zones: zones.into_iter().map(|(k, a)| (k, a.snapshot())).collect(),
    }
}

/// Snapshot of every window.
pub fn collect(shared: &Arc<Shared>) -> Stats {
    let routes = shared.routes.load_full();
    Stats {
        pod: shared.config.identity.pod.clone(),
        plan_version: routes.plan.version,
        services: routes
            .services
            .iter()
            .map(|s| service_stats(s, shared))
            .collect(),
        inbound: routes.inbound.as_ref().map(|s| service_stats(s, shared)),
        host_pressure: *shared.host.lock(),
        admission: shared.admission.stats(),
    }
}

/// Sets the window-derived gauges before a scrape.
pub fn refresh_gauges(shared: &Arc<Shared>) {
    let stats = collect(shared);
    shared.admission.refresh_gauges();
    for s in &stats.services {
        for e in &s.endpoints {
            let labels = [("service", s.name.clone()), ("endpoint", e.addr.clone())];
            metrics::gauge!(m::IN_FLIGHT, &labels).set(f64::from(e.in_flight));
            metrics::gauge!(m::EWMA, &labels).set(e.ewma_ms / 1000.0);
            for (q, v) in [
                ("50", e.window.p50_ms),
                ("95", e.window.p95_ms),
                ("99", e.window.p99_ms),
            ] {
                let mut l = labels.to_vec();
                l.push(("percentile", q.to_string()));
                metrics::gauge!(m::WINDOW_LATENCY, &l).set(v / 1000.0);
            }
        }
    }
    if let Some(i) = stats.inbound.as_ref().and_then(|i| i.endpoints.first()) {
        for (q, v) in [
            ("50", i.window.p50_ms),
            ("95", i.window.p95_ms),
            ("99", i.window.p99_ms),
        ] {
            metrics::gauge!(m::INBOUND_WINDOW_LATENCY, "percentile" => q).set(v / 1000.0);
        }
    }
    let p = stats.host_pressure;
    metrics::gauge!(m::HOST_CPU).set(p.cpu_util);
    for (r, v) in [
        ("cpu", p.psi_cpu),
        ("memory", p.psi_memory),
        ("io", p.psi_io),
    ] {
        if let Some(v) = v {
            metrics::gauge!(m::HOST_PSI, "resource" => r).set(v);
        }
    }
}
