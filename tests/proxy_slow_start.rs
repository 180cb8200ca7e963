//! Slow start and latency-outlier ejection on a real proxy with real upstreams on 127.0.0.1:0:
//! one of three upstreams made slow is ejected within an interval and readmitted (ramped) after
//! it recovers; with two slow of five, never more than the cap is ejected at once; an endpoint
//! added by discovery takes a small share at first and its full share after the window; bad
//! settings exit 64 naming the field.
// Test set-up: a failed step should fail the test on the spot.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use loadshift_core::{
    endpoint::Endpoint,
    plan::{Algorithm, Plan, ServicePlan},
};

/// Round robin, so every endpoint not ejected gets its turn and shares are exact.
fn round_robin(proxy: &loadshift_proxy::Running) {
    let sp = ServicePlan {
        algorithm: Algorithm::RoundRobin,
        ..Default::default()
    };
    proxy
        .shared
        .apply_plan(Plan {
            version: 1,
            services: BTreeMap::from([("web".to_string(), sp)]),
        })
        .unwrap();
}

/// `clients` loops sending requests until the returned flag is set.
fn load(proxy: SocketAddr, clients: usize) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..clients {
        let (c, stop) = (h1_client(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(send(&c, proxy, "web", &[], b"").await.status, 200);
            }
        });
    }
    stop
}

