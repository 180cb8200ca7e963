//! An independent gRPC stack through the real proxy: grpcio (Debian's `python3-grpcio`, run by
//! `/usr/bin/python3`) as client and server, scripts in `tests/grpcio/`. What grpcio reports is
//! what a gRPC application sees: the proxy's reasons arrive as status codes with their details
//! (UNAVAILABLE for a service with no endpoint, UNIMPLEMENTED for no route, RESOURCE_EXHAUSTED
//! for a blocked call, DEADLINE_EXCEEDED for a deadline, the client's or the proxy's cap), and a
//! 12 s client stream with a 30 s deadline succeeds under the default `request_ms` (10 s).
//! Skipped, saying so, where grpcio is not installed.

// Helpers below panic on purpose: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use common::*;
use loadshift_core::plan::{Blocking, Plan, ServicePlan};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

const PYTHON: &str = "/usr/bin/python3";

fn grpcio_missing() -> bool {
    let ok = std::process::Command::new(PYTHON)
        .args(["-c", "import grpc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: `{PYTHON} -c 'import grpc'` failed (install python3-grpcio)");
    }
    !ok
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/grpcio")
        .join(name)
}

/// A Python child that ignores any proxy settings of the environment (its traffic is loopback).
fn python(script_name: &str) -> Command {
    let mut c = Command::new(PYTHON);
    c.arg(script(script_name)).kill_on_drop(true);
    for v in [
        "http_proxy",
        "https_proxy",
        "grpc_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
    ] {
        c.env_remove(v);
    }
    c
}

/// Starts the grpcio server and waits (bounded) for the port it prints.
async fn grpcio_server() -> (Child, SocketAddr) {
    let mut child = python("server.py")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the grpcio server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the grpcio server prints its port within 30 s")
        .unwrap()
        .expect("a port line");
    (child, format!("127.0.0.1:{}", port.trim()).parse().unwrap())
}

/// What grpcio reported for one call.
#[derive(Debug)]
struct Reported {
    code: String,
    details: String,
    seconds: f64,
}

/// Runs one call with the grpcio client through `proxy`, to `authority`.
async fn grpcio_call(proxy: SocketAddr, authority: &str, call: &str, deadline_s: u32) -> Reported {
    let out = tokio::time::timeout(
        Duration::from_secs(u64::from(deadline_s) + 30),
        python("client.py")
            .args([&proxy.to_string(), authority, call, &deadline_s.to_string()])
            .output(),
    )
    .await
    .expect("the grpcio client ends")
    .unwrap();
    assert!(
        out.status.success(),
        "grpcio client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = Reported {
        code: v["code"].as_str().unwrap().to_string(),
        details: v["details"].as_str().unwrap_or_default().to_string(),
        seconds: v["seconds"].as_f64().unwrap(),
    };
    eprintln!("grpcio: {authority} {call}: {r:?}");
    r
}

/// An h2c upstream that takes every call and never answers any.
async fn silent_h2_upstream() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(s).await else {
                    return;
                };
                let mut held = Vec::new();
                while let Some(Ok(call)) = conn.accept().await {
                    held.push(call);
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_reports_the_proxys_reasons_as_status_codes() {
    if grpcio_missing() {
        return;
    }
    let (_server, server) = grpcio_server().await;
    let silent = silent_h2_upstream().await;
    let proxy = start_proxy(&format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nworkers: 1\nservices:\n  - name: grpc\n    protocol: http2\n    endpoints: [{{ addr: \"{server}\" }}]\n  - name: blocked\n    protocol: http2\n    endpoints: [{{ addr: \"{server}\" }}]\n  - name: silent\n    protocol: http2\n    endpoints: [{{ addr: \"{silent}\" }}]\n  - name: empty\n    protocol: http2\n    endpoints: []\ntimeouts: {{ grpc_max_ms: 2000, drain_ms: 500 }}\n"
    ));
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
                "blocked".to_string(),
                ServicePlan {
                    blocking,
                    ..Default::default()
                },
            )]),
        })
        .unwrap();
    let addr = proxy.outbound;

    let ok = grpcio_call(addr, "grpc", "echo:hi", 10).await;
    assert_eq!((ok.code.as_str(), ok.details.as_str()), ("OK", "hi"));

    let r = grpcio_call(addr, "empty", "echo:hi", 10).await;
    assert_eq!(r.code, "UNAVAILABLE");
    assert!(r.details.contains("has no endpoint"), "{r:?}");

    let r = grpcio_call(addr, "nowhere", "echo:hi", 10).await;
    assert_eq!(r.code, "UNIMPLEMENTED");
    assert!(r.details.contains("no service routes"), "{r:?}");

    let r = grpcio_call(addr, "blocked", "echo:hi", 10).await;
    assert_eq!(r.code, "RESOURCE_EXHAUSTED");
    assert!(r.details.contains("blocked"), "{r:?}");

    // The client's own deadline passes while the server works.
    let r = grpcio_call(addr, "grpc", "echo:sleep:4000", 1).await;
    assert_eq!(r.code, "DEADLINE_EXCEEDED", "{r:?}");

    // The proxy's cap (2 s) passes long before the client's 20 s deadline. The server was told
    // the capped deadline, so it may give up first with its own DEADLINE_EXCEEDED.
    let r = grpcio_call(addr, "grpc", "echo:sleep:6000", 20).await;
    assert_eq!(r.code, "DEADLINE_EXCEEDED", "{r:?}");
    assert!(r.seconds < 6.0, "{r:?}");
    // A server that never answers: the proxy ends the call at its cap, with its reason.
    let r = grpcio_call(addr, "silent", "echo:hi", 20).await;
    assert_eq!(r.code, "DEADLINE_EXCEEDED", "{r:?}");
    assert!(r.details.contains("no response in time"), "{r:?}");
    assert!(r.seconds < 6.0, "{r:?}");
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_12_s_client_stream_with_a_30_s_deadline_outlives_the_default_request_timeout() {
    if grpcio_missing() {
        return;
    }
    let (_server, server) = grpcio_server().await;
    // Default timeouts: request_ms is 10 s.
    let proxy = start_proxy(&format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nworkers: 1\ndefault_service: grpc\nservices:\n  - name: grpc\n    protocol: http2\n    endpoints: [{{ addr: \"{server}\" }}]\n"
    ));
    let r = grpcio_call(proxy.outbound, "grpc", "upload:12,1", 30).await;
    assert_eq!((r.code.as_str(), r.details.as_str()), ("OK", "12"), "{r:?}");
    assert!(r.seconds >= 12.0, "{r:?}");
    proxy.shutdown();
}
