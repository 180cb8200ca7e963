//! `loadshift lab` carries out a CPU limit as the emulated app's concurrency: the scenario's
//! `concurrency` is one core's, a decision's `cpu_millicores` scales it on the running
//! containers (no restart) and on replicas started later; the memory limit is reported as not
//! applied, and a memory-only decision is refused naming the service.

mod common;

use common::{Lab, admin_json, decide, processes_under, temp_dir};

use serde_json::json;

const SCENARIO: &str = r#"
name: limits
seed: 11
duration_s: 25
warmup_s: 0
report_interval_s: 1
hosts:
  - { name: h1, cores: 2 }
services:
  - name: api
    service_time: { dist: constant, mean_ms: 2 }
    concurrency: 2
    replicas: { h1: 1 }
flows:
  - name: web
    entry: api
    arrival: { process: poisson, rate: 10 }
    sla: { latency_ms: 5000, percentile: 95 }
"#;

/// The service slots of `container`'s app, from its stats.
async fn concurrency(lab: &Lab, container: &str) -> serde_json::Value {
    admin_json(lab.app(container), "/_loadshift/stats").await["concurrency"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_limit_sets_the_concurrency_of_running_and_new_containers() {
    let dir = temp_dir("lab-limits");
    let lab = Lab::start(
        &dir,
        SCENARIO,
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
    assert_eq!(concurrency(&lab, "api-h1").await, 2);

    let limits = |from: u32, to: u32, limits: serde_json::Value| json!({"service": "api", "from": from, "to": to, "limits": limits, "reason": "test"});
    // 1.5 cores of a service whose scenario concurrency (one core's) is 2.
    let (status, done) = decide(
        &url,
        &limits(1, 1, json!({"cpu_millicores": 1500, "memory_mib": 256})),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["containers"], 1);
    assert_eq!(done["concurrency"], 3);
    assert_eq!(done["cpu_millicores"], 1500);
    assert!(
        done["not_applied"]["memory_mib"]
            .as_str()
            .is_some_and(|m| m.contains("not applied")),
        "{done}"
    );
    assert_eq!(concurrency(&lab, "api-h1").await, 3, "resized in place");
    assert!(
        lab.log("app-api-h1").contains("service slots resized"),
        "{}",
        lab.log("app-api-h1")
    );

    let (status, done) = decide(&url, &limits(1, 1, json!({"memory_mib": 512}))).await;
    assert_eq!(status, 422, "{done}");
    let error = done["error"].as_str().expect("error");
    assert!(
        error.contains("\"api\"") && error.contains("memory"),
        "{error}"
    );

    let (status, done) = decide(
        &url,
        &json!({"service": "api", "from": 1, "to": 2, "reason": "test"}),
    )
    .await;
    assert_eq!((status, &done["containers"]), (200, &json!(2)), "{done}");
    assert_eq!(
        concurrency(&lab, "api-h1-r1").await,
        3,
        "a replica starts with it"
    );

    let (status, done) = decide(&url, &limits(2, 2, json!({"cpu_millicores": 500}))).await;
    assert_eq!((status, &done["concurrency"]), (200, &json!(1)), "{done}");
    assert!(done.get("not_applied").is_none(), "{done}");
    for c in ["api-h1", "api-h1-r1"] {
        assert_eq!(concurrency(&lab, c).await, 1, "{c}");
    }

    lab.finish();
    assert_eq!(processes_under(&dir), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}
