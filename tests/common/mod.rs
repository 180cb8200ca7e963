//! Shared pieces of the end-to-end tests: real upstream HTTP servers on 127.0.0.1:0 that record
//! what reached them, an in-process proxy built from YAML, and clients.
// Test support: a failed set-up step should fail the test on the spot.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::net::TcpListener;

mod lab;
mod wire;
#[allow(unused_imports)]
pub use lab::*;
#[allow(unused_imports)]
pub use wire::*;

/// How an upstream answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Ok,
    /// 503 to everything.
    Fail,
    /// 200 after a delay.
    Delay(Duration),
}

/// A real HTTP/1.1 + h2c server that counts requests and accepted connections.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    pub connections: Arc<AtomicUsize>,
    pub behaviour: Arc<Mutex<Behaviour>>,
    /// Request headers of the last request.
    pub last_headers: Arc<Mutex<http::HeaderMap>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let behaviour = Arc::new(Mutex::new(Behaviour::Ok));
        let last_headers = Arc::new(Mutex::new(http::HeaderMap::new()));
        let (r, c, b, h, n) = (
            requests.clone(),
            connections.clone(),
            behaviour.clone(),
            last_headers.clone(),
            name.to_string(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::Relaxed);
                let (r, b, h, n) = (r.clone(), b.clone(), h.clone(), n.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (r, b, h, n) = (r.clone(), b.clone(), h.clone(), n.clone());
                        async move { Ok::<_, Infallible>(answer(req, &r, &b, &h, &n).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            name: name.to_string(),
            addr,
            requests,
            connections,
            behaviour,
            last_headers,
            task,
        }
    }

    pub fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    pub fn count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

async fn answer(
    req: Request<Incoming>,
    requests: &AtomicU64,
    behaviour: &Mutex<Behaviour>,
    last: &Mutex<http::HeaderMap>,
    name: &str,
) -> Response<Full<Bytes>> {
    requests.fetch_add(1, Ordering::Relaxed);
    *last.lock().unwrap() = req.headers().clone();
    let b = *behaviour.lock().unwrap();
    let version = format!("{:?}", req.version());
    // Echo the request body so streaming both ways is checked.
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let status = match b {
        Behaviour::Ok => StatusCode::OK,
        Behaviour::Fail => StatusCode::SERVICE_UNAVAILABLE,
        Behaviour::Delay(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK
        }
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-upstream", name.parse().unwrap());
    resp.headers_mut()
        .insert("x-upstream-version", version.parse().unwrap());
    resp.headers_mut()
        .insert("connection", "x-hop".parse().unwrap());
    resp.headers_mut()
        .insert("x-hop", "secret".parse().unwrap());
    resp
}

/// YAML for a standalone proxy routing service `web` to the given upstreams, one host label per
/// upstream (`h0`, `h1`, ...), plus extra top-level YAML.
pub fn standalone_yaml(upstreams: &[&Upstream], extra: &str) -> String {
    let eps: Vec<String> = upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| {
            format!(
                "      - {{ addr: \"{}\", host: h{i}, zone: z{}, container: {} }}",
                u.addr,
                i % 2,
                u.name
            )
        })
        .collect();
    format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nidentity: {{ pod: test-proxy }}\nservices:\n  - name: web\n    endpoints:\n{}\n{extra}",
        eps.join("\n")
    )
}

/// Starts the proxy in this process.
pub fn start_proxy(yaml: &str) -> loadshift_proxy::Running {
    let cfg = loadshift_proxy::config::ProxyConfig::parse(yaml).unwrap();
    loadshift_proxy::start(cfg).unwrap()
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn h1_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

/// What a test reads back from one request.
pub struct Got {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends one request to the proxy with `Host: host` and extra headers.
pub async fn send(
    c: &HttpClient,
    proxy: SocketAddr,
    host: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> Got {
    let mut b = Request::builder()
        .method(if body.is_empty() { "GET" } else { "POST" })
        .uri(format!("http://{proxy}/path?q=1"))
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = c
        .request(b.body(Full::new(Bytes::from_static(body))).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// GETs an admin path and parses JSON.
pub async fn admin_json(admin: SocketAddr, path: &str) -> serde_json::Value {
    let c = h1_client();
    let resp = c
        .get(format!("http://{admin}{path}").parse().unwrap())
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

/// Path of the built `loadshift` binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_loadshift")
}

/// Sends one h2c (prior knowledge) request whose `:authority` is `authority`, over a fresh
/// connection to `proxy`, as a sidecar's app would.
pub async fn send_h2(proxy: SocketAddr, authority: &str, body: &'static [u8]) -> Got {
    let io = TokioIo::new(tokio::net::TcpStream::connect(proxy).await.unwrap());
    let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("http://{authority}/path"))
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A fresh directory under the system temp dir, unique per process and call.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("loadshift-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Starts `loadshift app` with `extra` arguments and waits (bounded) for its port file; returns
/// the child (killed on drop) and its `ip:port`.
pub async fn start_app<S: AsRef<std::ffi::OsStr>>(
    dir: &std::path::Path,
    extra: &[S],
) -> (tokio::process::Child, String) {
    let port_file = dir.join("port");
    let child = tokio::process::Command::new(bin())
        .arg("app")
        .arg("--port-file")
        .arg(&port_file)
        .args(extra)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn app");
    for _ in 0..200 {
        if let Ok(s) = std::fs::read_to_string(&port_file)
            && s.ends_with('\n')
        {
            return (child, s.trim().to_string());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("app did not write its port file");
}

/// Runs `loadshift load --json` against `addr` and returns its summary; fails the test when the
/// generator fails.
pub async fn run_load(addr: SocketAddr, rate: &str, duration: &str) -> serde_json::Value {
    let out = tokio::process::Command::new(bin())
        .args([
            "load",
            &format!("http://{addr}/"),
            "--rate",
            rate,
            "--duration",
            duration,
            "--json",
        ])
        .output()
        .await
        .expect("run loadshift load");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json summary")
}

/// Processes whose command line mentions `dir` (every lab child gets a config or file under it).
pub fn processes_under(dir: &std::path::Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&needle) {
            found.push(format!("{name}: {cmd}"));
        }
    }
    found
}
