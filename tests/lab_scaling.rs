//! `loadshift lab --scaler hpa` under a load step: the real control plane's HPA decides, its
//! webhook actuator calls the lab, the lab starts app + sidecar replicas and publishes them
//! through the control plane's file discovery; when the load falls back (with a short scale-down
//! window) replicas leave discovery, drain and stop. The report counts the containers it really
//! ran, and no process is left behind.

mod common;

use common::{processes_under, temp_dir};
use std::process::Command;

/// One leaf service of capacity 50 req/s per container (20 ms, one request at a time): 5 req/s,
/// then 90 req/s from 2 s (one container saturates; three carry it at 0.6), then 2 req/s from 8 s.
/// Inbound windows are 10 s long, so the saturated seconds leave the HPA's view about 10 s after
/// the backlog clears; the run is long enough for the scale-down after that (it came at about
/// 20 s on a quiet machine; the 12 s after it leave room for a busy one).
const SCENARIO: &str = r#"
name: step
seed: 5
duration_s: 32
warmup_s: 0
report_interval_s: 1
hosts:
  - { name: h1, cores: 2 }
services:
  - name: api
    service_time: { dist: constant, mean_ms: 20 }
    concurrency: 1
    replicas: { h1: 1 }
flows:
  - name: web
    entry: api
    arrival: { process: step, steps: [[0, 5], [2, 90], [8, 2]] }
    sla: { latency_ms: 1000, percentile: 95 }
policy:
  planner: p2c-ewma
"#;

#[test]
fn hpa_scales_a_service_up_under_a_step_and_back_down() {
    let dir = temp_dir("lab-scaling");
    std::fs::write(dir.join("step.yaml"), SCENARIO).expect("scenario");
    let out = dir.join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_loadshift"))
        .arg("lab")
        .arg(dir.join("step.yaml"))
        .arg("--out")
        .arg(&out)
        .args(["--planner", "p2c-ewma", "--scaler", "hpa"])
        .args(["--scale-interval-s", "2", "--max-replicas", "3"])
        .args(["--scale-down-window-s", "3"])
        .output()
        .expect("run lab");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let log = |name: &str| {
        std::fs::read_to_string(out.join("run/p2c-ewma").join(name)).unwrap_or_default()
    };

    // The containers over time, from the report's time series.
    let csv = std::fs::read_to_string(out.join("timeseries.csv")).expect("csv");
    let counts: Vec<u32> = csv
        .lines()
        .filter(|l| l.starts_with("p2c-ewma+hpa,") && l.contains(",containers,api,"))
        .map(|l| {
            l.rsplit(',')
                .next()
                .and_then(|v| v.parse().ok())
                .expect("count")
        })
        .collect();
    let peak = counts.iter().copied().max().unwrap_or(0);
    assert!(
        (2..=3).contains(&peak),
        "scaled up within --max-replicas: {counts:?}\ncontrol log:\n{}",
        log("control.log")
    );
    assert_eq!(counts.first(), Some(&1), "{counts:?}");
    let last = counts.last().copied().unwrap_or(0);
    assert!(
        last >= 1 && last < peak,
        "scaled back down after the load fell: {counts:?}\ncontrol log:\n{}",
        log("control.log")
    );

    // The real control plane decided and sent the decisions; a replica joined and served.
    assert!(
        log("control.log").contains("scale decision sent"),
        "{}",
        log("control.log")
    );
    let replica = log("sidecar-api-h1-r1.log");
    assert!(replica.contains("plan applied"), "{replica}");

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
            .expect("json");
    let p = &summary["policies"]["p2c-ewma+hpa"];
    let container_s = p["container_seconds"].as_f64().expect("container_seconds");
    // One container for the whole 32 s would be 32; replicas add real lifetimes, bounded by 3.
    assert!(
        container_s > 34.0 && container_s < 3.0 * 32.0 + 1.0,
        "{summary}"
    );
    assert!(p["requests"].as_u64().expect("requests") > 500, "{summary}");

    assert_eq!(processes_under(&dir), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}
