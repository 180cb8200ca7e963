//! Plans steer real traffic: weights are honoured within statistical tolerance, subsets limit the
//! endpoints the proxy connects to (checked at the upstreams), a hot swap under load loses no
//! request, and an invalid plan is refused with the last good one kept.

mod common;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use common::*;
use loadshift_core::plan::{Plan, ServicePlan, SubsetEntry};

fn plan(version: u64, sp: ServicePlan) -> Plan {
    Plan {
        version,
        services: BTreeMap::from([("web".to_string(), sp)]),
    }
}

async fn blast(c: &HttpClient, proxy: std::net::SocketAddr, n: usize) -> usize {
    let mut ok = 0;
    let mut batch = Vec::new();
    for _ in 0..n {
        let c = c.clone();
        batch.push(tokio::spawn(async move {
            send(&c, proxy, "web", &[], b"").await.status
        }));
        if batch.len() == 32 {
            for h in batch.drain(..) {
                ok += usize::from(h.await.expect("request task") == 200);
            }
        }
    }
    for h in batch {
        ok += usize::from(h.await.expect("request task") == 200);
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_and_host_weights_are_honoured() {
    let ups = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let proxy = start_proxy(&standalone_yaml(&[&ups[0], &ups[1], &ups[2]], ""));
    let sp = ServicePlan {
        host_weights: BTreeMap::from([("h0".into(), 0.6), ("h1".into(), 0.3), ("h2".into(), 0.1)]),
        ..Default::default()
    };
    proxy.shared.apply_plan(plan(1, sp)).unwrap();
    let n = 3000;
    assert_eq!(blast(&h1_client(), proxy.outbound, n).await, n);
    for (u, want) in ups.iter().zip([0.6, 0.3, 0.1]) {
        let got = u.count() as f64 / n as f64;
        // Binomial sd at n = 3000 is <= 0.009; 4 sd.
        assert!((got - want).abs() < 0.036, "{}: {got:.3} vs {want}", u.name);
    }
    let shown = admin_json(proxy.admin, "/plan").await;
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["services"]["web"]["host_weights"]["h0"], 0.6);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_subset_means_no_connection_outside_it() {
    let ups = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
        Upstream::start("d").await,
    ];
    let refs: Vec<&Upstream> = ups.iter().collect();
    let proxy = start_proxy(&standalone_yaml(&refs, ""));
    let sp = ServicePlan {
        subset: vec![
            SubsetEntry {
                endpoint: ups[1].addr.to_string(),
                share: 3.0,
            },
            SubsetEntry {
                endpoint: ups[3].addr.to_string(),
                share: 1.0,
            },
        ],
        ..Default::default()
    };
    proxy.shared.apply_plan(plan(1, sp)).unwrap();
    let n = 2000;
    assert_eq!(blast(&h1_client(), proxy.outbound, n).await, n);
    assert_eq!(
        ups[0]
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        ups[2]
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let share = ups[1].count() as f64 / n as f64;
    assert!((share - 0.75).abs() < 0.05, "{share}");
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendezvous_subset_of_k_connects_to_k_endpoints() {
    let ups: Vec<Upstream> = futures_util::future::join_all(
        (0..6).map(|i| async move { Upstream::start(&format!("u{i}")).await }),
    )
    .await;
    let refs: Vec<&Upstream> = ups.iter().collect();
    let proxy = start_proxy(&standalone_yaml(&refs, ""));
    proxy
        .shared
        .apply_plan(plan(
            1,
            ServicePlan {
                subset_size: Some(2),
                ..Default::default()
            },
        ))
        .unwrap();
    assert_eq!(blast(&h1_client(), proxy.outbound, 400).await, 400);
    let touched = ups
        .iter()
        .filter(|u| u.connections.load(std::sync::atomic::Ordering::Relaxed) > 0)
        .count();
    assert_eq!(touched, 2);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_loses_no_request() {
    let ups = [Upstream::start("a").await, Upstream::start("b").await];
    let proxy = Arc::new(start_proxy(&standalone_yaml(
        &[&ups[0], &ups[1]],
        "workers: 2\n",
    )));
    let swapper = {
        let proxy = proxy.clone();
        let (a, b) = (ups[0].addr.to_string(), ups[1].addr.to_string());
        tokio::spawn(async move {
            for v in 1..=100u64 {
                let (x, y) = if v % 2 == 0 { (1.0, 0.0) } else { (0.0, 1.0) };
                let sp = ServicePlan {
                    endpoint_weights: BTreeMap::from([(a.clone(), x), (b.clone(), y)]),
                    ..Default::default()
                };
                proxy.shared.apply_plan(plan(v, sp)).unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let n = 3000;
    let ok = blast(&h1_client(), proxy.outbound, n).await;
    swapper.await.unwrap();
    assert_eq!(ok, n, "every request succeeds across 100 plan swaps");
    assert!(ups[0].count() > 0 && ups[1].count() > 0);
    assert_eq!(proxy.shared.plan().version, 100);
    if let Ok(p) = Arc::try_unwrap(proxy) {
        p.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_plan_is_refused_and_last_good_stays() {
    let ups = [Upstream::start("a").await, Upstream::start("b").await];
    let dir = std::env::temp_dir().join(format!("loadshift-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan_path = dir.join("plan.yaml");
    std::fs::write(
        &plan_path,
        format!(
            "version: 3\nservices:\n  web:\n    endpoint_weights: {{ \"{}\": 1.0 }}\n",
            ups[0].addr
        ),
    )
    .unwrap();
    let proxy = start_proxy(&standalone_yaml(
        &[&ups[0], &ups[1]],
        &format!("plan_file: {}\n", plan_path.display()),
    ));
    // The watcher applies the file at start.
    for _ in 0..50 {
        if proxy.shared.plan().version == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(proxy.shared.plan().version, 3);

    let bad = plan(
        4,
        ServicePlan {
            endpoint_weights: BTreeMap::from([("10.9.9.9:1".into(), 1.0)]),
            ..Default::default()
        },
    );
    let err = proxy.shared.apply_plan(bad).unwrap_err().to_string();
    assert!(
        err.contains("10.9.9.9:1") && err.contains("endpoint_weights"),
        "{err}"
    );
    let bad = plan(
        5,
        ServicePlan {
            blocking: BTreeMap::from([(
                "*".into(),
                loadshift_core::plan::Blocking {
                    fraction: 2.0,
                    max_in_flight: None,
                },
            )]),
            ..Default::default()
        },
    );
    assert!(
        proxy
            .shared
            .apply_plan(bad)
            .unwrap_err()
            .to_string()
            .contains("fraction = 2")
    );
    // A broken file is refused too.
    std::fs::write(
        &plan_path,
        "version: 9\nservices: { web: { endpoint_weights: { oops: -1 } } }\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(proxy.shared.plan().version, 3);
    assert_eq!(admin_json(proxy.admin, "/plan").await["version"], 3);
    assert_eq!(blast(&h1_client(), proxy.outbound, 50).await, 50);
    assert_eq!(
        ups[1].count(),
        0,
        "the last good plan still routes everything to a"
    );
    proxy.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}
