//! Listeners and workers. Each worker is one thread with a current-thread runtime, its own
//! `SO_REUSEPORT` listener(s) and its own connection pool, so a request is served start to finish
//! on one core without locks. One more thread runs the admin listener and background tasks
//! (plan file, host pressure, control client). Shutdown drains: listeners close, open connections
//! are asked to finish (HTTP/1.1 `Connection: close` after the current request, HTTP/2 GOAWAY),
//! and the workers wait for them up to the grace period.

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::Rc,
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
    time::Duration,
};

use rand::{SeedableRng, rngs::SmallRng};
use tokio::{net::TcpListener, sync::watch, task::LocalSet};

use crate::{
    admin, admission,
    config::ProxyConfig,
    deadline::Deadlines,
    downstream,
    request::{ClientAddr, Worker},
    side::Side,
    state::Shared,
    tls::{ServerTls, Tls, TlsError, Upstreams},
    upstream::{Pool, PoolParams},
};

/// How often a listener that stopped accepting looks again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(20);

/// Bytes one read of an idle client connection may take (a head and what follows it).
const SCRATCH: usize = 16 * 1024;

/// Could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Descriptors(#[from] crate::admission::BudgetError),
    #[error("starting a runtime thread: {0}")]
    Runtime(std::io::Error),
    /// A certificate, key or CA the config names cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A started proxy.
