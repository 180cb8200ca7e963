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
    /// Between sidecars: `mesh` (mTLS, `mesh_tls`) or `off` (plaintext).
    pub tls: &'static str,
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
    /// Its latest load report (`loadshift-load`), what `prequal` balances on; absent before the
    /// first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported: Option<ReportedStats>,
}

/// An endpoint's latest load report as `/stats` shows it.
#[derive(Debug, Serialize)]
pub struct ReportedStats {
    /// Requests in flight at the app, as reported.
    pub rif: u32,
    /// Requests this proxy sent it since (counted on top of `rif`).
    pub sent_since: u32,
    /// The app's latency estimate at that load, ms.
    pub latency_ms: f64,
    /// What the network and the proxies add on this proxy's way to it, ms (added to
    /// `latency_ms` by `prequal`); absent until a report stated the app's own time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overhead_ms: Option<f64>,
    /// Time since the report arrived, ms (`prequal` drops reports older than 1000).
    pub age_ms: f64,
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
                reported: e.report_at().map(|at| {
                    let (rif, latency_ms) = e.report_parts();
                    ReportedStats {
                        rif,
                        sent_since: e.sent_since_report(),
                        latency_ms,
                        overhead_ms: Some(e.overhead_ns() / 1e6).filter(|v| !v.is_nan()),
                        age_ms: now.saturating_sub(at).as_secs_f64() * 1e3,
                    }
                }),
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
        tls: crate::tls::mesh_mode(&shared.config),
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
