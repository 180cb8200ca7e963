//! `loadshift model collect --lab`: the objective planner's trace from real processes (apps,
//! sidecars, the control plane with the `random` planner, the gateway and the generator on
//! loopback). Every step carries one action read from a caller's sidecar and the load the
//! random levels offered.

mod common;

use common::temp_dir;
use std::process::Command;

const SCENARIO: &str = r#"
name: tiny-objective
seed: 3
duration_s: 30
warmup_s: 2
report_interval_s: 1
interference: { a_cpu: 0.5, cap: 0.75, self_load: true }
hosts:
  - { name: front, cores: 4 }
  - { name: n1, cores: 2 }
  - { name: n2, cores: 2 }
services:
  - name: gate
    service_time: { dist: constant, mean_ms: 1 }
    concurrency: 16
    replicas: { front: 1 }
    calls: [ { service: s } ]
  - name: s
    service_time: { dist: exponential, mean_ms: 10 }
    concurrency: 1
    replicas: { n1: 1, n2: 1 }
flows:
  - name: web
    entry: gate
    arrival: { process: poisson, rate: 10 }
    sla: { latency_ms: 200 }
policy:
  management: { kind: mo1, bounds_ms: { s: 100 } }
"#;

#[test]
fn a_lab_collection_writes_a_trace_of_real_steps() {
    let dir = temp_dir("lab-collect");
    let scenario = dir.join("tiny.yaml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let trace = dir.join("trace.json");
    let o = Command::new(env!("CARGO_BIN_EXE_loadshift"))
        .args(["model", "collect"])
        .arg(&scenario)
        .args(["--lab", "--steps", "5", "--out"])
        .arg(&trace)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("s on n1+n2"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let steps = v["steps"].as_array().unwrap();
    assert!(steps.len() >= 3, "{v}");
    for st in steps {
        let x = &st["services"][0];
        let shares: Vec<f64> = x["action"]["shares"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect();
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{st}");
        let (offered, carried) = (
            x["offered_rps"].as_f64().unwrap(),
            x["carried_rps"].as_f64().unwrap(),
        );
        // Random levels of 5-20 req/s, Poisson within a step; blocking only takes away.
        assert!(offered > 0.0 && offered < 40.0, "{st}");
        assert!(carried <= offered + 1e-9, "{st}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
