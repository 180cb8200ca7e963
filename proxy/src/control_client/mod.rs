//! The proxy's control-plane client: one long-lived `ProxyControl.Connect` stream that sends
//! `Hello` and periodic reports, applies the plans it receives through [`DataPlane`] and answers
//! each with an ACK or a NACK carrying the data plane's reason.
//!
//! The client runs as a background task. When the control plane is unreachable it reconnects with
//! jittered exponential backoff (defaults 200 ms to 10 s, "equal jitter") while the data plane keeps
//! serving on its last good plan; after a reconnect the control plane sends a full snapshot, which
//! replaces the plan whole.

pub mod backoff;
mod session;
mod wire;

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use serde::Deserialize;

use loadshift_core::{
    endpoint::Endpoint,
    plan::Plan,
    telemetry::{WindowSnapshot, pressure::HostPressure, usage::ContainerUsage},
};

/// Who this proxy is; sent once per stream as `Hello`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Identity {
    /// Pod name, unique within the mesh (keys per-proxy plans).
    pub pod: String,
    /// Container id of the local app.
    pub container: String,
    /// Node label.
    pub host: String,
    /// Zone label.
    pub zone: String,
    /// Service the local app serves, if this proxy has an inbound side.
    pub inbound_service: Option<String>,
    /// Services the local app calls; plans arrive for these only.
    pub outbound_services: Vec<String>,
}

/// Outbound calls to one endpoint during the current window.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointReport {
    pub service: String,
    pub endpoint: Endpoint,
    pub window: WindowSnapshot,
    pub in_flight: u32,
    /// Peak-EWMA estimate, milliseconds.
    pub ewma_ms: f64,
}

/// Everything one report carries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyReport {
    pub endpoints: Vec<EndpointReport>,
    /// The local app's latency from the inbound listener.
    pub inbound: Option<WindowSnapshot>,
    pub host: HostPressure,
    /// The local app's resource use, where its cgroup is configured.
    pub usage: Option<ContainerUsage>,
    /// (service, priority class, requests blocked in the window).
    pub blocked: Vec<(String, String, u64)>,
    /// (service, requests offered in the window, blocked ones included).
    pub offered: Vec<(String, u64)>,
}

/// What the client needs from the data plane.
pub trait DataPlane: Send + Sync + 'static {
    /// Current telemetry; called once per report interval, must be cheap.
    fn report(&self) -> ProxyReport;
    /// Validates and swaps in the plan; Err(reason) is sent back as a NACK and the last good plan
    /// stays.
    fn apply_plan(&self, plan: Plan) -> Result<(), String>;
    /// Discovery results from the control plane for one service.
    fn set_endpoints(&self, service: &str, endpoints: Vec<Endpoint>) -> Result<(), String>;
}

/// How to reach the control plane.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlClientConfig {
    /// Control plane URL, for example `http://127.0.0.1:7070`. Required.
    pub url: String,
    /// File holding the bearer token (surrounding whitespace ignored); re-read on every
    /// connection attempt so a rotated token is picked up. Required.
    pub token_file: PathBuf,
    /// Interval between reports, milliseconds. Default 1000.
    #[serde(default = "defaults::report_interval_ms")]
    pub report_interval_ms: u64,
    /// First reconnect delay, milliseconds. Default 200.
    #[serde(default = "defaults::backoff_min_ms")]
    pub backoff_min_ms: u64,
    /// Largest reconnect delay, milliseconds. Default 10000.
    #[serde(default = "defaults::backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// TCP connect timeout, milliseconds. Default 2000.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

mod defaults {
    pub fn report_interval_ms() -> u64 {
        1000
    }
    pub fn backoff_min_ms() -> u64 {
        200
    }
    pub fn backoff_max_ms() -> u64 {
        10_000
    }
    pub fn connect_timeout_ms() -> u64 {
        2000
    }
}

impl ControlClientConfig {
    /// A config with every default and the two required fields.
    pub fn new(url: impl Into<String>, token_file: impl Into<PathBuf>) -> Self {
        Self {
            url: url.into(),
            token_file: token_file.into(),
            report_interval_ms: defaults::report_interval_ms(),
            backoff_min_ms: defaults::backoff_min_ms(),
            backoff_max_ms: defaults::backoff_max_ms(),
            connect_timeout_ms: defaults::connect_timeout_ms(),
        }
    }

    fn report_interval(&self) -> Duration {
        Duration::from_millis(self.report_interval_ms.max(1))
    }
}

/// Why one session with the control plane ended.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading token file {path:?}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {path:?} does not hold a valid header value")]
    BadToken { path: PathBuf },
    #[error("control plane url {url:?}: {source}")]
    Url {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("connecting to the control plane: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("control plane refused or broke the stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("control plane closed the stream")]
    Closed,
}

/// Runs the client until `shutdown` resolves, reconnecting as needed.
pub async fn run(
    cfg: ControlClientConfig,
    id: Identity,
    dp: Arc<dyn DataPlane>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = backoff::Backoff::new(
        Duration::from_millis(cfg.backoff_min_ms),
        Duration::from_millis(cfg.backoff_max_ms),
        rand::random(),
    );
    let mut last_good = Plan::default();
    loop {
        let mut session = session::Session::new(&cfg, &id, dp.as_ref(), &mut last_good);
        let result = tokio::select! {
            r = session.run() => r,
            () = &mut shutdown => return,
        };
        let healthy = session.received_any();
        metrics::gauge!(METRIC_CONNECTED).set(0.0);
        if healthy {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        match result {
            Err(ClientError::Status(s)) if s.code() == tonic::Code::Unauthenticated => {
                tracing::error!(error = %s.message(), ?delay, "control plane refused our token");
            }
            Err(e) => {
                tracing::warn!(error = %e, ?delay, "control plane stream ended; keeping the last good plan")
            }
            Ok(()) => {}
        }
        metrics::counter!(METRIC_RECONNECTS).increment(1);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut shutdown => return,
        }
    }
}

/// 1 while a stream to the control plane is open.
pub const METRIC_CONNECTED: &str = "loadshift_proxy_control_connected";
/// Reconnect attempts after a stream ended or failed to open.
pub const METRIC_RECONNECTS: &str = "loadshift_proxy_control_reconnects_total";
/// Plans applied (ACKed).
pub const METRIC_PLANS_APPLIED: &str = "loadshift_proxy_control_plans_applied_total";
/// Plans refused (NACKed).
pub const METRIC_PLANS_REJECTED: &str = "loadshift_proxy_control_plans_rejected_total";