pub struct Running {
    pub shared: Arc<Shared>,
    pub outbound: SocketAddr,
    pub inbound: Option<SocketAddr>,
    pub admin: SocketAddr,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Starts draining and waits for the workers (bounded by `timeouts.drain_ms`).
    pub fn shutdown(self) {
        self.shared.ready.store(false, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// A receiver that turns true when draining starts.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

fn bind(
    what: &'static str,
    addr: SocketAddr,
    reuse_port: bool,
) -> Result<std::net::TcpListener, StartError> {
    let err = |source| StartError::Bind { what, addr, source };
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    if reuse_port {
        s.set_reuse_port(true).map_err(err)?;
    }
    s.set_nonblocking(true).map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    s.listen(4096).map_err(err)?;
    Ok(s.into())
}

/// Binds `workers` listeners on one address (the first picks the port when it is 0).
fn bind_group(
    what: &'static str,
    addr: SocketAddr,
    workers: usize,
) -> Result<(SocketAddr, Vec<std::net::TcpListener>), StartError> {
    let first = bind(what, addr, workers > 1)?;
    let local = first
        .local_addr()
        .map_err(|source| StartError::Bind { what, addr, source })?;
    let mut all = vec![first];
    for _ in 1..workers {
        all.push(bind(what, local, true)?);
    }
    Ok((local, all))
}

/// Reads the TLS material, binds every listener and starts the workers and the admin thread.
pub fn start(config: ProxyConfig) -> Result<Running, StartError> {
    let tls = Tls::build(&config)?;
    let handle = crate::metrics::install();
    ::metrics::gauge!(crate::metrics::MESH_TLS).set(if config.mesh_tls.is_some() {
        1.0
    } else {
        0.0
    });
    let fds = admission::raise_fd_limit(config.limits.min_fds)?;
    let limits = admission::resolve(&config, fds, admission::cgroup_memory_limit())?;
    tracing::info!(
        open_files = fds.soft,
        max_connections = limits.max_connections,
        max_connections_per_source = limits.max_connections_per_source,
        max_in_flight = limits.max_in_flight,
        max_memory_mb = limits.max_memory_bytes >> 20,
        "admission limits"
    );
    let workers = config.workers;
    let (outbound, mut out_listeners) = bind_group("outbound", config.outbound.listen, workers)?;
    let (inbound, mut in_listeners) = match &config.inbound {
        Some(i) => {
            let (a, l) = bind_group("inbound", i.listen, workers)?;
            (Some(a), l)
        }
        None => (None, Vec::new()),
    };
    let admin_listener = bind("admin", config.admin.listen, false)?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            what: "admin",
            addr: config.admin.listen,
            source,
        })?;
    let shared = Shared::new(config, limits);
    let (shutdown, _) = watch::channel(false);
    let Tls {
        outbound: out_tls,
        inbound: in_tls,
        upstreams,
        pairs,
    } = tls;

    let mut threads = Vec::new();
    for id in 0..workers {
        let out = out_listeners.remove(0);
        let inb = if in_listeners.is_empty() {
            None
        } else {
            Some(in_listeners.remove(0))
        };
        let shared = shared.clone();
        let rx = shutdown.subscribe();
        let tls = WorkerTls {
            outbound: out_tls.clone(),
            inbound: in_tls.clone(),
            upstreams: upstreams.clone(),
        };
        let t = std::thread::Builder::new()
            .name(format!("loadshift-worker-{id}"))
            .spawn(move || run_worker(id, shared, out, inb, tls, rx))
            .map_err(StartError::Runtime)?;
        threads.push(t);
    }
    let bg_shared = shared.clone();
    let rx = shutdown.subscribe();
    let t = std::thread::Builder::new()
        .name("loadshift-admin".into())
        .spawn(move || admin::run(bg_shared, admin_listener, handle, pairs, rx))
        .map_err(StartError::Runtime)?;
    threads.push(t);
    tracing::info!(%outbound, inbound = ?inbound, admin = %admin_addr, workers, "proxy listening");
    Ok(Running {
        shared,
        outbound,
        inbound,
        admin: admin_addr,
        shutdown,
        threads,
    })
}

/// A worker's share of the TLS settings.
struct WorkerTls {
    outbound: Option<Arc<ServerTls>>,
    inbound: Option<Arc<ServerTls>>,
    upstreams: Arc<Upstreams>,
}

fn run_worker(
    id: usize,
    shared: Arc<Shared>,
    out: std::net::TcpListener,
    inb: Option<std::net::TcpListener>,
    tls: WorkerTls,
    shutdown: watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(worker = id, error = %e, "worker runtime failed to start");
            return;
        }
    };
    let local = LocalSet::new();
    local.block_on(&rt, async move {
        let cfg = &shared.config;
        let pool = Pool::new(
            PoolParams {
                connect_timeout: Duration::from_millis(cfg.timeouts.connect_ms),
                idle_timeout: Duration::from_millis(cfg.pool.idle_timeout_ms),
                max_per_endpoint: cfg.pool.max_per_endpoint,
            },
            tls.upstreams,
        );
        let worker = Rc::new(Worker {
            pool: pool.clone(),
            budget: RefCell::new(loadshift_core::retry_budget::RetryBudget::new(
                cfg.budget_params(),
            )),
            rng: RefCell::new(SmallRng::from_rng(&mut rand::rng())),
            // Validated at config load.
            priority_header: http::HeaderName::from_bytes(cfg.priority_header.as_bytes())
                .unwrap_or(http::HeaderName::from_static("x-loadshift-priority")),
            time_limits: crate::time_limit::Params::from(&cfg.timeouts),
            forwarding: cfg.forwarding_params(),
            asks_for_load: cfg.mode == crate::config::Mode::Sidecar,
            max_attempts: cfg.retries.max_attempts,
            scratch: RefCell::new(vec![0; SCRATCH].into_boxed_slice()),
            deadlines: Deadlines::new(),
            shared: shared.clone(),
        });
        tokio::task::spawn_local(worker.deadlines.clone().sweep());
        let active = Rc::new(Cell::new(0usize));
        let sweep_every = Duration::from_millis(cfg.pool.idle_timeout_ms / 2)
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        tokio::task::spawn_local(async move {
            let mut tick = tokio::time::interval(sweep_every);
            loop {
                tick.tick().await;
                pool.sweep();
            }
        });
        let mut loops = Vec::new();
        for (listener, side, tls) in [
            (Some(out), Side::Outbound, tls.outbound),
            (inb, Side::Inbound, tls.inbound),
        ] {
            let Some(l) = listener else { continue };
            match TcpListener::from_std(l) {
                Ok(l) => loops.push(tokio::task::spawn_local(accept_loop(
                    l,
                    side,
                    tls,
                    worker.clone(),
                    active.clone(),
                    shutdown.clone(),
                ))),
                Err(e) => tracing::error!(worker = id, error = %e, "listener registration failed"),
            }
        }
        for l in loops {
            let _ = l.await;
        }
        let grace = Duration::from_millis(cfg.timeouts.drain_ms);
        let deadline = tokio::time::Instant::now() + grace;
        while active.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if active.get() > 0 {
            tracing::warn!(
                worker = id,
                open = active.get(),
                "drain grace period over; closing connections"
            );
        }
    });
}

