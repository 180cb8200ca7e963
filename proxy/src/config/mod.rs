//! `loadshift proxy` configuration: one typed struct, YAML on disk, validated before anything
//! binds. Errors name the field, the value and the reason; the CLI exits 64 on any of them.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

mod tls;
mod validate;

pub use tls::{Alpn, ListenerTls, MeshTls, SniCert, UpstreamTls, is_dns_name};

use loadshift_core::{endpoint::Endpoint, outlier::OutlierParams, retry_budget::BudgetParams};

/// Slow start for endpoints that join a service or come back from an ejection (Envoy's shape).
/// Shared with scenarios.
///
/// ```yaml
/// slow_start: { window_ms: 30000, min_weight: 0.1, aggression: 1.0 }
/// ```
pub use loadshift_core::balance::slow_start::SlowStart;
/// Passive outlier ejection: consecutive failures, and the latency-outlier detector in
/// `latency` (off by default). Shared with scenarios, so the twin reads the same section.
///
/// ```yaml
/// ejection:
///   consecutive_failures: 5
///   base_ms: 1000
///   max_ms: 60000
///   latency: { enabled: true, k: 3, min_samples: 20, min_endpoints: 3, interval_ms: 10000, max_ejected_fraction: 0.3 }
/// ```
pub use loadshift_core::outlier::Ejection;

/// Sidecar (inbound + outbound listeners around one app) or standalone (one listener).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Standalone,
    Sidecar,
}

/// Upstream protocol of a service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Same version as the downstream request (h2 in -> h2 prior knowledge out).
    #[default]
    Auto,
    Http1,
    Http2,
}

/// Who this proxy is; reported to the control plane and used for rendezvous subsetting.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Pod name, unique in the mesh. Default: the machine's hostname.
    #[serde(default = "default_pod")]
    pub pod: String,
    /// Container id of the local app. Default: the pod name.
    #[serde(default)]
    pub container: String,
    /// Node label. Default "local".
    #[serde(default = "local")]
    pub host: String,
    /// Zone label. Default "local".
    #[serde(default = "local")]
    pub zone: String,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            pod: default_pod(),
            container: String::new(),
            host: local(),
            zone: local(),
        }
    }
}

fn default_pod() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "loadshift".into())
}

fn local() -> String {
    "local".into()
}

/// A listening socket.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Address to bind; port 0 picks a free one (see `admin /stats` for the bound address).
    pub listen: SocketAddr,
    /// TLS termination (the outbound listener only; see [`ListenerTls`]). Default: plaintext.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
}

/// The sidecar's inbound side: a listener in front of the local app.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inbound {
    /// Address to bind for traffic to the local app.
    pub listen: SocketAddr,
    /// The local app's address.
    pub app: SocketAddr,
    /// Service name of the local app (reported to the control plane). Default: `identity.pod`.
    #[serde(default)]
    pub service: Option<String>,
    /// Protocol to the app. Default auto.
    #[serde(default)]
    pub protocol: Protocol,
    /// The local app's cgroup (v2) directory, for example
    /// `/sys/fs/cgroup/kubepods.slice/.../<container>.scope`: its CPU and memory use and limits
    /// are read every `telemetry.host_sample_ms` and reported to the control plane. Default none
    /// (usage unknown).
    #[serde(default)]
    pub cgroup: Option<std::path::PathBuf>,
}

/// One upstream endpoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `ip:port` of the container.
    pub addr: SocketAddr,
    /// Node label. Default "local".
    #[serde(default = "local")]
    pub host: String,
    /// Zone label. Default "local".
    #[serde(default = "local")]
    pub zone: String,
    /// Container id. Default: the address.
    #[serde(default)]
    pub container: Option<String>,
}

/// One upstream service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Service name; plans and reports use it.
    pub name: String,
    /// `Host` / `:authority` values (port ignored) routed to this service. Default: `[name]`.
    #[serde(default)]
    pub authorities: Vec<String>,
    /// Upstream protocol. Default auto.
    #[serde(default)]
    pub protocol: Protocol,
    /// Static endpoints (the control plane may add discovery results).
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    /// TLS to the endpoints ([`UpstreamTls`]); in a sidecar it replaces `mesh_tls` for this
    /// service. Default: `mesh_tls` in a sidecar that has it, else plaintext.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
}

