//! Metric names and handles. Every metric the proxy exports is declared here and documented in
//! `docs/metrics.md`. Hot-path counters and the latency histogram are registered once per
//! endpoint (a counter increment is one atomic add; a histogram sample is appended to a lock-free
//! buffer that the admin thread folds into the buckets every [`UPKEEP`] and at each scrape);
//! window quantiles, in-flight and host pressure are gauges refreshed from the telemetry windows
//! when `/metrics` is scraped.

use std::time::Duration;

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use loadshift_core::endpoint::Endpoint;

pub const REQUESTS: &str = "loadshift_proxy_requests_total";
pub const RESPONSES: &str = "loadshift_proxy_responses_total";
pub const UPSTREAM_ERRORS: &str = "loadshift_proxy_upstream_errors_total";
pub const EJECTIONS: &str = "loadshift_proxy_ejections_total";
pub const LATENCY_EJECTIONS: &str = "loadshift_proxy_latency_ejections_total";
pub const BLOCKED: &str = "loadshift_proxy_blocked_total";
pub const UNROUTED: &str = "loadshift_proxy_unrouted_total";
pub const RETRIES: &str = "loadshift_proxy_retries_total";
pub const LOAD_REPORTS_INVALID: &str = "loadshift_proxy_load_reports_invalid_total";
pub const IN_FLIGHT: &str = "loadshift_proxy_in_flight";
pub const WINDOW_LATENCY: &str = "loadshift_proxy_window_latency_seconds";
pub const EWMA: &str = "loadshift_proxy_ewma_seconds";
pub const INBOUND_WINDOW_LATENCY: &str = "loadshift_proxy_inbound_window_latency_seconds";
pub const HOST_CPU: &str = "loadshift_proxy_host_cpu_utilisation";
pub const HOST_PSI: &str = "loadshift_proxy_host_psi_some_avg10";
pub const PLAN_VERSION: &str = "loadshift_proxy_plan_version";
pub const PLAN_REVISION: &str = "loadshift_proxy_plan_revision";
pub const PLAN_UPDATES: &str = "loadshift_proxy_plan_updates_total";
pub const CLIENT_CONNECTIONS: &str = "loadshift_proxy_client_connections";
pub const REQUESTS_IN_FLIGHT: &str = "loadshift_proxy_requests_in_flight";
pub const RESIDENT_BYTES: &str = "loadshift_proxy_resident_memory_bytes";
pub const OVERLOADED: &str = "loadshift_proxy_overloaded";
pub const SHED: &str = "loadshift_proxy_shed_total";
pub const CONNECTIONS_REFUSED: &str = "loadshift_proxy_connections_refused_total";
pub const ACCEPT_PAUSES: &str = "loadshift_proxy_accept_pauses_total";
pub const CLIENT_TIMEOUTS: &str = "loadshift_proxy_client_timeouts_total";
pub const UPGRADED_CONNECTIONS: &str = "loadshift_proxy_upgraded_connections";
pub const UPGRADED_ENDED: &str = "loadshift_proxy_upgraded_connections_ended_total";
pub const RESPONSE_LATENCY: &str = "loadshift_proxy_response_latency_seconds";
pub const MESH_TLS: &str = "loadshift_proxy_mesh_tls";

/// Buckets of [`RESPONSE_LATENCY`], seconds: 1 ms to 10 s, closest where microservice SLAs sit
/// (tens to hundreds of milliseconds), so `histogram_quantile` over them is within one bucket's
/// width of the true p95 there.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5,
    5.0, 10.0,
];

/// A service with more endpoints than this exports its latency histogram per service only: its
/// endpoints share the label `endpoint="other"`, which bounds the series to 20 per endpoint
/// (18 buckets, sum, count) times this cap per service.
pub const ENDPOINT_SERIES_MAX: usize = 32;

/// How often buffered histogram samples are folded into their buckets, so memory stays bounded
/// when nobody scrapes.
pub const UPKEEP: Duration = Duration::from_secs(5);

