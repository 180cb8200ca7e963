//! `loadshift app` as a process: announces an OS-chosen port, answers HTTP/1.1 and h2c with its
//! container header, queues requests beyond its concurrency, follows its interference file at
//! runtime, and rejects invalid arguments with exit code 64.

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
