//! End to end with the real `loadshift proxy` binary: a control-plane plan routes real traffic to
//! real upstreams (endpoints come from the control plane's discovery, the proxy config names the
//! service only); an operator pin moves the traffic; with the control plane stopped the proxy
//! keeps serving on the last plan; when the control plane returns the proxy resyncs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_support;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use control_support::*;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use loadshift_proto::v1 as pb;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn get(c: &HttpClient, url: String, host: Option<&str>) -> (u16, Bytes) {
    let mut b = hyper::Request::builder().uri(url);
    if let Some(h) = host {
        b = b.header("host", h);
    }
    let resp = c
        .request(b.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// Sends `n` requests for service `web`; returns how many got 200.
async fn blast(c: &HttpClient, proxy: SocketAddr, n: usize) -> usize {
    let mut ok = 0;
    for chunk in 0..n.div_ceil(16) {
        let batch: Vec<_> = (0..16.min(n - chunk * 16))
            .map(|_| {
                let c = c.clone();
                tokio::spawn(
                    async move { get(&c, format!("http://{proxy}/"), Some("web")).await.0 },
                )
            })
            .collect();
        for h in batch {
            ok += usize::from(h.await.unwrap() == 200);
        }
    }
    ok
}

async fn proxy_plan(c: &HttpClient, admin: SocketAddr) -> serde_json::Value {
    let (_, body) = get(c, format!("http://{admin}/plan"), None).await;
    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
}

/// Polls the proxy's `/plan` until `f` holds (10 s at most).
async fn wait_plan(
    c: &HttpClient,
    admin: SocketAddr,
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let p = proxy_plan(c, admin).await;
        if f(&p) {
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; /plan = {p}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn counts(ups: &[Upstream]) -> Vec<u64> {
    ups.iter().map(Upstream::count).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_plans_route_real_traffic_through_the_real_proxy() {
    let ups = vec![
        Upstream::start("up-0").await,
        Upstream::start("up-1").await,
        Upstream::start("up-2").await,
    ];
    let eps: Vec<(SocketAddr, &str, f64)> = ups
        .iter()
        .zip(["up-0", "up-1", "up-2"])
        .map(|(u, n)| (u.addr, n, 1.0))
        .collect();
    let token = token_file(TOKEN);
    let control = Control::start(config(
        addr(0),
        &token,
        vec![("web", service("even", &eps))],
    ))
    .await;
    let listen = control.addrs.proxy;

    let dir = std::env::temp_dir().join(format!("loadshift-control-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nidentity: {{ pod: e2e-proxy }}\n\
         services:\n  - name: web\n\
         control: {{ url: \"http://{listen}\", token_file: \"{}\", report_interval_ms: 200, backoff_min_ms: 50, backoff_max_ms: 300 }}\n",
        token.display()
    );
    let cfg = dir.join("proxy.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let addr_file = dir.join("addrs.json");
    let _child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadshift"))
        .args(["proxy", "--config"])
        .arg(&cfg)
        .arg("--addr-file")
        .arg(&addr_file)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut addrs = None;
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&addr_file)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        {
            addrs = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addrs = addrs.expect("proxy wrote its addresses");
    let outbound: SocketAddr = addrs["outbound"].as_str().unwrap().parse().unwrap();
    let admin: SocketAddr = addrs["admin"].as_str().unwrap().parse().unwrap();
    let c: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    // The even plan arrives with the endpoints and spreads real traffic over all three.
    wait_plan(&c, admin, "even plan", |p| {
        p["services"]["web"]["endpoint_weights"]
            .as_object()
            .is_some_and(|w| w.len() == 3)
    })
    .await;
    let n = 900;
    assert_eq!(blast(&c, outbound, n).await, n);
    for (i, got) in counts(&ups).into_iter().enumerate() {
        let share = got as f64 / n as f64;
        // Binomial sd at n = 900, p = 1/3 is 0.016; 4 sd.
        assert!((share - 1.0 / 3.0).abs() < 0.064, "up-{i} got {share:.3}");
    }

    // The operator pins everything onto up-2; the proxy's plan changes and the traffic follows.
    let mut op = control.operator(TOKEN).await;
    let pinned = pb::ServicePlan {
        endpoint_weights: [(ups[2].addr.to_string(), 1.0)].into(),
        ..Default::default()
    };
    let revision = op
        .pin_plan(pb::PinPlanRequest {
            service: "web".into(),
            plan: Some(pinned),
        })
        .await
        .unwrap()
        .into_inner()
        .plan_revision;
    let key = ups[2].addr.to_string();
    let plan = wait_plan(&c, admin, "pinned plan", |p| {
        p["services"]["web"]["endpoint_weights"]
            .as_object()
            .is_some_and(|w| w.len() == 1 && w.contains_key(&key))
    })
    .await;
    // One number names this plan everywhere: the operator API (and `ctl`), the proxy's `/plan`
    // and its metrics.
    assert_eq!(plan["services"]["web"]["revision"], revision, "{plan}");
    let state = op
        .get_state(pb::GetStateRequest {
            service: "web".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.services[0].plan_revision, revision);
    let (_, metrics) = get(&c, format!("http://{admin}/metrics"), None).await;
    let metrics = String::from_utf8_lossy(&metrics);
    let line = format!("loadshift_proxy_plan_revision{{service=\"web\"}} {revision}");
    assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    let before = counts(&ups);
    assert_eq!(blast(&c, outbound, 300).await, 300);
    let after = counts(&ups);
    assert_eq!(
        (
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2]
        ),
        (0, 0, 300)
    );

    // Control plane gone: the proxy keeps serving on the pinned plan.
    control.stop().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = counts(&ups);
    assert_eq!(
        blast(&c, outbound, 200).await,
        200,
        "the proxy keeps serving without its control plane"
    );
    let after = counts(&ups);
    assert_eq!(after[2] - before[2], 200, "last good plan stays in force");

    // Control plane back (no pin this time): the proxy reconnects, resyncs and spreads again.
    let restarted =
        Control::start(config(listen, &token, vec![("web", service("even", &eps))])).await;
    wait_plan(&c, admin, "resynced even plan", |p| {
        p["services"]["web"]["endpoint_weights"]
            .as_object()
            .is_some_and(|w| w.len() == 3)
    })
    .await;
    let before = counts(&ups);
    assert_eq!(blast(&c, outbound, 300).await, 300);
    let after = counts(&ups);
    assert!(
        (0..3).all(|i| after[i] - before[i] > 50),
        "traffic spread again: {before:?} -> {after:?}"
    );
    restarted.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
