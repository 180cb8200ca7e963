//! Metric names of the control plane (documented in `docs/metrics.md`, "Control plane").

/// Gauge: proxies with an open stream.
pub const CONNECTED_PROXIES: &str = "loadshift_control_connected_proxies";
/// Counter: plan updates sent to proxies, label `kind` = `full` | `delta`.
pub const PLAN_PUSHES: &str = "loadshift_control_plan_pushes_total";
/// Counter: plans proxies acknowledged.
pub const PLAN_ACKS: &str = "loadshift_control_plan_acks_total";
/// Counter: plans proxies refused.
pub const PLAN_NACKS: &str = "loadshift_control_plan_nacks_total";
/// Histogram (seconds): from sending a plan update to its ACK or NACK.
pub const PLAN_ACK_SECONDS: &str = "loadshift_control_plan_ack_seconds";
/// Counter: reports received.
pub const REPORTS: &str = "loadshift_control_reports_total";
/// Histogram (seconds): proxy send time to control-plane receive time of reports (wall clocks).
pub const REPORT_LAG_SECONDS: &str = "loadshift_control_report_lag_seconds";
/// Histogram (seconds): one planner loop over every service, label `loop` = `planner` | `scale`.
pub const LOOP_SECONDS: &str = "loadshift_control_loop_seconds";
/// Counter: scale decisions, labels `service`, `actuator`, `result` = `applied` | `failed`.
pub const SCALE_DECISIONS: &str = "loadshift_control_scale_decisions_total";
/// Gauge: containers wanted by the latest decision, label `service`.
pub const SCALE_TARGET: &str = "loadshift_control_scale_target";
/// Counter: calls refused for a missing or wrong token, label `api` = `proxy` | `operator`.
pub const UNAUTHENTICATED: &str = "loadshift_control_unauthenticated_total";

/// Installs the Prometheus recorder once per process and returns its render handle. A program
/// that embeds a proxy as well passes one shared handle with [`crate::ControlServer::metrics`]
/// instead: a process has one global recorder, and a second install renders nothing.
pub fn install() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // The `_seconds` metrics are histograms (`_bucket`, `_sum`, `_count`), which
            // Prometheus can aggregate across control planes; the buckets span a fast ACK on
            // loopback to a slow report across zones.
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
            let builder = builder
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    SECONDS_BUCKETS,
                )
                .unwrap_or_else(|_| metrics_exporter_prometheus::PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

/// Histogram buckets of the `_seconds` metrics.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every control-plane metric with its `# HELP` text, and whether it is a counter (`c`),
/// gauge (`g`) or histogram (`h`).
pub const HELP: &[(&str, char, &str)] = &[
    (
        CONNECTED_PROXIES,
        'g',
        "Proxies with an open control stream.",
    ),
    (
        PLAN_PUSHES,
        'c',
        "Plan updates sent to proxies, full or delta.",
    ),
    (PLAN_ACKS, 'c', "Plan updates proxies acknowledged."),
    (PLAN_NACKS, 'c', "Plan updates proxies refused."),
    (
        PLAN_ACK_SECONDS,
        'h',
        "From sending a plan update to its ACK or NACK, seconds.",
    ),
    (REPORTS, 'c', "Reports received from proxies."),
    (
        REPORT_LAG_SECONDS,
        'h',
        "Proxy send time to receipt of its reports, seconds.",
    ),
    (LOOP_SECONDS, 'h', "One control round, seconds, by loop."),
    (
        SCALE_DECISIONS,
        'c',
        "Scale decisions by service, actuator and result.",
    ),
    (
        SCALE_TARGET,
        'g',
        "Containers wanted by the latest decision.",
    ),
    (
        UNAUTHENTICATED,
        'c',
        "Calls refused for a missing or wrong bearer token.",
    ),
];

/// `# HELP` for every metric of [`HELP`], and the counters without labels at 0.
pub fn describe() {
    for &(name, kind, help) in HELP {
        match kind {
            'c' => metrics::describe_counter!(name, help),
            'g' => metrics::describe_gauge!(name, help),
            _ => metrics::describe_histogram!(name, metrics::Unit::Seconds, help),
        }
    }
    for name in [PLAN_ACKS, PLAN_NACKS, REPORTS] {
        metrics::counter!(name).increment(0);
    }
    for kind in ["full", "delta"] {
        metrics::counter!(PLAN_PUSHES, "kind" => kind).increment(0);
    }
    for api in ["proxy", "operator"] {
        metrics::counter!(UNAUTHENTICATED, "api" => api).increment(0);
    }
}
