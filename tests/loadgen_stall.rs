//! No coordinated omission: a server that stalls for 200 ms must show the stall in the latency
//! of every request scheduled during it, not only in the few that were in flight. At 1000 req/s
//! about 200 of 2000 requests fall in the stall, waiting 0-200 ms each, so the top decile of
//! latencies is the stall: p99 near 200 ms, p95 near 100 ms, while the median stays small.
//! A closed-loop client would record only ~32 slow requests (one per connection) and a p95
//! near the median.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;

const STALL_AT: Duration = Duration::from_millis(800);
const STALL_FOR: Duration = Duration::from_millis(200);

/// Answers at once, except that every request arriving in [800 ms, 1000 ms) after the first
/// one is held until 1000 ms.
async fn stalling_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let first: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let first = first.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let start = *first.get_or_init(Instant::now);
                    async move {
                        let since = start.elapsed();
                        if since >= STALL_AT && since < STALL_AT + STALL_FOR {
                            tokio::time::sleep_until(start + STALL_AT + STALL_FOR).await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_every_request_scheduled_during_it() {
    let addr = stalling_server().await;
    let s = common::run_load(addr, "1000", "2s").await;
    let ms = |k: &str| s[k].as_f64().expect(k);
    assert_eq!(s["completed"], 2000, "{s}");
    assert!(ms("p50_ms") < 50.0, "median unaffected by the stall: {s}");
    assert!(ms("p95_ms") >= 60.0, "p95 is inside the stall: {s}");
    assert!(ms("p99_ms") >= 150.0, "p99 carries the stall: {s}");
    assert!(ms("p90_ms") < ms("p99_ms"), "{s}");
    assert!(ms("max_ms") >= 180.0 && ms("max_ms") < 400.0, "{s}");
    // Requests that had to wait for a connection were counted as late.
    assert!(s["late"].as_u64().expect("late") >= 100, "{s}");
    assert!(s["connections"].as_u64().expect("connections") > 32, "{s}");
}