/// Timeouts in milliseconds. Each says when it starts and ends; `docs/security.md` ("Timeouts")
/// has them side by side with the test of each.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// From the start of a TCP connect to an endpoint to the connection being established (an
    /// endpoint reached over TLS gets as long again for the handshake); also
    /// the longest wait for a free connection when an endpoint has `pool.max_per_endpoint` busy
    /// ones (then 503 `pool-exhausted`). A connect that fails or times out is retried on
    /// another endpoint within the retry budget, else 502 / 504. Default 1000 ms.
    pub connect_ms: u64,
    /// The request timeout. Starts when the proxy has the whole request body: on arrival for a
    /// request whose body came with its head, when the client's last byte has been handed on
    /// for one that streams (the upload itself is bounded by `body_progress_ms`, not by this).
    /// Ends at the upstream's response head; the response body is not bounded by it. It spans
    /// every attempt: a retry gets what is left. Past it: 504 `timeout`, charged to the
    /// endpoint. Not applied to gRPC calls (`content-type: application/grpc*`), whose own
    /// deadline governs (`grpc_max_ms`). Default 10000 ms; 0 disables.
    pub request_ms: u64,
    /// The longest deadline a gRPC call gets. A gRPC call runs under its own `grpc-timeout`
    /// (a malformed one is refused with INTERNAL), from its arrival to the end of its response
    /// (trailers), upload and retries included; past it the call ends with grpc-status
    /// DEADLINE_EXCEEDED, as a trailers-only response before the response head or as the
    /// response's trailers after it. This caps that deadline, gives one to calls that carry
    /// none, and the upstream is sent the shorter `grpc-timeout`. Default 0: no cap, so a call
    /// without `grpc-timeout` is bounded only by the progress limits, as it would be talking to
    /// its server directly (Envoy's `max_grpc_timeout`).
    pub grpc_max_ms: u64,
    /// Grace period for in-flight requests on SIGTERM: from the signal to the close of the
    /// connections still open. Default 10000 ms.
    pub drain_ms: u64,
    /// Time a client has to send a whole request head once its first byte arrived, and a new
    /// connection to send its first request head (HTTP/2: its preface and first stream) from
    /// the accept; past it the proxy answers 408 (HTTP/2: GOAWAY) and closes. Default 30000 ms
    /// (hyper's and HAProxy's `timeout http-request` order of magnitude).
    pub header_read_ms: u64,
    /// An idle keep-alive client connection is closed after this long: an HTTP/1.1 one between
    /// requests, an HTTP/2 one with no open stream (from its preface on). Default 300000 ms;
    /// 0 keeps idle connections open until the client closes them.
    pub client_idle_ms: u64,
    /// Bounds a streaming request body's upload, from one frame to the next. A body (HTTP/1.1
    /// or HTTP/2) that delivers no byte for this long while the upstream waits for it fails as
    /// the client's fault: 408 (gRPC: DEADLINE_EXCEEDED), never charged to the endpoint. An
    /// upstream that takes none of it for this long (noticed within twice as long) while the
    /// client has more to send fails as the upstream's: 504 `upload-stalled`. Default 30000 ms.
    pub body_progress_ms: u64,
    /// A response that the client stops reading (a full socket buffer, a zero HTTP/2 window)
    /// for this long closes the connection; it restarts with every write that makes progress.
    /// Default 30000 ms.
    pub send_progress_ms: u64,
    /// A connection switched to WebSocket (a `101` to an HTTP/1.1 upgrade) on which no byte
    /// moves either way for this long is closed on both sides; the tunnel otherwise lives until
    /// either side closes, or the drain deadline. Default 300000 ms (Envoy's stream idle timeout;
    /// WebSocket applications ping well within it); must be > 0, so a silent peer cannot hold
    /// two descriptors for ever.
    pub upgraded_idle_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_ms: 1000,
            request_ms: 10_000,
            grpc_max_ms: 0,
            drain_ms: 10_000,
            header_read_ms: 30_000,
            client_idle_ms: 300_000,
            body_progress_ms: 30_000,
            send_progress_ms: 30_000,
            upgraded_idle_ms: 300_000,
        }
    }
}

