//! `loadshift lab` browns out an optional service: a brownout decision stops all of its
//! containers and leaves it with no endpoints, its caller's requests go on degraded instead of
//! failing, and a second brownout decision brings it back. A brownout of a service that is not
//! optional, and a plain replica decision for a browned-out one, are refused naming the service.

mod common;

use common::{Lab, decide, h1_client, processes_under, send, temp_dir};
use std::time::Duration;

use serde_json::json;

/// `api` calls `recs` on every request; `recs` is optional.
const SCENARIO: &str = r#"
name: brownout
seed: 13
duration_s: 25
warmup_s: 0
report_interval_s: 1
hosts:
  - { name: h1, cores: 2 }
services:
  - name: api
    service_time: { dist: constant, mean_ms: 2 }
    concurrency: 4
    replicas: { h1: 1 }
    calls: [{ service: recs }]
  - name: recs
    service_time: { dist: constant, mean_ms: 2 }
    concurrency: 4
    replicas: { h1: 1 }
    optional: true
flows:
  - name: web
    entry: api
    arrival: { process: poisson, rate: 10 }
    sla: { latency_ms: 5000, percentile: 95 }
"#;

fn brownout(service: &str, from: u32, to: u32) -> serde_json::Value {
    json!({"service": service, "from": from, "to": to, "brownout": true, "reason": "test"})
}

/// Sends requests through the gateway (at most 10 s) until one comes back with (`true`) or
/// without the degraded header; every one must succeed.
async fn until_degraded(lab: &Lab, degraded: bool) {
    let c = h1_client();
    for _ in 0..200 {
        let got = send(&c, lab.gateway(), "api", &[], b"").await;
        assert_eq!(got.status, 200, "{:?}", got.headers);
        if (got.header("x-loadshift-degraded") == Some("recs")) == degraded {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("requests never came back degraded = {degraded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_service_is_browned_out_and_brought_back() {
    let dir = temp_dir("lab-brownout");
    let lab = Lab::start(
        &dir,
        SCENARIO,
        "round-robin",
        // The HPA's first round would come after the run: only this test's decisions act.
        &["--scaler", "hpa", "--scale-interval-s", "600"],
    );
    let url = lab.receiver().await;
    until_degraded(&lab, false).await;

    let (status, done) = decide(&url, &brownout("api", 1, 0)).await;
    assert_eq!(status, 422, "{done}");
    let error = done["error"].as_str().expect("error");
    assert!(
        error.contains("\"api\"") && error.contains("not optional"),
        "{error}"
    );

    let (status, done) = decide(&url, &brownout("recs", 1, 0)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (&done["containers"], &done["brownout"]),
        (&json!(0), &json!(true))
    );
    assert_eq!(lab.yaml("endpoints.yaml")["recs"], json!([]));
    let recs: Vec<String> = processes_under(&dir)
        .into_iter()
        .filter(|p| p.contains("recs-h1"))
        .collect();
    assert_eq!(recs, Vec::<String>::new(), "its app and sidecar stopped");
    until_degraded(&lab, true).await;

    let (status, done) = decide(
        &url,
        &json!({"service": "recs", "from": 0, "to": 1, "reason": "test"}),
    )
    .await;
    assert_eq!(status, 409, "{done}");
    assert!(
        done["error"]
            .as_str()
            .is_some_and(|e| e.contains("\"recs\"")),
        "{done}"
    );

    let (status, done) = decide(&url, &brownout("recs", 0, 1)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (&done["containers"], &done["brownout"]),
        (&json!(1), &json!(false))
    );
    until_degraded(&lab, false).await;

    lab.finish();
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/summary.json")).expect("summary"),
    )
    .expect("json");
    let run = &summary["policies"]["round-robin+hpa"];
    assert_eq!(
        run["sla_violation_pct"], 0.0,
        "no request failed: {summary}"
    );
    let csv = std::fs::read_to_string(dir.join("out/timeseries.csv")).expect("csv");
    assert!(
        csv.contains(",containers,recs,,0"),
        "the brownout is in the report"
    );
    assert_eq!(processes_under(&dir), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}
