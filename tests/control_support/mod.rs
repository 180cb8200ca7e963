//! Shared pieces of the control-plane tests: a real control plane on `127.0.0.1:0`, real proxy
//! control clients, and a recording stand-in for the proxy's data plane behind the
//! `DataPlane` trait (the control plane and the client are the real ones).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use loadshift_control::{
    BoundAddrs, ControlConfig, ControlServer,
    config::{EndpointConfig, ServiceConfig},
};
use loadshift_core::{endpoint::Endpoint, plan::Plan};
use loadshift_proto::v1::operator_client::OperatorClient;
use loadshift_proxy::control_client::{
    self, ControlClientConfig, DataPlane, Identity, ProxyReport,
};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

pub const TOKEN: &str = "test-token-7f3a";

/// A token file with `token` in a fresh temp path.
pub fn token_file(token: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let p = std::env::temp_dir().join(format!(
        "loadshift-control-test-{}-{}.token",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&p, format!("{token}\n")).unwrap();
    p
}

/// A service with static endpoints and weights.
pub fn service(planner: &str, eps: &[(SocketAddr, &str, f64)]) -> ServiceConfig {
    ServiceConfig {
        planner: planner.into(),
        scaler: "none".into(),
        scaler_settings: None,
        planner_settings: None,
        objective: None,
        endpoints: eps
            .iter()
            .map(|(addr, container, weight)| EndpointConfig {
                addr: *addr,
                host: format!("host-{}", addr.port()),
                zone: "z1".into(),
                container: Some(container.to_string()),
                weight: *weight,
            })
            .collect(),
    }
}

/// Config on `listen` with fast loops.
pub fn config(
    listen: SocketAddr,
    token: &Path,
    services: Vec<(&str, ServiceConfig)>,
) -> ControlConfig {
    let mut c = ControlConfig::new(listen, token);
    c.planner_settings.interval_ms = Some(200);
    c.services = services
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
    c
}

/// A running control plane.
pub struct Control {
    pub addrs: BoundAddrs,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Control {
    pub async fn start(cfg: ControlConfig) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let (addrs, fut) = ControlServer::bind(cfg, async move {
            let _ = rx.await;
        })
        .await
        .expect("control plane binds");
        let task = tokio::spawn(async move {
            fut.await.expect("control plane serves");
        });
        Self {
            addrs,
            stop: Some(tx),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addrs.proxy)
    }

    /// Stops the control plane and waits until it is gone.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("control plane stops within 10 s")
            .unwrap();
    }

    pub async fn operator(&self, token: &str) -> OperatorClient<InterceptedService<Channel, Auth>> {
        operator(self.addrs.operator, Some(token)).await
    }
}

#[derive(Clone)]
pub struct Auth(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub fn auth(token: Option<&str>) -> Auth {
    Auth(token.map(|t| format!("Bearer {t}").parse().unwrap()))
}

pub async fn operator(
    addr: SocketAddr,
    token: Option<&str>,
) -> OperatorClient<InterceptedService<Channel, Auth>> {
    OperatorClient::with_interceptor(channel(addr).await, auth(token))
}

/// Everything the recording data plane saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub endpoints: HashMap<String, Vec<Endpoint>>,
    /// The plan in force (last accepted).
    pub current: Option<Plan>,
    /// Every plan offered, accepted or not, in order.
    pub offered: Vec<Plan>,
    /// Refused plans and the reason.
    pub rejected: Vec<(Plan, String)>,
}

type Rule = Box<dyn Fn(&Plan) -> Option<String> + Send + Sync>;

/// Records plans and validates them the way the proxy does (against the endpoints it knows),
/// plus an optional extra refusal rule.
pub struct RecordingPlane {
    seen: Mutex<Seen>,
    report: Mutex<ProxyReport>,
    refuse: Option<Rule>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl RecordingPlane {
    pub fn new(refuse: Option<Rule>) -> Arc<Self> {
        Arc::new(Self {
            seen: Mutex::default(),
            report: Mutex::default(),
            refuse,
            changed: tokio::sync::watch::Sender::new(0),
        })
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    pub fn set_report(&self, r: ProxyReport) {
        *self.report.lock().unwrap() = r;
    }

    /// Waits until `f` holds, at most `secs` seconds; returns the state it held on.
    pub async fn wait_for(&self, secs: u64, what: &str, f: impl Fn(&Seen) -> bool) -> Seen {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            {
                let s = self.seen.lock().unwrap();
                if f(&s) {
                    return s.clone();
                }
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                panic!(
                    "timed out after {secs} s waiting for: {what}; state: {:#?}",
                    self.seen()
                );
            }
        }
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

impl DataPlane for RecordingPlane {
    fn report(&self) -> ProxyReport {
        self.report.lock().unwrap().clone()
    }

    fn apply_plan(&self, plan: Plan) -> Result<(), String> {
        let res = {
            let mut s = self.seen.lock().unwrap();
            s.offered.push(plan.clone());
            let res = plan
                .validate(&s.endpoints)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    self.refuse
                        .as_ref()
                        .and_then(|r| r(&plan))
                        .map_or(Ok(()), Err)
                });
            match &res {
                Ok(()) => s.current = Some(plan),
                Err(reason) => s.rejected.push((plan, reason.clone())),
            }
            res
        };
        self.bump();
        res
    }

    fn set_endpoints(&self, service: &str, endpoints: Vec<Endpoint>) -> Result<(), String> {
        self.seen
            .lock()
            .unwrap()
            .endpoints
            .insert(service.to_string(), endpoints);
        self.bump();
        Ok(())
    }
}

/// A real control client for `id`, feeding `dp`; stops when the returned sender is dropped.
pub fn spawn_proxy(
    url: &str,
    token: &Path,
    id: Identity,
    dp: Arc<RecordingPlane>,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let mut cfg = ControlClientConfig::new(url, token);
    cfg.report_interval_ms = 100;
    cfg.backoff_min_ms = 50;
    cfg.backoff_max_ms = 300;
    cfg.connect_timeout_ms = 500;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(control_client::run(cfg, id, dp, async move {
        let _ = rx.await;
    }));
    (tx, task)
}

pub fn identity(pod: &str, inbound: Option<&str>, outbound: &[&str]) -> Identity {
    Identity {
        pod: pod.into(),
        container: pod.into(),
        host: format!("node-{pod}"),
        zone: "z1".into(),
        inbound_service: inbound.map(String::from),
        outbound_services: outbound.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A real HTTP/1.1 upstream that answers 200 with its name and counts requests.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start(name: &'static str) -> Self {
        use http_body_util::Full;
        use hyper::{Response, server::conn::http1, service::service_fn};
        use hyper_util::rt::TokioIo;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        async move {
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                bytes::Bytes::from_static(name.as_bytes()),
                            )))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, hits, task }
    }

    pub fn count(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// `loadshift ctl` (the real binary) against `server` with `token`: success, stdout, stderr.
pub async fn ctl(server: &str, token: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadshift"))
        .args(["ctl", "--server", server, "--token-file"])
        .arg(token)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
