//! The control plane server: the proxy stream API, the operator API and the control loop, all
//! sharing one [`Shared`] state. [`ControlServer::bind`] binds the listeners first (so tests and
//! callers learn the real addresses of `:0` binds) and returns the future that serves them;
//! [`ControlServer::builder`] also takes a shared metrics recorder, a snapshot source replacing
//! the proxies' reports and a round observer.

mod auth;
mod control_loop;
mod metrics_http;
mod operator_api;
mod policies;
mod proxy_api;
mod shared;
mod wire;

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use loadshift_policy::Objective;
use loadshift_proto::v1::{
    operator_server::OperatorServer, proxy_control_server::ProxyControlServer,
};
use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::Mutex;
use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
};
use tokio_stream::wrappers::TcpListenerStream;

pub use auth::BearerAuth;
pub use shared::{RoundObserver, SnapshotSource};

use crate::{
    actuators,
    config::{ConfigError, ControlConfig},
    discovery,
    plans::PlanBook,
    store,
};
use policies::{Policies, Tables};
use shared::{Hooks, Shared};

/// Why the control plane could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("reading token file {path:?}: {source}")]
    Token {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("token file {path:?} is empty")]
    EmptyToken { path: std::path::PathBuf },
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving gRPC: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("planner_settings.table_store: {0}")]
    Store(#[from] loadshift_policy::store::StoreError),
}

/// Addresses the server bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundAddrs {
    /// Proxy API.
    pub proxy: SocketAddr,
    /// Operator API (equal to `proxy` when it shares the listener).
    pub operator: SocketAddr,
    /// `/metrics`, when `metrics_listen` is set.
    pub metrics: Option<SocketAddr>,
}

/// Entry points.
pub struct ControlServer;

impl ControlServer {
    /// Validates the config, reads the token, binds the listeners and returns their addresses and
    /// the future that serves until `shutdown` resolves.
    pub async fn bind(
        config: ControlConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<
        (
            BoundAddrs,
            impl Future<Output = Result<(), ControlError>> + Send,
        ),
        ControlError,
    > {
        Self::builder(config).bind(shutdown).await
    }

    /// A server with options beyond the config.
    pub fn builder(config: ControlConfig) -> Builder {
        Builder {
            config,
            metrics: None,
            hooks: Hooks::default(),
        }
    }
}

/// [`ControlServer::builder`].
pub struct Builder {
    config: ControlConfig,
    metrics: Option<PrometheusHandle>,
    hooks: Hooks,
}

impl Builder {
    /// Renders `/metrics` from this recorder's handle (a program that embeds a proxy too shares
    /// one recorder); default: the control plane installs its own.
    pub fn metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// Takes every round's snapshot from `source` (called with the control clock) instead of
    /// building it from the proxies' reports: replaying a recorded trace through the live loop,
    /// as the test that holds it to the simulator does.
    pub fn snapshots(mut self, source: SnapshotSource) -> Self {
        self.hooks.snapshots = Some(source);
        self
    }

    /// Calls `observer` after every round with the snapshot it read and what it produced.
    pub fn on_round(mut self, observer: RoundObserver) -> Self {
        self.hooks.on_round = Some(observer);
        self
    }

    /// [`ControlServer::bind`] with these options.
    pub async fn bind(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<
        (
            BoundAddrs,
            impl Future<Output = Result<(), ControlError>> + Send,
        ),
        ControlError,
    > {
        let Builder {
            config,
            metrics,
            hooks,
        } = self;
        config.validate()?;
        let token =
            std::fs::read_to_string(&config.token_file).map_err(|source| ControlError::Token {
                path: config.token_file.clone(),
                source,
            })?;
        let token: Arc<str> = token.trim().into();
        if token.is_empty() {
            return Err(ControlError::EmptyToken {
                path: config.token_file.clone(),
            });
        }
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ControlError::Bind { addr, source })
        };
        let proxy_listener = bind(config.listen).await?;
        let operator_listener = match config.operator_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let metrics_listener = match config.metrics_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let local = |l: &TcpListener, a| {
            l.local_addr()
                .map_err(|source| ControlError::Bind { addr: a, source })
        };
        let proxy_addr = local(&proxy_listener, config.listen)?;
        let operator_addr = match (&operator_listener, config.operator_listen) {
            (Some(l), Some(a)) => local(l, a)?,
            _ => proxy_addr,
        };