/// What a metric is, for its `# HELP` and `# TYPE` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric the proxy exports, with its kind and the `# HELP` text (the one-line form of
/// `docs/metrics.md`).
pub const HELP: &[(&str, Kind, &str)] = &[
    (
        REQUESTS,
        Kind::Counter,
        "Requests sent (or attempted) to the endpoint.",
    ),
    (
        RESPONSES,
        Kind::Counter,
        "Responses from the endpoint by status class.",
    ),
    (
        UPSTREAM_ERRORS,
        Kind::Counter,
        "Upstream failures by kind: connect, timeout, protocol.",
    ),
    (
        EJECTIONS,
        Kind::Counter,
        "Passive outlier ejections of the endpoint.",
    ),
    (
        LATENCY_EJECTIONS,
        Kind::Counter,
        "Latency-outlier ejections of the endpoint (ejection.latency).",
    ),
    (
        BLOCKED,
        Kind::Counter,
        "Requests refused by the plan's blocking, by class and reason.",
    ),
    (
        UNROUTED,
        Kind::Counter,
        "Requests whose authority matched no service (404).",
    ),
    (
        RETRIES,
        Kind::Counter,
        "Connection-failure retries taken from the retry budget.",
    ),
    (
        LOAD_REPORTS_INVALID,
        Kind::Counter,
        "Upstream loadshift-load fields dropped as malformed, oversized or repeated.",
    ),
    (
        IN_FLIGHT,
        Kind::Gauge,
        "Requests to the endpoint awaiting response headers.",
    ),
    (
        WINDOW_LATENCY,
        Kind::Gauge,
        "Latency percentiles of the endpoint's telemetry window (what planners see), seconds.",
    ),
    (
        RESPONSE_LATENCY,
        Kind::Histogram,
        "Time from picking the endpoint to its response headers, upstream failures included, seconds.",
    ),
    (
        EWMA,
        Kind::Gauge,
        "Peak-EWMA round-trip estimate of the endpoint, seconds.",
    ),
    (
        INBOUND_WINDOW_LATENCY,
        Kind::Gauge,
        "Latency percentiles of the local app's telemetry window, seconds.",
    ),
    (
        HOST_CPU,
        Kind::Gauge,
        "Host CPU busy fraction from /proc/stat.",
    ),
    (
        HOST_PSI,
        Kind::Gauge,
        "Pressure stall information, some avg10, per resource.",
    ),
    (
        PLAN_VERSION,
        Kind::Gauge,
        "Version of the last plan update applied (the control stream's, or the plan file's).",
    ),
    (
        PLAN_REVISION,
        Kind::Gauge,
        "Control-plane revision of the service's plan in force (as ctl status shows); 0 without one.",
    ),
    (PLAN_UPDATES, Kind::Counter, "Plans applied or rejected."),
    (
        CLIENT_CONNECTIONS,
        Kind::Gauge,
        "Open client connections per listener.",
    ),
    (
        REQUESTS_IN_FLIGHT,
        Kind::Gauge,
        "Requests admitted and waiting for a response head.",
    ),
    (
        RESIDENT_BYTES,
        Kind::Gauge,
        "Resident memory of the proxy, bytes.",
    ),
    (
        OVERLOADED,
        Kind::Gauge,
        "1 while resident memory is past the overload threshold.",
    ),
    (
        SHED,
        Kind::Counter,
        "Requests shed with 503 and retry-after by the overload manager.",
    ),
    (
        CONNECTIONS_REFUSED,
        Kind::Counter,
        "Client connections refused or evicted.",
    ),
    (
        ACCEPT_PAUSES,
        Kind::Counter,
        "Times a listener stopped accepting.",
    ),
    (
        CLIENT_TIMEOUTS,
        Kind::Counter,
        "Client limits that fired, by kind.",
    ),
    (
        UPGRADED_CONNECTIONS,
        Kind::Gauge,
        "Client connections switched to WebSocket and open.",
    ),
    (
        UPGRADED_ENDED,
        Kind::Counter,
        "Upgraded connections ended, by how.",
    ),
    (
        MESH_TLS,
        Kind::Gauge,
        "1 when sidecars talk mTLS (mesh_tls), 0 when the mesh is plaintext.",
    ),
    (
        crate::otel::SPANS,
        Kind::Counter,
        "OpenTelemetry spans by result: exported, dropped (queue full), failed (export failed).",
    ),
    (
        crate::otel::EXPORT_FAILURES,
        Kind::Counter,
        "OTLP export calls that failed.",
    ),
    (
        crate::control_client::METRIC_CONNECTED,
        Kind::Gauge,
        "1 while the stream to the control plane is open.",
    ),
    (
        crate::control_client::METRIC_RECONNECTS,
        Kind::Counter,
        "Control-plane stream ends followed by a reconnect.",
    ),
    (
        crate::control_client::METRIC_PLANS_APPLIED,
        Kind::Counter,
        "Plan updates from the control plane applied and acknowledged.",
    ),
    (
        crate::control_client::METRIC_PLANS_REJECTED,
        Kind::Counter,
        "Plan updates from the control plane refused.",
    ),
];