/// Per upstream container name: (ejected, warmth) from `/stats`.
async fn states(admin: SocketAddr) -> BTreeMap<String, (bool, f64)> {
    let stats = admin_json(admin, "/stats").await;
    stats["services"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["container"].as_str().unwrap().to_string(),
                (
                    e["ejected"].as_bool().unwrap(),
                    e["warmth"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

/// Polls `/stats` every 20 ms until `f` holds; panics after `limit`.
async fn wait_for(
    admin: SocketAddr,
    limit: Duration,
    what: &str,
    f: impl Fn(&BTreeMap<String, (bool, f64)>) -> bool,
) -> BTreeMap<String, (bool, f64)> {
    let start = Instant::now();
    loop {
        let s = states(admin).await;
        if f(&s) {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of counter `name` for one endpoint (the tests of this file share the process's
/// recorder, so the endpoint's own series).
async fn counter(admin: SocketAddr, name: &str, endpoint: SocketAddr) -> f64 {
    let label = format!("endpoint=\"{endpoint}\"");
    get_text(admin, "/metrics")
        .await
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn get_text(admin: SocketAddr, path: &str) -> String {
    use http_body_util::BodyExt;
    let resp = h1_client()
        .get(format!("http://{admin}{path}").parse().unwrap())
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_is_ejected_within_an_interval_and_readmitted_after_it_recovers() {
    let ups = [
        Upstream::start("fast-a").await,
        Upstream::start("slow").await,
        Upstream::start("fast-b").await,
    ];
    // Loopback answers in well under 3 ms; 30 ms is more than ten times that.
    ups[1].set(Behaviour::Delay(Duration::from_millis(30)));
    let extra = "ejection: { base_ms: 1000, latency: { enabled: true, interval_ms: 500, min_samples: 10 } }\nslow_start: { window_ms: 2000 }\n";
    let proxy = start_proxy(&standalone_yaml(&[&ups[0], &ups[1], &ups[2]], extra));
    round_robin(&proxy);
    let stop = load(proxy.outbound, 4);

    // Ejected at the first round with enough calls: within an interval, plus one for slack.
    let s = wait_for(proxy.admin, Duration::from_millis(1500), "ejection", |s| {
        s["slow"].0
    })
    .await;
    assert!(!s["fast-a"].0 && !s["fast-b"].0, "{s:?}");
    let ejections = || {
        counter(
            proxy.admin,
            "loadshift_proxy_latency_ejections_total",
            ups[1].addr,
        )
    };
    assert_eq!(ejections().await, 1.0);

    // It recovers while ejected; when the 1 s ejection ends it is back, ramping up.
    ups[1].set(Behaviour::Ok);
    let s = wait_for(
        proxy.admin,
        Duration::from_millis(1500),
        "readmission",
        |s| !s["slow"].0,
    )
    .await;
    assert!(s["slow"].1 < 0.5, "slow start after the ejection: {s:?}");
    assert_eq!((s["fast-a"].1, s["fast-b"].1), (1.0, 1.0));
    let before = ups[1].count();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stop.store(true, Ordering::Relaxed);
    assert!(
        ups[1].count() > before + 20,
        "readmitted endpoint gets traffic again: {} -> {}",
        before,
        ups[1].count()
    );
    // Judged fast twice since: not ejected again.
    let s = states(proxy.admin).await;
    assert!(!s["slow"].0, "{s:?}");
    assert_eq!(ejections().await, 1.0);
    // Failure ejection saw nothing to eject.
    assert_eq!(
        counter(proxy.admin, "loadshift_proxy_ejections_total", ups[1].addr).await,
        0.0
    );
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_slow_of_five_never_eject_more_than_the_cap() {
    let ups = [
        Upstream::start("f0").await,
        Upstream::start("s1").await,
        Upstream::start("f2").await,
        Upstream::start("s3").await,
        Upstream::start("f4").await,
    ];
    for u in [&ups[1], &ups[3]] {
        u.set(Behaviour::Delay(Duration::from_millis(30)));
    }
    // max(1, floor(5 x 0.3)) = 1 endpoint out at a time.
    let extra = "ejection: { base_ms: 400, latency: { enabled: true, interval_ms: 300, min_samples: 10, max_ejected_fraction: 0.3 } }\n";
    let refs: Vec<&Upstream> = ups.iter().collect();
    let proxy = start_proxy(&standalone_yaml(&refs, extra));
    round_robin(&proxy);
    let stop = load(proxy.outbound, 6);
    let start = Instant::now();
    let mut seen = [false; 5];
    while start.elapsed() < Duration::from_millis(3000) {
        let s = states(proxy.admin).await;
        let out: Vec<&String> = s.iter().filter(|(_, v)| v.0).map(|(k, _)| k).collect();
        assert!(out.len() <= 1, "more than the cap ejected: {out:?}");
        for (i, u) in ups.iter().enumerate() {
            seen[i] |= s[&u.name].0;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    assert!(seen[1] || seen[3], "a slow endpoint was ejected: {seen:?}");
    assert!(!seen[0] && !seen[2] && !seen[4], "fast ones stay: {seen:?}");
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_added_by_discovery_ramps_up_over_the_window() {
    let ups = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("new").await,
    ];
    let window = Duration::from_millis(2000);
    let proxy = start_proxy(&standalone_yaml(
        &[&ups[0], &ups[1]],
        "slow_start: { window_ms: 2000 }\n",
    ));
    round_robin(&proxy);
    let c = h1_client();
    let send_n = |n: usize| {
        let c = c.clone();
        async move {
            for _ in 0..n {
                assert_eq!(send(&c, proxy.outbound, "web", &[], b"").await.status, 200);
            }
        }
    };
    send_n(30).await;
    // Endpoints present from the start are never ramped.
    let s = states(proxy.admin).await;
    assert_eq!((s["a"].1, s["b"].1), (1.0, 1.0), "{s:?}");

    // Discovery (the control plane's endpoint update) adds a third endpoint.
    let eps: Vec<Endpoint> = ups
        .iter()
        .enumerate()
        .map(|(i, u)| {
            Endpoint::new(
                u.addr,
                format!("h{i}"),
                format!("z{}", i % 2),
                u.name.clone(),
            )
        })
        .collect();
    proxy.shared.set_endpoints("web", eps).unwrap();
    let joined = Instant::now();
    let s = states(proxy.admin).await;
    assert!(s["new"].1 < 0.3, "{s:?}");
    let counts = |ups: &[Upstream; 3]| ups.iter().map(Upstream::count).collect::<Vec<_>>();
    let share = |a: &[u64], b: &[u64]| {
        let total: u64 = b.iter().zip(a).map(|(b, a)| b - a).sum();
        (b[2] - a[2]) as f64 / total as f64
    };
    // The first 300 ms: factor 0.1 to 0.15, and round robin keeps its turn that often, so about
    // 1/3 x 0.12 of the calls (4 %), against a third without slow start.
    let c0 = counts(&ups);
    while joined.elapsed() < Duration::from_millis(300) {
        send_n(10).await;
    }
    let early = share(&c0, &counts(&ups));
    assert!(early < 0.12, "share in the first 300 ms: {early:.3}");
    // It serves from the start, at no less than the floor.
    while joined.elapsed() < window / 2 {
        send_n(10).await;
    }
    assert!(
        ups[2].count() > 0,
        "the new endpoint got no call while ramping"
    );

    if let Some(rest) = window.checked_sub(joined.elapsed()) {
        tokio::time::sleep(rest + Duration::from_millis(100)).await;
    }
    let s = states(proxy.admin).await;
    assert_eq!(s["new"].1, 1.0, "{s:?}");
    let c2 = counts(&ups);
    send_n(300).await;
    let late = share(&c2, &counts(&ups));
    assert!(
        (late - 1.0 / 3.0).abs() < 0.02,
        "share after the window: {late:.3}"
    );
    proxy.shutdown();
}

#[test]
fn bad_settings_exit_64_naming_field_value_and_reason() {
    let dir = temp_dir("slow-start-cfg");
    let base = "outbound: { listen: 127.0.0.1:0 }\nadmin: { listen: 127.0.0.1:0 }\nservices: []\n";
    for (i, (extra, want)) in [
        (
            "slow_start: { window_ms: 30000, min_weight: 1.5 }",
            "slow_start.min_weight = 1.5: must be in (0, 1]",
        ),
        (
            "ejection: { latency: { enabled: true, k: 1 } }",
            "ejection.latency.k = 1: must be finite and > 1",
        ),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.join(format!("c{i}.yaml"));
        std::fs::write(&path, format!("{base}{extra}\n")).unwrap();
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
