//! Failure handling with real processes and servers: a failing endpoint is ejected and recovers;
//! connection failures are retried on another endpoint; an invalid config exits 64 naming the
//! field; SIGTERM drains in-flight requests; a request the upstream answers too late gets 504 at
//! its timeout.

mod common;

use std::{process::Stdio, time::Duration};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_is_ejected_then_recovers() {
    let (good, bad) = (Upstream::start("good").await, Upstream::start("bad").await);
    bad.set(Behaviour::Fail);
    let extra = "ejection: { consecutive_failures: 3, base_ms: 500, max_ms: 5000 }\n";
    let proxy = start_proxy(&standalone_yaml(&[&good, &bad], extra));
    // Equal weights, no P2C: without ejection the bad endpoint would get half the requests.
    let weights = [(good.addr.to_string(), 1.0), (bad.addr.to_string(), 1.0)].into();
    let sp = loadshift_core::plan::ServicePlan {
        endpoint_weights: weights,
        ..Default::default()
    };
    proxy
        .shared
        .apply_plan(loadshift_core::plan::Plan {
            version: 1,
            services: [("web".into(), sp)].into(),
        })
        .unwrap();
    let c = h1_client();
    let mut ok = 0;
    for _ in 0..200 {
        ok += usize::from(send(&c, proxy.outbound, "web", &[], b"").await.status == 200);
    }
    // Three failures in a row eject it for 500 ms: it sees a handful of the 200 requests.
    assert!(
        bad.count() >= 3 && bad.count() <= 12,
        "bad endpoint got {}",
        bad.count()
    );
    assert_eq!(ok as u64, 200 - bad.count());
    let stats = admin_json(proxy.admin, "/stats").await;
    let eps = stats["services"][0]["endpoints"].as_array().unwrap();
    let bad_stats = eps.iter().find(|e| e["container"] == "bad").unwrap();
    assert_eq!(bad_stats["ejected"], true);

    bad.set(Behaviour::Ok);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = bad.count();
    for _ in 0..400 {
        assert_eq!(send(&c, proxy.outbound, "web", &[], b"").await.status, 200);
    }
    assert!(
        bad.count() > before,
        "recovered endpoint gets traffic again"
    );
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_answers_time_out_with_504_and_fast_ones_still_pass() {
    let up = Upstream::start("slow").await;
    let proxy = start_proxy(&standalone_yaml(&[&up], "timeouts: { request_ms: 300 }\n"));
    let c = h1_client();
    up.set(Behaviour::Delay(Duration::from_secs(3)));
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let r = send(&c, proxy.outbound, "web", &[], b"").await;
        let took = t.elapsed();
        assert_eq!(r.status, 504);
        assert_eq!(r.header("loadshift-error"), Some("timeout"));
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
            "timed out after {took:?}"
        );
    }
    // Answers inside the limit pass, before and after an earlier deadline fired.
    up.set(Behaviour::Delay(Duration::from_millis(100)));
    for _ in 0..5 {
        assert_eq!(send(&c, proxy.outbound, "web", &[], b"").await.status, 200);
    }
    up.set(Behaviour::Ok);
    for _ in 0..50 {
        assert_eq!(send(&c, proxy.outbound, "web", &[], b"").await.status, 200);
    }
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_elsewhere() {
    let good = Upstream::start("good").await;
    // A port nobody listens on: bind, read the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nservices:\n  - name: web\n    endpoints: [{{ addr: \"{dead}\" }}, {{ addr: \"{}\" }}]\n",
        good.addr
    );
    let proxy = start_proxy(&yaml);
    let c = h1_client();
    for _ in 0..100 {
        assert_eq!(send(&c, proxy.outbound, "web", &[], b"").await.status, 200);
    }
    assert_eq!(good.count(), 100);
    proxy.shutdown();
}

#[test]
fn invalid_config_exits_64_naming_field_and_value() {
    let dir = std::env::temp_dir().join(format!("loadshift-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "outbound: { listen: 127.0.0.1:0 }\nworkers: 0\nservices: []\n",
            "workers = 0",
        ),
        (
            "outbound: { listen: 127.0.0.1:0 }\nservices:\n  - name: web\n    endpoints: [{ addr: \"127.0.0.1:0\" }]\n",
            "services[0].endpoints[0].addr = 127.0.0.1:0",
        ),
        (
            "outbound: { listen: nonsense }\nservices: []\n",
            "outbound.listen",
        ),
        ("services: []\n", "missing field `outbound`"),
    ];
    for (i, (yaml, want)) in cases.iter().enumerate() {
        let path = dir.join(format!("c{i}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let out = std::process::Command::new(bin())
            .args(["proxy", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(err.contains(want), "{want:?} not in {err:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let up = Upstream::start("slow").await;
    up.set(Behaviour::Delay(Duration::from_millis(800)));
    let dir = std::env::temp_dir().join(format!("loadshift-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("proxy.yaml");
    std::fs::write(
        &cfg,
        standalone_yaml(&[&up], "timeouts: { drain_ms: 5000 }\n"),
    )
    .unwrap();
    let addr_file = dir.join("addrs.json");
    let mut child = tokio::process::Command::new(bin())
        .args(["proxy", "--config"])
        .arg(&cfg)
        .arg("--addr-file")
        .arg(&addr_file)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut addrs = None;
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(&addr_file) {
            addrs = Some(serde_json::from_str::<serde_json::Value>(&text).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outbound: std::net::SocketAddr = addrs.unwrap()["outbound"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let c = h1_client();
    let inflight: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { send(&c, outbound, "web", &[], b"").await.status })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    for h in inflight {
        assert_eq!(
            h.await.unwrap(),
            200,
            "in-flight request finished during drain"
        );
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        tokio::net::TcpStream::connect(outbound).await.is_err(),
        "listener closed after drain"
    );
    let _ = std::fs::remove_dir_all(dir);
}