/// Descriptors kept back from the connection budget: listeners, the admin server, the control
/// client, files, and upstream connections beyond one per client connection.
pub const RESERVED_FDS: u64 = 256;

/// Client connection caps and the descriptor budget.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Client connections per listener (all workers together); at the cap the listener stops
    /// accepting until one closes. Default 0: derived from the open-file limit, (limit − 256) /
    /// 2 shared among the listeners, so the proxy never runs out of descriptors; a value the
    /// limit cannot hold refuses to start.
    pub max_connections: usize,
    /// Client connections per source address per listener; more are closed at once. Default
    /// 0 (no cap): in a sidecar every outbound connection comes from the one local app. Set it
    /// on a listener that faces many clients.
    pub max_connections_per_source: usize,
    /// The open-file limit (after raising the soft limit to the hard one) below which the
    /// proxy refuses to start. Default 1024.
    pub min_fds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 0,
            max_connections_per_source: 0,
            min_fds: 1024,
        }
    }
}

/// The overload manager: thresholds past which new requests are shed with 503 + `retry-after`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Overload {
    /// Requests waiting for a response head, all listeners together. Default 10000; 0: no cap.
    pub max_in_flight: usize,
    /// Resident memory in MiB past which new requests are shed and listeners stop accepting,
    /// until it falls below 90 % of it. Default: `memory_fraction_of_limit` of the process's
    /// cgroup memory limit, none without a limit; 0: no threshold.
    pub max_memory_mb: Option<u64>,
    /// Fraction of the cgroup memory limit used when `max_memory_mb` is not set. Default 0.9.
    pub memory_fraction_of_limit: f64,
    /// Seconds in the `retry-after` header of a shed response. Default 1.
    pub retry_after_s: u32,
}

impl Default for Overload {
    fn default() -> Self {
        Self {
            max_in_flight: 10_000,
            max_memory_mb: None,
            memory_fraction_of_limit: 0.9,
            retry_after_s: 1,
        }
    }
}

/// Per-endpoint connection pool.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pool {
    /// Most HTTP/1.1 connections per endpoint per worker. Default 256.
    pub max_per_endpoint: usize,
    /// Idle connections are closed after this long. Default 90000 ms.
    pub idle_timeout_ms: u64,
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            max_per_endpoint: 256,
            idle_timeout_ms: 90_000,
        }
    }
}

/// Retries of idempotent requests without a body after connect failures.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retries {
    /// Retries may add this fraction of requests. Default 0.2.
    pub budget_ratio: f64,
    /// Retries always allowed per second. Default 10.
    pub min_per_sec: u32,
    /// Most attempts per request including the first. Default 2.
    pub max_attempts: u32,
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            budget_ratio: 0.2,
            min_per_sec: 10,
            max_attempts: 2,
        }
    }
}

/// Telemetry windows.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    /// Window slots. Default 10.
    pub slots: usize,
    /// Slot width. Default 1000 ms.
    pub slot_ms: u64,
    /// Peak-EWMA decay constant. Default 10000 ms.
    pub ewma_tau_ms: u64,
    /// Host pressure sampling interval. Default 1000 ms.
    pub host_sample_ms: u64,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            slots: 10,
            slot_ms: 1000,
            ewma_tau_ms: 10_000,
            host_sample_ms: 1000,
        }
    }
}