/// Runs a client connection in a task of its own, holding its admission slot and its place in
/// the drain count until it ends. The connection's future is made inside the task: one moved in
/// would be stored twice in the task's state (once as captured, once as awaited), doubling what
/// every idle connection holds.
fn spawn_connection<F: std::future::Future<Output = ()> + 'static>(
    conn: impl FnOnce() -> F + 'static,
    guard: admission::ConnectionGuard,
    active: Rc<Cell<usize>>,
) {
    tokio::task::spawn_local(async move {
        conn().await;
        drop(guard);
        active.set(active.get() - 1);
    });
}

async fn accept_loop(
    l: TcpListener,
    side: Side,
    tls: Option<Arc<ServerTls>>,
    worker: Rc<Worker>,
    active: Rc<Cell<usize>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let t = &worker.shared.config.timeouts;
    let limits = downstream::Limits {
        header_read: Duration::from_millis(t.header_read_ms),
        idle: (t.client_idle_ms > 0).then(|| Duration::from_millis(t.client_idle_ms)),
        body_progress: Duration::from_millis(t.body_progress_ms),
        send_progress: Duration::from_millis(t.send_progress_ms),
        upgraded_idle: Duration::from_millis(t.upgraded_idle_ms),
    };
    let admission = worker.shared.admission.clone();
    let probation = downstream::Probation::default();
    loop {
        let mut paused = false;
        // At the listener's cap, a connection that has sent no request for a while can make
        // room for the next one accepted; without one (or past the memory threshold) new
        // clients wait in the kernel's backlog, costing no descriptor, until a connection
        // closes.
        while !admission.may_accept(side)
            && (admission.over_memory() || !probation.has_evictable(downstream::MIN_AGE))
        {
            if !paused {
                admission.paused();
                paused = true;
            }
            tokio::select! {
                () = tokio::time::sleep(ACCEPT_PAUSE) => {}
                _ = shutdown.wait_for(|&s| s) => return,
            }
        }
        let accepted = tokio::select! {
            r = l.accept() => r,
            _ = shutdown.wait_for(|&s| s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(guard) = admission.connection(side, peer.ip()) else {
            // Over its source's cap: closed at once.
            drop(stream);
            continue;
        };
        if admission.over_cap(side) && probation.evict_oldest(downstream::MIN_AGE) {
            admission.evicted();
        }
        let _ = stream.set_nodelay(true);
        let worker = worker.clone();
        let active = active.clone();
        let shutdown = shutdown.clone();
        active.set(active.get() + 1);
        let ticket = probation.admit();
        // Two tasks of their own: a plaintext connection's task does not make room for a TLS
        // session.
        match &tls {
            None => {
                let peer = downstream::Peer {
                    addr: ClientAddr(peer.ip()),
                    tls: None,
                };
                let first_by = tokio::time::Instant::now() + limits.header_read;
                let conn = move || {
                    downstream::serve(
                        stream, peer, first_by, side, worker, limits, ticket, shutdown,
                    )
                };
                spawn_connection(conn, guard, active);
            }
            Some(tls) => {
                let tls = tls.clone();
                let conn = move || {
                    downstream::serve_tls(
                        stream,
                        peer.ip(),
                        tls,
                        side,
                        worker,
                        limits,
                        ticket,
                        shutdown,
                    )
                };
                spawn_connection(conn, guard, active);
            }
        }
    }
}
