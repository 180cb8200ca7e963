//! `loadshift app` calls its children through the sidecar's outbound listener with
//! `Host: <service>`: a real hyper server stands where the sidecar would be and records every
//! call. Checks call probabilities, sequence vs parallel timing, header propagation, that a
//! failing child fails the parent with its status and the child's name, and that a failing
//! optional child only degrades it.

mod common;

use common::{start_app, temp_dir};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
struct Call {
    host: String,
    class: Option<String>,
}

/// Stands in for the sidecar's outbound listener: records each call, answers after 50 ms,
/// and answers 503 for `Host: broken`.
async fn outbound() -> (SocketAddr, Arc<Mutex<Vec<Call>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let header = |n: &str| {
                        req.headers()
                            .get(n)
                            .map(|v| v.to_str().unwrap_or("").to_string())
                    };
                    let call = Call {
                        host: header("host").unwrap_or_default(),
                        class: header("x-class"),
                    };
                    seen.lock().expect("lock").push(call.clone());
                    async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"child")));
                        if call.host == "broken" {
                            *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, calls)
}

async fn get(addr: &str, class: &str) -> (u16, Option<String>, Duration) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = Request::get(format!("http://{addr}/"))
        .header("x-class", class)
        .body(Empty::new())
        .expect("request");
    let t = Instant::now();
    let resp = client.request(req).await.expect("response");
    let status = resp.status().as_u16();
    let failed = resp
        .headers()
        .get("x-loadshift-failed-child")
        .map(|v| v.to_str().unwrap_or("").to_string());
    resp.into_body().collect().await.expect("body");
    (status, failed, t.elapsed())
}

/// App arguments: no service time of its own, room for every test's concurrency, calls through
/// `out`, then `rest`.
fn args(out: SocketAddr, rest: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--service-time",
        "const:0",
        "--concurrency",
        "64",
        "--outbound",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(out.to_string());
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_are_called_by_host_with_their_probability() {
    let (out, calls) = outbound().await;
    let dir = temp_dir("app-children");
    let (_app, addr) = start_app(
        &dir,
        &args(
            out,
            &[
                "--child",
                "always",
                "--child",
                "never:0",
                "--child",
                "half:0.5",
                "--propagate",
                "x-class",
            ],
        ),
    )
    .await;
    let n = 200;
    let all = futures_util::future::join_all((0..n).map(|_| get(&addr, "gold"))).await;
    assert!(all.iter().all(|(s, _, _)| *s == 200));
    let calls = calls.lock().expect("lock").clone();
    let count = |h: &str| calls.iter().filter(|c| c.host == h).count();
    assert_eq!(count("always"), n);
    assert_eq!(count("never"), 0);
    // Binomial(200, 0.5): sd ~7; 5 sd.
    assert!((65..=135).contains(&count("half")), "{}", count("half"));
    assert!(
        calls.iter().all(|c| c.class.as_deref() == Some("gold")),
        "class header propagated"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_adds_up_and_parallel_overlaps() {
    let (out, _) = outbound().await;
    let dir = temp_dir("app-seq");
    let (_seq, seq_addr) = start_app(
        &dir,
        &args(out, &["--child", "a", "--child", "b", "--child", "c"]),
    )
    .await;
    let (_, _, seq) = get(&seq_addr, "x").await;
    assert!(
        seq >= Duration::from_millis(150),
        "three 50 ms calls in a row: {seq:?}"
    );

    let dir2 = temp_dir("app-par");
    let (_par, par_addr) = start_app(
        &dir2,
        &args(
            out,
            &[
                "--child", "a", "--child", "b", "--child", "c", "--calls", "parallel",
            ],
        ),
    )
    .await;
    // The first request opens connections; time the second.
    get(&par_addr, "x").await;
    let (_, _, par) = get(&par_addr, "x").await;
    assert!(
        par >= Duration::from_millis(50) && par < Duration::from_millis(140),
        "{par:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_child_fails_the_parent_with_its_name() {
    let (out, calls) = outbound().await;
    let dir = temp_dir("app-fail");
    let (_app, addr) =
        start_app(&dir, &args(out, &["--child", "broken", "--child", "after"])).await;
    let (status, failed, _) = get(&addr, "x").await;
    assert_eq!(status, 503);
    assert_eq!(failed.as_deref(), Some("broken"));
    assert_eq!(
        calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| c.host == "after")
            .count(),
        0,
        "a sequence stops at the first failure"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_optional_child_degrades_the_parent_instead_of_failing_it() {
    let (out, calls) = outbound().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    for mode in ["sequence", "parallel"] {
        let dir = temp_dir("app-optional");
        let (_app, addr) = start_app(
            &dir,
            &args(
                out,
                &[
                    "--child",
                    "broken",
                    "--child",
                    "after",
                    "--optional",
                    "broken",
                    "--calls",
                    mode,
                ],
            ),
        )
        .await;
        calls.lock().expect("lock").clear();
        let resp = client
            .get(format!("http://{addr}/").parse().expect("uri"))
            .await
            .expect("response");
        assert_eq!(resp.status(), 200, "{mode}");
        assert_eq!(resp.headers()["x-loadshift-degraded"], "broken", "{mode}");
        assert!(resp.headers().get("x-loadshift-failed-child").is_none());
        resp.into_body().collect().await.expect("body");
        let called: Vec<String> = calls
            .lock()
            .expect("lock")
            .iter()
            .map(|c| c.host.clone())
            .collect();
        assert!(called.contains(&"after".to_string()), "{mode}: {called:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The same child, not optional, fails the request.
    let dir = temp_dir("app-not-optional");
    let (_app, addr) =
        start_app(&dir, &args(out, &["--child", "after", "--child", "broken"])).await;
    let (status, failed, _) = get(&addr, "x").await;
    assert_eq!((status, failed.as_deref()), (503, Some("broken")));
    let _ = std::fs::remove_dir_all(&dir);
}