/// The whole proxy configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Default standalone.
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub identity: Identity,
    /// Standalone: the one listener. Sidecar: where the local app sends its outbound calls.
    pub outbound: Listener,
    /// Sidecar only: listener in front of the local app.
    #[serde(default)]
    pub inbound: Option<Inbound>,
    /// Admin listener (`/metrics`, `/live`, `/ready`, `/plan`, `/stats`). Default 127.0.0.1:9990.
    #[serde(default = "default_admin")]
    pub admin: Listener,
    /// Worker threads, each with its own listener (SO_REUSEPORT) and pools. Default 1.
    #[serde(default = "one")]
    pub workers: usize,
    /// Request header naming the priority class for blocking. Default `x-loadshift-priority`.
    #[serde(default = "default_priority_header")]
    pub priority_header: String,
    /// Service for requests whose authority matches none. Default: none (404).
    #[serde(default)]
    pub default_service: Option<String>,
    pub services: Vec<ServiceConfig>,
    /// Plan file (YAML or JSON), reloaded when it changes. Default: none.
    #[serde(default)]
    pub plan_file: Option<PathBuf>,
    /// Control plane (`url`, `token_file`, `report_interval_ms`, backoff); without it the proxy
    /// runs on static config, the plan file and, if set, local shifting.
    #[serde(default)]
    pub control: Option<crate::control_client::ControlClientConfig>,
    /// In-path load shifting (Imbres Alg. 1 on this proxy's own per-host RTTs) for services
    /// without a plan of their own; only without a control plane. Default: off.
    #[serde(default)]
    pub local_shift: Option<loadshift_core::shift::ShiftParams>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub pool: Pool,
    /// Failure ejection (`consecutive_failures`, `base_ms`, `max_ms`) and latency-outlier
    /// ejection (`latency`: `enabled` (false), `k` (3), `min_samples` (20), `min_endpoints` (3),
    /// `interval_ms` (10000), `max_ejected_fraction` (0.3)); see [`Ejection`].
    #[serde(default)]
    pub ejection: Ejection,
    /// Slow start (`window_ms` (0: off), `min_weight` (0.1), `aggression` (1.0)): an endpoint
    /// that joins a service after the proxy built it, or comes back from an ejection, ramps from
    /// `min_weight` of its share to all of it over the window, in every balancing mode. Default
    /// off; see [`SlowStart`].
    #[serde(default)]
    pub slow_start: SlowStart,
    #[serde(default)]
    pub retries: Retries,
    #[serde(default)]
    pub telemetry: Telemetry,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub overload: Overload,
    #[serde(default)]
    pub forwarding: Forwarding,
    /// OpenTelemetry span export (OTLP over gRPC). Default: off.
    #[serde(default)]
    pub otel: Option<Otel>,
    /// Sidecar only: mTLS between sidecars with SPIFFE identities ([`MeshTls`]). Default: off,
    /// plaintext between sidecars (shown in `/stats` and `loadshift_proxy_mesh_tls`).
    #[serde(default)]
    pub mesh_tls: Option<MeshTls>,
}

/// OpenTelemetry: one span per proxied request, exported over OTLP/gRPC in batches
/// (`crate::otel`, `docs/protocols.md`). Spans need the trace fields, so `forwarding.enabled`
/// must stay on.
///
/// ```yaml
/// otel: { endpoint: "http://127.0.0.1:4317", sample_ratio: 0.1 }
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Otel {
    /// The collector's OTLP/gRPC address, `http://host:port`.
    pub endpoint: String,
    /// Share of new traces sampled (and flagged `01` upstream). A trusted incoming
    /// `traceparent` keeps its own sampled flag. Default 1.0.
    #[serde(default = "one_f64")]
    pub sample_ratio: f64,
    /// `service.name` of the exported resource. Default `loadshift-proxy`.
    #[serde(default = "default_otel_service")]
    pub service_name: String,
    /// Spans waiting for export; past it new spans are dropped and counted. Default 2048.
    #[serde(default = "default_otel_queue")]
    pub max_queue: usize,
    /// Spans per export call. Default 512.
    #[serde(default = "default_otel_batch")]
    pub max_batch: usize,
    /// A partial batch is sent after this long. Default 1000.
    #[serde(default = "default_otel_flush")]
    pub flush_ms: u64,
    /// One export call's deadline. Default 5000.
    #[serde(default = "default_otel_timeout")]
    pub timeout_ms: u64,
}