/// A label and every value it takes.
type KnownLabel = (&'static str, &'static [&'static str]);

/// Counters whose label values are known up front, registered at 0 so `rate()` and alerts see
/// them before the first event.
const KNOWN_AT_ZERO: &[(&str, Option<KnownLabel>)] = &[
    (UNROUTED, None),
    (ACCEPT_PAUSES, None),
    (PLAN_UPDATES, Some(("result", &["applied", "rejected"]))),
    (SHED, Some(("reason", &["in-flight", "memory"]))),
    (
        CONNECTIONS_REFUSED,
        Some(("reason", &["source-cap", "evicted"])),
    ),
    (CLIENT_TIMEOUTS, Some(("kind", &["header", "body", "send"]))),
    (
        UPGRADED_ENDED,
        Some(("end", &["closed", "idle", "error", "drain"])),
    ),
    (crate::control_client::METRIC_RECONNECTS, None),
    (crate::control_client::METRIC_PLANS_APPLIED, None),
    (crate::control_client::METRIC_PLANS_REJECTED, None),
];

/// Installs the Prometheus recorder once per process and returns its render handle. Every
/// metric gets its `# HELP` line, and the counters of [`KNOWN_AT_ZERO`] start at 0.
pub fn install() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(RESPONSE_LATENCY.into()), LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding program's); then our
            // handle renders nothing and the embedder's exporter has the metrics.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

/// `# HELP` for every metric of [`HELP`] and the zero counters, on the global recorder.
pub fn describe() {
    for &(name, kind, help) in HELP {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
    for &(name, labels) in KNOWN_AT_ZERO {
        match labels {
            None => counter!(name).increment(0),
            Some((key, values)) => {
                for &v in values {
                    counter!(name, key => v).increment(0);
                }
            }
        }
    }
}

/// Per-endpoint counters, registered once.
#[derive(Debug)]
pub struct EndpointMetrics {
    pub requests: Counter,
    /// Indexed by status class: 1xx..5xx at 0..4.
    pub responses: [Counter; 5],
    pub connect_errors: Counter,
    pub timeouts: Counter,
    pub protocol_errors: Counter,
    pub ejections: Counter,
    pub latency_ejections: Counter,
    /// [`RESPONSE_LATENCY`], labelled by endpoint unless the service is past
    /// [`ENDPOINT_SERIES_MAX`].
    pub latency: Histogram,
}

impl EndpointMetrics {
    /// `per_endpoint`: whether the latency histogram gets this endpoint's own label (false for
    /// services with more than [`ENDPOINT_SERIES_MAX`] endpoints).
    pub fn new(service: &str, e: &Endpoint, per_endpoint: bool) -> Self {
        let labels = [
            ("service", service.to_string()),
            ("endpoint", e.key().to_string()),
            ("host", e.host.clone()),
            ("zone", e.zone.clone()),
        ];
        let series = if per_endpoint {
            e.key().to_string()
        } else {
            "other".to_string()
        };
        let class = |c: &'static str| {
            let mut l = labels.to_vec();
            l.push(("class", c.to_string()));
            counter!(RESPONSES, &l)
        };
        let err = |k: &'static str| {
            let mut l = labels.to_vec();
            l.push(("kind", k.to_string()));
            counter!(UPSTREAM_ERRORS, &l)
        };
        Self {
            requests: counter!(REQUESTS, &labels),
            responses: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            connect_errors: err("connect"),
            timeouts: err("timeout"),
            protocol_errors: err("protocol"),
            ejections: counter!(EJECTIONS, &labels),
            latency_ejections: counter!(LATENCY_EJECTIONS, &labels),
            latency: histogram!(RESPONSE_LATENCY, "service" => service.to_string(), "endpoint" => series),
        }
    }

    /// One finished call to the endpoint: its response head arrived, or it failed upstream.
    pub fn record_latency(&self, d: Duration) {
        self.latency.record(d.as_secs_f64());
    }

    pub fn response(&self, status: u16) {
        let i = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[i].increment(1);
    }
}

/// Counts one blocked request (rare path: labels resolved per call).
pub fn blocked(service: &str, class: &str, reason: &'static str) {
    counter!(BLOCKED, "service" => service.to_string(), "class" => class.to_string(), "reason" => reason)
        .increment(1);
}

/// Sets a per-endpoint gauge.
pub fn endpoint_gauge(
    name: &'static str,
    service: &str,
    e: &Endpoint,
    extra: Option<(&'static str, &'static str)>,
    v: f64,
) {
    let mut labels = vec![
        ("service", service.to_string()),
        ("endpoint", e.key().to_string()),
    ];
    if let Some((k, val)) = extra {
        labels.push((k, val.to_string()));
    }
    gauge!(name, &labels).set(v);
}

/// Folds buffered histogram samples into their buckets every [`UPKEEP`]; runs until dropped.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}
