//! gRPC calls through the real proxy: their own deadline (`grpc-timeout`) governs them instead
//! of `timeouts.request_ms`, capped by `timeouts.grpc_max_ms`, and ends a call that runs past it
//! with grpc-status DEADLINE_EXCEEDED (before or after the response head); every error the proxy
//! answers itself reaches a gRPC client as a trailers-only response with the status of its cause,
//! and the same errors stay plain HTTP for other clients.

// Helpers below panic on purpose: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use futures_util::StreamExt;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use loadshift_core::plan::{Blocking, Plan, ServicePlan};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// One length-prefixed gRPC message.
fn message(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(0);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

/// A gRPC server stand-in on h2c: reads the whole request stream, waits `x-delay-ms`, answers
/// one message (the number of request bytes) and `grpc-status: 0`; with `x-hang: 1` it sends the
/// message and then nothing more. Records the `grpc-timeout` each call arrived with.
struct GrpcUpstream {
    addr: SocketAddr,
    timeouts: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GrpcUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcUpstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let timeouts = Arc::new(Mutex::new(Vec::new()));
        let seen = timeouts.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        async move { Ok::<_, Infallible>(serve_call(req, &seen).await) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            timeouts,
            task,
        }
    }

    fn last_timeout(&self) -> Option<String> {
        self.timeouts.lock().unwrap().last().cloned().flatten()
    }
}

async fn serve_call(req: Request<Incoming>, seen: &Mutex<Vec<Option<String>>>) -> Response<Body> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    seen.lock().unwrap().push(header("grpc-timeout"));
    let delay = header("x-delay-ms").map_or(0, |v| v.parse().unwrap());
    let hang = header("x-hang").is_some();
    let received = req.into_body().collect().await.unwrap().to_bytes().len();
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let msg = Ok(Frame::data(message(received.to_string().as_bytes())));
    let body: Body = if hang {
        StreamBody::new(futures_util::stream::iter([msg]).chain(futures_util::stream::pending()))
            .boxed_unsync()
    } else {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        StreamBody::new(futures_util::stream::iter([
            msg,
            Ok(Frame::trailers(trailers)),
        ]))
        .boxed_unsync()
    };
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    resp
}

/// What a gRPC client reads back from one call.
struct Call {
    status: StatusCode,
    headers: HeaderMap,
    trailers: Option<HeaderMap>,
    took: Duration,
}

impl Call {
    /// `grpc-status`: from the trailers, or from the headers of a trailers-only response.
    fn grpc_status(&self) -> Option<&str> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get(name))
            .or_else(|| self.headers.get(name))
            .and_then(|v| v.to_str().ok())
    }

    /// A trailers-only response: the status in the one HEADERS frame, nothing after it.
    fn is_trailers_only(&self) -> bool {
        self.status == StatusCode::OK
            && self.headers.contains_key("grpc-status")
            && self.trailers.is_none()
    }
}

/// One gRPC call over a fresh h2c connection to `proxy`, with `:authority` `authority`.
async fn call(proxy: SocketAddr, authority: &str, fields: &[(&str, &str)], body: Body) -> Call {
    let io = TokioIo::new(tokio::net::TcpStream::connect(proxy).await.unwrap());
    let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::post(format!("http://{authority}/test.Svc/Call"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in fields {
        req = req.header(*k, *v);
    }
    let t = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        tx.send_request(req.body(body).unwrap()),
    )
    .await
    .expect("a response head within 20 s")
    .unwrap();
    let (parts, body) = resp.into_parts();
    let collected = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("the response ends within 20 s")
        .unwrap();
    Call {
        status: parts.status,
        headers: parts.headers,
        trailers: collected.trailers().cloned(),
        took: t.elapsed(),
    }
}

fn unary() -> Body {
    Full::new(message(b"hello")).boxed_unsync()
}

/// A client stream of `n` messages, one every `every`.
fn trickle(n: usize, every: Duration) -> Body {
    let frames = futures_util::stream::unfold(0, move |i| async move {
        if i == n {
            return None;
        }
        tokio::time::sleep(every).await;
        Some((Ok(Frame::data(message(b"part"))), i + 1))
    });
    StreamBody::new(frames).boxed_unsync()
}

fn yaml(service: &str, extra: &str) -> String {
    format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nworkers: 1\nservices:\n{service}\n{extra}"
    )
}