        let config_metrics = config.metrics_listen;
        let discovery = discovery::from_config(&config)?;
        let mut tables = Tables {
            store: store::open(&config.planner_settings.table_store)?,
            ..Default::default()
        };
        if let Some(s) = tables.store.as_mut() {
            tables.rows = s.load_all()?;
        }
        let started = tokio::time::Instant::now();
        // Names and settings were checked by `validate`; a failure here is still reported.
        let policies = Policies::from_config(&config, Duration::ZERO, &tables).map_err(|e| {
            ConfigError::Invalid {
                field: "services".into(),
                value: "(policies)".into(),
                reason: e.to_string(),
            }
        })?;
        let flows = config
            .applications
            .values()
            .flat_map(|a| &a.flows)
            .map(|(name, f)| {
                let sla = f.sla_ms.map(|sla_ms| Objective {
                    sla_ms,
                    percentile: f.percentile,
                });
                (name.clone(), (f.entry.clone(), sla))
            })
            .collect();
        let actuator = actuators::from_config(&config)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let start_version = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(1));
        let shared = Arc::new(Shared {
            cfg: config,
            started,
            store: Mutex::default(),
            plans: PlanBook::new(),
            policies: Mutex::new(policies),
            tables: Mutex::new(tables),
            flows,
            wake: Notify::new(),
            hooks: Mutex::new(hooks),
            actuator: Mutex::new(actuator),
            decisions: Mutex::default(),
            history: Mutex::default(),
            endpoints: discovery.watch(),
            _discovery: discovery,
            shutdown: stop_rx,
            next_stream: AtomicU64::new(1),
            next_version: AtomicU64::new(start_version),
        });
        // The first plans exist before any proxy connects: every planner is due at 0.
        control_loop::round(&shared);

        let metrics_addr = match (&metrics_listener, config_metrics) {
            (Some(l), Some(a)) => Some(local(l, a)?),
            _ => None,
        };
        if let Some(l) = metrics_listener {
            let prom = metrics.unwrap_or_else(crate::metrics::install);
            tokio::spawn(metrics_http::serve(l, prom, shared.shutdown.clone()));
        }
        let addrs = BoundAddrs {
            proxy: proxy_addr,
            operator: operator_addr,
            metrics: metrics_addr,
        };
        let fut = serve(
            shared,
            token,
            proxy_listener,
            operator_listener,
            stop_tx,
            shutdown,
        );
        Ok((addrs, fut))
    }
}

async fn serve(
    shared: Arc<Shared>,
    token: Arc<str>,
    proxy_listener: TcpListener,
    operator_listener: Option<TcpListener>,
    stop_tx: watch::Sender<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControlError> {
    let proxy_svc = ProxyControlServer::with_interceptor(
        proxy_api::ProxyApi::new(shared.clone()),
        BearerAuth::new(token.clone(), "proxy"),
    );
    let operator_svc = OperatorServer::with_interceptor(
        operator_api::OperatorApi::new(shared.clone()),
        BearerAuth::new(token, "operator"),
    );
    let stop_rx = shared.shutdown.clone();
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            // Err only when the sender is gone, which also means stop.
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let loops = tokio::spawn(control_loop::run(shared.clone()));
    // Flip the shared stop flag when the caller's shutdown resolves; streams, loops and both
    // servers watch it.
    let trigger = tokio::spawn(async move {
        shutdown.await;
        stop_tx.send_replace(true);
        stop_tx
    });

    let mut proxy_server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)));
    let result = match operator_listener {
        None => {
            proxy_server
                .add_service(proxy_svc)
                .add_service(operator_svc)
                .serve_with_incoming_shutdown(TcpListenerStream::new(proxy_listener), stopped())
                .await
        }
        Some(op) => {
            let a = proxy_server
                .add_service(proxy_svc)
                .serve_with_incoming_shutdown(TcpListenerStream::new(proxy_listener), stopped());
            let b = tonic::transport::Server::builder()
                .add_service(operator_svc)
                .serve_with_incoming_shutdown(TcpListenerStream::new(op), stopped());
            let (a, b) = tokio::join!(a, b);
            a.and(b)
        }
    };
    trigger.abort();
    loops.abort();
    tracing::info!("control plane stopped");
    result.map_err(ControlError::from)
}

/// Runs the control plane until `shutdown` resolves.
pub async fn run(
    config: ControlConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControlError> {
    let (addrs, fut) = ControlServer::bind(config, shutdown).await?;
    tracing::info!(proxy_api = %addrs.proxy, operator_api = %addrs.operator, "control plane listening");
    fut.await
}
