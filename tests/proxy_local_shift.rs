//! In-path local mode: with no control plane, a lone proxy runs Imbres Alg. 1 on its own per-host
//! RTTs and moves host weight away from the slow host.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_proxy_shifts_weight_off_the_slow_host() {
    let fast = Upstream::start("fast").await;
    let slow = Upstream::start("slow").await;
    slow.set(Behaviour::Delay(Duration::from_millis(15)));
    let extra = "local_shift: { interval_ms: 300, min_samples: 5 }\ntelemetry: { slots: 2, slot_ms: 500 }\n";
    let proxy = start_proxy(&standalone_yaml(&[&fast, &slow], extra));
    let c = h1_client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let c = c.clone();
        let addr = proxy.outbound;
        workers.push(tokio::spawn(async move {
            while tokio::time::Instant::now() < deadline {
                assert_eq!(send(&c, addr, "web", &[], b"").await.status, 200);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let plan = admin_json(proxy.admin, "/plan").await;
    let w = &plan["services"]["web"]["host_weights"];
    let (h_fast, h_slow) = (w["h0"].as_f64().unwrap(), w["h1"].as_f64().unwrap());
    assert!((h_fast + h_slow - 1.0).abs() < 1e-9, "{w}");
    assert!(h_fast > 0.7 && h_slow >= 0.05 - 1e-9, "weights {w}");
    assert!(
        plan["version"].as_u64().unwrap() >= 3,
        "several steps were taken: {plan}"
    );
    proxy.shutdown();
}
