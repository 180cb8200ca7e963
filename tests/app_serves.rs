//! `loadshift app` as a process: announces an OS-chosen port, answers HTTP/1.1 and h2c with its
//! container header, queues requests beyond its concurrency, resizes its concurrency while
//! serving without cutting work in service, follows its interference file at runtime, and
//! rejects invalid arguments with exit code 64.

mod common;

use common::{start_app, temp_dir};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::process::Command;

fn h1() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get(client: &Client<HttpConnector, Empty<Bytes>>, addr: &str) -> (u16, String, Duration) {
    let t = Instant::now();
    let resp = client
        .get(format!("http://{addr}/").parse().expect("uri"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let container = resp
        .headers()
        .get("x-loadshift-container")
        .map(|v| v.to_str().expect("ascii").to_string())
        .unwrap_or_default();
    resp.into_body().collect().await.expect("body");
    (status, container, t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_http1_and_h2c_with_the_container_header() {
    let dir = temp_dir("app-serve");
    let (_app, addr) =
        start_app(&dir, &["--container", "web-7", "--service-time", "const:1"]).await;
    let (status, container, _) = get(&h1(), &addr).await;
    assert_eq!((status, container.as_str()), (200, "web-7"));

    let h2: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let resp = h2
        .get(format!("http://{addr}/").parse().expect("uri"))
        .await
        .expect("h2 response");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-loadshift-container"], "web-7");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_concurrency_queue() {
    let dir = temp_dir("app-queue");
    let (_app, addr) =
        start_app(&dir, &["--service-time", "const:100", "--concurrency", "2"]).await;
    let client = h1();
    let t = Instant::now();
    let all = futures_util::future::join_all((0..6).map(|_| get(&client, &addr))).await;
    let elapsed = t.elapsed();
    assert!(all.iter().all(|(s, _, _)| *s == 200));
    // 6 requests, 2 at a time, 100 ms each: three rounds.
    assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    let mut lat: Vec<_> = all.iter().map(|(_, _, d)| *d).collect();
    lat.sort();
    assert!(
        lat[5] >= Duration::from_millis(290),
        "the last pair waited two rounds: {lat:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET /_loadshift/stats` as JSON.
async fn stats(client: &Client<HttpConnector, Empty<Bytes>>, addr: &str) -> serde_json::Value {
    let resp = client
        .get(
            format!("http://{addr}/_loadshift/stats")
                .parse()
                .expect("uri"),
        )
        .await
        .expect("stats");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&body).expect("json")
}

/// `PUT /_loadshift/concurrency?n=N`: status and body.
async fn set_concurrency(addr: &str, n: &str) -> (u16, String) {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::put(format!("http://{addr}/_loadshift/concurrency?n={n}"))
        .body(Empty::new())
        .expect("request");
    let resp = client.request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Most requests seen in service at once while `n` requests of 600 ms each run, sampled every
/// 20 ms until they are all answered; asserts each got its 200.
async fn peak_in_service(addr: &str, n: usize) -> u64 {
    let client = h1();
    let runs: Vec<_> = (0..n)
        .map(|_| {
            let (client, addr) = (client.clone(), addr.to_string());
            tokio::spawn(async move { get(&client, &addr).await.0 })
        })
        .collect();
    let mut peak = 0;
    while !runs.iter().all(|r| r.is_finished()) {
        let s = stats(&client, addr).await;
        peak = peak.max(s["in_service"].as_u64().expect("in_service"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in runs {
        assert_eq!(r.await.expect("request"), 200);
    }
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_resized_while_serving_without_cutting_work() {
    let dir = temp_dir("app-resize");
    let (_app, addr) =
        start_app(&dir, &["--service-time", "const:600", "--concurrency", "1"]).await;
    let client = h1();
    assert_eq!(stats(&client, &addr).await["concurrency"], 1);
    assert_eq!(peak_in_service(&addr, 2).await, 1, "one slot");

    assert_eq!(
        set_concurrency(&addr, "3").await,
        (200, "{\"concurrency\":3}\n".to_string())
    );
    assert_eq!(stats(&client, &addr).await["concurrency"], 3);
    assert_eq!(peak_in_service(&addr, 3).await, 3, "three slots");

    // Shrinking while three requests are in service: all three finish, then one at a time.
    let busy: Vec<_> = (0..3)
        .map(|_| {
            let (client, addr) = (client.clone(), addr.clone());
            tokio::spawn(async move { get(&client, &addr).await.0 })
        })
        .collect();
    for _ in 0..100 {
        if stats(&client, &addr).await["in_service"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(set_concurrency(&addr, "1").await.0, 200);
    for b in busy {
        assert_eq!(b.await.expect("request"), 200, "work in service is not cut");
    }
    assert_eq!(stats(&client, &addr).await["concurrency"], 1);
    assert_eq!(peak_in_service(&addr, 3).await, 1, "back to one slot");

    for bad in ["0", "x", ""] {
        assert_eq!(set_concurrency(&addr, bad).await.0, 400, "n={bad}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interference_file_multiplies_service_time_at_runtime() {
    let dir = temp_dir("app-interf");
    let factor = dir.join("factor");
    let (_app, addr) = start_app(
        &dir,
        &[
            "--service-time",
            "const:40",
            "--interference-file",
            factor.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    let client = h1();
    let (_, _, base) = get(&client, &addr).await;
    assert!(
        base >= Duration::from_millis(40) && base < Duration::from_millis(110),
        "{base:?}"
    );
    std::fs::write(&factor, "4").expect("write factor");
    // The file is re-read every 200 ms; wait for it to take effect (bounded).
    let mut slow = Duration::ZERO;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        slow = get(&client, &addr).await.2;
        if slow >= Duration::from_millis(160) {
            break;
        }
    }
    assert!(slow >= Duration::from_millis(160), "4x of 40 ms: {slow:?}");
    std::fs::write(&factor, "1").expect("write factor");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, _, back) = get(&client, &addr).await;
    assert!(back < Duration::from_millis(110), "{back:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn invalid_arguments_exit_64_naming_the_flag() {
    for args in [
        &["app", "--service-time", "uniform:3"][..],
        &["app", "--concurrency", "0"],
        &["app", "--cpu-fraction", "1.5"],
        &["app", "--child", "db:0.5"],
        &["app", "--optional", "db"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_loadshift"))
            .args(args)
            .output()
            .await
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(
            matches!(out.status.code(), Some(2 | 64)),
            "{args:?}: {:?}",
            out.status
        );
        let flag = args[1];
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}
