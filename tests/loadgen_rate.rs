//! `loadshift load` sends at the requested rate: a real hyper server on 127.0.0.1:0 timestamps
//! every arrival, and the arrival rate it sees must match the schedule within a few percent,
//! spread evenly over the run rather than in bursts.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn timestamping_server() -> (SocketAddr, Arc<Mutex<Vec<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    seen.lock().expect("lock").push(Instant::now());
                    async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, arrivals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_follow_the_requested_rate() {
    let (addr, arrivals) = timestamping_server().await;
    let summary = common::run_load(addr, "1000", "3s").await;
    assert_eq!(summary["sent"], 3000);
    assert_eq!(summary["completed"], 3000);
    assert_eq!(summary["errors"], serde_json::json!({}));
    let achieved = summary["achieved_rps"].as_f64().expect("rate");
    assert!((achieved - 1000.0).abs() < 30.0, "achieved {achieved}");

    let times = arrivals.lock().expect("lock").clone();
    assert_eq!(times.len(), 3000);
    let span = times[times.len() - 1]
        .duration_since(times[0])
        .as_secs_f64();
    let rate = (times.len() - 1) as f64 / span;
    assert!((rate - 1000.0).abs() < 30.0, "server saw {rate:.1} req/s");
    // Even pacing: every half second of the run carries its share (500), not a burst.
    let mut buckets = [0u32; 6];
    for t in &times {
        let i = (t.duration_since(times[0]).as_secs_f64() / 0.5) as usize;
        buckets[i.min(5)] += 1;
    }
    for (i, n) in buckets.iter().enumerate() {
        assert!(
            (400..=600).contains(n),
            "half-second {i} got {n} requests: {buckets:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_fails_with_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadshift"))
        .args([
            "load",
            &format!("http://{addr}/"),
            "--rate",
            "10",
            "--duration",
            "1s",
        ])
        .output()
        .await
        .expect("run loadshift load");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadshift"))
        .args(["load", "https://127.0.0.1:1/", "--rate", "10"])
        .output()
        .await
        .expect("run loadshift load");
    assert_eq!(out.status.code(), Some(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churned_connections_each_carry_their_share_of_requests() {
    let (addr, arrivals) = timestamping_server().await;
    let out = tokio::process::Command::new(common::bin())
        .args(["load", &format!("http://{addr}/"), "--rate", "500"])
        .args([
            "--duration",
            "2s",
            "--connections",
            "4",
            "--max-connections",
            "4",
        ])
        .args(["--requests-per-connection", "10", "--json"])
        .output()
        .await
        .expect("run loadshift load");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["completed"], 1000, "{summary}");
    assert_eq!(arrivals.lock().expect("lock").len(), 1000);
    // 1000 requests at 10 per connection: 100 connections, plus at most the 4 warm ones that
    // were still open, unused up to their share, when the run ended.
    let opened = summary["connections"].as_u64().expect("connections");
    assert!((100..=104).contains(&opened), "opened {opened}");
}
