//! `loadshift lab` on a tiny scenario: starts the control plane, two containers per service (app +
//! sidecar), the gateway and the generator; writes the report; and leaves no process behind,
//! whether the run ends normally or is stopped with SIGTERM half-way.

mod common;

use common::{processes_under, temp_dir};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCENARIO: &str = r#"
name: tiny
seed: 3
duration_s: 3
warmup_s: 1
report_interval_s: 1
hosts:
  - { name: h1, cores: 2 }
  - name: h2
    cores: 2
    interference: { cpu: { steps: [[0, 0.0], [1, 0.8]] } }
services:
  - name: front
    service_time: { dist: constant, mean_ms: 2 }
    concurrency: 4
    replicas: { h1: 1, h2: 1 }
    calls: [ { service: back, probability: 0.5 } ]
  - name: back
    service_time: { dist: exponential, mean_ms: 3 }
    concurrency: 4
    replicas: { h1: 1, h2: 1 }
flows:
  - name: web
    entry: front
    arrival: { process: poisson, rate: 40 }
    sla: { latency_ms: 200, percentile: 95 }
policy:
  planner: even
"#;

/// A fresh directory holding the tiny scenario.
fn scenario_dir(tag: &str) -> PathBuf {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("tiny.yaml"), SCENARIO).expect("scenario");
    dir
}

#[test]
fn a_run_writes_the_report_and_leaves_no_process() {
    let dir = scenario_dir("lab-run");
    let out = dir.join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_loadshift"))
        .arg("lab")
        .arg(dir.join("tiny.yaml"))
        .arg("--out")
        .arg(&out)
        .args(["--compare", "even,round-robin"])
        .output()
        .expect("run lab");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("lab scale: 4 of 4 containers"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
            .expect("json");
    assert!(
        summary["policies"]["round-robin"]["requests"]
            .as_u64()
            .is_some(),
        "{summary}"
    );
    let even = &summary["policies"]["even"];
    // 40 req/s for the 2 s after warm-up.
    let requests = even["requests"].as_u64().expect("requests");
    assert!((50..=110).contains(&requests), "{summary}");
    assert!(
        even["p50_ms"].as_f64().expect("p50") >= 2.0,
        "at least the front's 2 ms: {summary}"
    );
    assert!(out.join("report.html").is_file());
    let csv = std::fs::read_to_string(out.join("timeseries.csv")).expect("csv");
    assert!(
        csv.contains("host_share,,h2"),
        "calls were counted per host"
    );
    // The sidecars were started and connected to the control plane.
    let sidecar =
        std::fs::read_to_string(out.join("run/even/sidecar-front-h1.log")).expect("sidecar log");
    assert!(sidecar.contains("plan applied"), "{sidecar}");
    assert_eq!(processes_under(&dir), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_mid_run_stops_every_process() {
    let dir = scenario_dir("lab-term");
    let out = dir.join("out");
    let mut lab = Command::new(env!("CARGO_BIN_EXE_loadshift"))
        .arg("lab")
        .arg(dir.join("tiny.yaml"))
        .arg("--out")
        .arg(&out)
        .args(["--duration-s", "60", "--planner", "even"])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lab");
    // The gateway config is written last, just before the load starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.join("run/even/gateway.yaml").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        processes_under(&dir).len() >= 10,
        "control, 4 apps, 4 sidecars, gateway are running"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &lab.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = lab.wait().expect("wait");
    assert!(!status.success(), "an interrupted run reports failure");
    assert_eq!(processes_under(&dir), Vec::<String>::new());
    assert!(!out.join("summary.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