fn grpc_service(addr: SocketAddr) -> String {
    format!("  - name: grpc\n    protocol: http2\n    endpoints: [{{ addr: \"{addr}\" }}]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_run_under_their_own_deadline_not_the_request_timeout() {
    let up = GrpcUpstream::start().await;
    let proxy = start_proxy(&yaml(
        &grpc_service(up.addr),
        "timeouts: { request_ms: 300, drain_ms: 500 }\n",
    ));
    let addr = proxy.outbound;

    // A unary call whose server takes longer than request_ms, within its 10 s deadline.
    let c = call(
        addr,
        "grpc",
        &[("grpc-timeout", "10S"), ("x-delay-ms", "900")],
        unary(),
    )
    .await;
    assert_eq!(c.grpc_status(), Some("0"), "{:?}", c.headers);
    assert!(c.took >= Duration::from_millis(900), "{:?}", c.took);
    assert_eq!(up.last_timeout().as_deref(), Some("10S"));

    // A client stream longer than request_ms (10 messages over about a second), then a server
    // that takes longer than request_ms again: the call's deadline alone bounds it.
    let c = call(
        addr,
        "grpc",
        &[("grpc-timeout", "10000m"), ("x-delay-ms", "500")],
        trickle(10, Duration::from_millis(100)),
    )
    .await;
    assert_eq!(c.grpc_status(), Some("0"));

    // Without grpc-timeout (and no cap) only the progress limits apply.
    let c = call(addr, "grpc", &[("x-delay-ms", "900")], unary()).await;
    assert_eq!(c.grpc_status(), Some("0"));

    // A deadline that passes before the response head: a trailers-only DEADLINE_EXCEEDED.
    let c = call(
        addr,
        "grpc",
        &[("grpc-timeout", "400m"), ("x-delay-ms", "3000")],
        unary(),
    )
    .await;
    assert!(c.is_trailers_only(), "{:?}", c.headers);
    assert_eq!(c.grpc_status(), Some("4"));
    assert_eq!(c.field("loadshift-error"), Some("deadline-exceeded"));
    assert!(
        c.took >= Duration::from_millis(400) && c.took < Duration::from_secs(3),
        "{:?}",
        c.took
    );

    // A deadline that passes while the response streams: the client gets the head and the
    // first message, then trailers with DEADLINE_EXCEEDED.
    let c = call(
        addr,
        "grpc",
        &[("grpc-timeout", "600m"), ("x-hang", "1")],
        unary(),
    )
    .await;
    assert_eq!(c.status, StatusCode::OK);
    assert!(c.headers.get("grpc-status").is_none(), "{:?}", c.headers);
    assert_eq!(
        c.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .unwrap(),
        "4"
    );

    // The client's own deadline says nothing about the endpoint: nothing is charged.
    let stats = admin_json(proxy.admin, "/stats").await;
    let ep = &stats["services"][0]["endpoints"][0];
    assert_eq!(ep["window"]["errors"], 0, "{ep}");
    assert_eq!(ep["ejected"], false, "{ep}");

    // A malformed grpc-timeout is refused, naming the header, as INTERNAL.
    let c = call(addr, "grpc", &[("grpc-timeout", "1.5S")], unary()).await;
    assert!(c.is_trailers_only(), "{:?}", c.headers);
    assert_eq!(c.grpc_status(), Some("13"));
    assert!(
        c.field("grpc-message").unwrap().contains("grpc-timeout"),
        "{:?}",
        c.headers
    );
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_cap_bounds_a_longer_client_deadline_and_the_upstream_is_told() {
    let up = GrpcUpstream::start().await;
    let proxy = start_proxy(&yaml(
        &grpc_service(up.addr),
        "timeouts: { grpc_max_ms: 500, drain_ms: 500 }\n",
    ));
    let c = call(
        proxy.outbound,
        "grpc",
        &[("grpc-timeout", "30S"), ("x-delay-ms", "3000")],
        unary(),
    )
    .await;
    assert!(c.is_trailers_only(), "{:?}", c.headers);
    assert_eq!(c.grpc_status(), Some("4"));
    assert_eq!(c.field("loadshift-error"), Some("timeout"));
    assert!(c.took < Duration::from_secs(3), "{:?}", c.took);
    assert_eq!(up.last_timeout().as_deref(), Some("500m"));
    // A call without grpc-timeout gets the cap too.
    let c = call(proxy.outbound, "grpc", &[("x-delay-ms", "100")], unary()).await;
    assert_eq!(c.grpc_status(), Some("0"));
    assert_eq!(up.last_timeout().as_deref(), Some("500m"));
    proxy.shutdown();
}

/// An h2c upstream that resets every stream it is sent.
async fn resetting_upstream() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(s).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    respond.send_reset(h2::Reason::INTERNAL_ERROR);
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_the_proxy_answers_reaches_grpc_clients_as_a_grpc_status() {
    let up = GrpcUpstream::start().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let reset = resetting_upstream().await;
    let services = [
        grpc_service(up.addr),
        "  - name: empty\n    protocol: http2\n    endpoints: []".to_string(),
        format!("  - name: dead\n    protocol: http2\n    endpoints: [{{ addr: \"{dead}\" }}]"),
        format!("  - name: reset\n    protocol: http2\n    endpoints: [{{ addr: \"{reset}\" }}]"),
    ]
    .join("\n");
    let proxy = start_proxy(&yaml(
        &services,
        // One attempt: a connect failure is answered as such, not retried into "no endpoint".
        "overload: { max_in_flight: 1, retry_after_s: 2 }\ntimeouts: { drain_ms: 500 }\nretries: { max_attempts: 1 }\n",
    ));
    let addr = proxy.outbound;

    // (authority, grpc-status, loadshift-error)
    let cases = [
        ("nowhere", "12", "no-route"),
        ("empty", "14", "no-endpoint"),
        ("dead", "14", "connect"),
        ("reset", "14", "upstream"),
    ];
    for (authority, status, code) in cases {
        let c = call(addr, authority, &[], unary()).await;
        assert!(c.is_trailers_only(), "{authority}: {:?}", c.headers);
        assert_eq!(
            c.grpc_status(),
            Some(status),
            "{authority}: {:?}",
            c.headers
        );
        assert_eq!(c.field("loadshift-error"), Some(code), "{authority}");
        assert_eq!(c.field("content-type"), Some("application/grpc"));
        assert!(!c.field("grpc-message").unwrap().is_empty(), "{authority}");
    }
    let c = call(addr, "empty", &[], unary()).await;
    assert_eq!(
        c.field("grpc-message"),
        Some("service \"empty\" has no endpoint")
    );

    // Overload shedding: RESOURCE_EXHAUSTED with both retry hints.
    let slow = tokio::spawn(async move {
        call(addr, "grpc", &[("x-delay-ms", "1500")], unary())
            .await
            .grpc_status()
            .map(str::to_string)
    });
    let mut shed = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let c = call(addr, "grpc", &[], unary()).await;
        if c.grpc_status() == Some("8") {
            shed = Some(c);
            break;
        }
    }
    let shed = shed.expect("a call past max_in_flight is shed");
    assert!(shed.is_trailers_only());
    assert_eq!(shed.field("loadshift-error"), Some("overloaded"));
    assert_eq!(shed.field("retry-after"), Some("2"));
    assert_eq!(shed.field("grpc-retry-pushback-ms"), Some("2000"));
    assert_eq!(slow.await.unwrap().as_deref(), Some("0"));

    // Blocking by the plan: RESOURCE_EXHAUSTED, the reason and both retry hints.
    let blocking = BTreeMap::from([(
        "default".to_string(),
        Blocking {
            fraction: 1.0,
            max_in_flight: None,
        },
    )]);
    proxy
        .shared
        .apply_plan(Plan {
            version: 1,
            services: BTreeMap::from([(
                "grpc".to_string(),
                ServicePlan {
                    blocking,
                    ..Default::default()
                },
            )]),
        })
        .unwrap();
    let c = call(addr, "grpc", &[], unary()).await;
    assert!(c.is_trailers_only(), "{:?}", c.headers);
    assert_eq!(c.grpc_status(), Some("8"));
    assert_eq!(c.field("loadshift-blocked"), Some("fraction"));
    assert_eq!(c.field("retry-after"), Some("1"));
    assert_eq!(c.field("grpc-retry-pushback-ms"), Some("1000"));

    // The same causes stay plain HTTP for a client that is not gRPC.
    let c = h1_client();
    let got = send(&c, addr, "nowhere", &[], b"").await;
    assert_eq!(got.status, 404);
    assert!(got.header("grpc-status").is_none());
    let got = send(&c, addr, "empty", &[], b"").await;
    assert_eq!(got.status, 503);
    assert_eq!(got.header("loadshift-error"), Some("no-endpoint"));
    // And a gRPC request over HTTP/1.1 is answered in gRPC's terms all the same.
    let got = send(
        &c,
        addr,
        "empty",
        &[("content-type", "application/grpc")],
        b"",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("grpc-status"), Some("14"));
    proxy.shutdown();
}