fn one_f64() -> f64 {
    1.0
}

fn default_otel_service() -> String {
    "loadshift-proxy".into()
}

fn default_otel_queue() -> usize {
    2048
}

fn default_otel_batch() -> usize {
    512
}

fn default_otel_flush() -> u64 {
    1000
}

fn default_otel_timeout() -> u64 {
    5000
}

/// Forwarding, request-id and trace fields added to requests going upstream
/// (`crate::forwarding`, `docs/protocols.md`).
///
/// ```yaml
/// forwarding: { enabled: true, trust_incoming: false }
/// ```
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Forwarding {
    /// Add `x-forwarded-for`, `x-forwarded-proto`, `forwarded`, `x-request-id` and
    /// `traceparent`. Default true.
    pub enabled: bool,
    /// Keep and extend those fields as the client sent them; `false` drops the client's first.
    /// Default: true in sidecar mode (the local app and the mesh's proxies), false standalone
    /// (the edge, where clients are not trusted).
    pub trust_incoming: Option<bool>,
}

impl Default for Forwarding {
    fn default() -> Self {
        Self {
            enabled: true,
            trust_incoming: None,
        }
    }
}

fn default_admin() -> Listener {
    Listener {
        listen: SocketAddr::from(([127, 0, 0, 1], 9990)),
        tls: None,
    }
}

fn one() -> usize {
    1
}

fn default_priority_header() -> String {
    "x-loadshift-priority".into()
}

/// A configuration the proxy refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{field} = {value}: {reason}")]
    Invalid {
        field: String,
        value: String,
        reason: &'static str,
    },
}

pub(crate) fn invalid(
    field: impl Into<String>,
    value: impl ToString,
    reason: &'static str,
) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        value: value.to_string(),
        reason,
    }
}

impl ProxyConfig {
    /// Reads, parses and validates a YAML file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.into(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates YAML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The service name of the local app (sidecar mode).
    pub fn inbound_service(&self) -> Option<String> {
        self.inbound.as_ref().map(|i| {
            i.service
                .clone()
                .unwrap_or_else(|| self.identity.pod.clone())
        })
    }

    pub fn outlier_params(&self) -> OutlierParams {
        self.ejection.params()
    }

    pub fn budget_params(&self) -> BudgetParams {
        BudgetParams {
            ratio: self.retries.budget_ratio,
            min_per_sec: self.retries.min_per_sec,
            window_secs: 10,
        }
    }

    /// What `crate::forwarding` does: trusting by default in sidecar mode, not standalone.
    pub fn forwarding_params(&self) -> crate::forwarding::Params {
        crate::forwarding::Params {
            sample: self.otel.as_ref().map(|o| o.sample_ratio),
            enabled: self.forwarding.enabled,
            trust: self
                .forwarding
                .trust_incoming
                .unwrap_or(self.mode == Mode::Sidecar),
        }
    }

    pub fn telemetry_params(&self) -> loadshift_core::telemetry::TelemetryParams {
        loadshift_core::telemetry::TelemetryParams {
            slots: self.telemetry.slots,
            slot_width: Duration::from_millis(self.telemetry.slot_ms),
            ewma_tau: Duration::from_millis(self.telemetry.ewma_tau_ms),
            ..Default::default()
        }
    }
}

impl ServiceConfig {
    /// Authorities that route here (the name when none are listed).
    pub fn authority_list(&self) -> Vec<&str> {
        if self.authorities.is_empty() {
            vec![self.name.as_str()]
        } else {
            self.authorities.iter().map(String::as_str).collect()
        }
    }

    /// Endpoints with their labels.
    pub fn endpoint_list(&self) -> Vec<Endpoint> {
        self.endpoints
            .iter()
            .map(|e| {
                let container = e.container.clone().unwrap_or_else(|| e.addr.to_string());
                Endpoint::new(e.addr, e.host.clone(), e.zone.clone(), container)
            })
            .collect()
    }
}
