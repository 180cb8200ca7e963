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
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}
