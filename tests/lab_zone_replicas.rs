//! `loadshift lab` with inter-zone RTT: a replica the lab starts on a decision gets a zone relay
//! in front of its sidecar like the initial containers, the endpoints file publishes the relay's
//! address (so callers' calls to it cross the relay and take the RTT), and the relay closes when
//! the replica stops.

mod common;

use common::{Lab, decide, h1_client, processes_under, send, temp_dir};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

/// The gateway is in zone a (the first host's), the service only in zone b, 10 ms apart.
const SCENARIO: &str = r#"
name: zones
seed: 7
duration_s: 25
warmup_s: 0
report_interval_s: 1
zones: [{ name: a }, { name: b }]
rtt:
  - { between: [a, b], ms: 10 }
hosts:
  - { name: h1, zone: a, cores: 2 }
  - { name: h2, zone: b, cores: 2 }
services:
  - name: api
    service_time: { dist: constant, mean_ms: 2 }
    concurrency: 4
    replicas: { h2: 1 }
flows:
  - name: web
    entry: api
    arrival: { process: poisson, rate: 10 }
    sla: { latency_ms: 5000, percentile: 95 }
"#;

/// The address the endpoints file gives `container`.
fn endpoint(lab: &Lab, container: &str) -> SocketAddr {
    let file = lab.yaml("endpoints.yaml");
    let eps = file["api"].as_array().expect("api endpoints");
    let e = eps
        .iter()
        .find(|e| e["container"] == container)
        .unwrap_or_else(|| panic!("{container} in {file}"));
    e["addr"]
        .as_str()
        .expect("addr")
        .parse()
        .expect("socket address")
}

/// The sidecar's inbound listener of `container`.
fn inbound(lab: &Lab, container: &str) -> SocketAddr {
    let cfg = lab.yaml(&format!("sidecar-{container}.yaml"));
    cfg["inbound"]["listen"]
        .as_str()
        .expect("listen")
        .parse()
        .expect("socket address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_is_published_at_its_zone_relay() {
    let dir = temp_dir("lab-zone-replicas");
    let lab = Lab::start(
        &dir,
        SCENARIO,
        // Round robin, so the gateway calls the replica as soon as it knows it.
        "round-robin",
        // The HPA's first round would come after the run: only this test's decisions act.
        &[
            "--scaler",
            "hpa",
            "--scale-interval-s",
            "600",
            "--max-replicas",
            "3",
        ],
    );
    let url = lab.receiver().await;
    assert_ne!(
        endpoint(&lab, "api-h2"),
        inbound(&lab, "api-h2"),
        "initial relay"
    );

    let (status, done) = decide(
        &url,
        &json!({"service": "api", "from": 1, "to": 2, "reason": "test"}),
    )
    .await;
    assert_eq!((status, &done["containers"]), (200, &json!(2)), "{done}");
    let relay = endpoint(&lab, "api-h2-r1");
    assert_ne!(
        relay,
        inbound(&lab, "api-h2-r1"),
        "the replica is published at its relay"
    );
    // The relay forwards to the replica's sidecar, and the gateway, which learns endpoints from
    // the control plane, calls the replica there.
    let c = h1_client();
    let got = send(&c, relay, "api", &[], b"").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-loadshift-container"), Some("api-h2-r1"));
    let mut reached = false;
    for _ in 0..100 {
        let got = send(&c, lab.gateway(), "api", &[], b"").await;
        if got.header("x-loadshift-container") == Some("api-h2-r1") {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reached, "the gateway never called the replica");

    let (status, done) = decide(
        &url,
        &json!({"service": "api", "from": 2, "to": 1, "reason": "test"}),
    )
    .await;
    assert_eq!((status, &done["containers"]), (200, &json!(1)), "{done}");
    // Its relay closed with it (a child the lab forks at that moment may hold the socket briefly).
    let mut closed = false;
    for _ in 0..50 {
        if std::net::TcpStream::connect(relay).is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(closed, "the stopped replica's relay still listens");

    lab.finish();
    let csv = std::fs::read_to_string(dir.join("out/timeseries.csv")).expect("csv");
    assert!(
        csv.contains(",zone_rtt_ms,,a->b,"),
        "calls from zone a took the RTT"
    );
    assert_eq!(processes_under(&dir), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}
