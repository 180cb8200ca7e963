//! Proxies connect to a real control plane through the real control client, report, receive
//! endpoints and plans for the services they call only; an operator pin changes the plan within
//! one push and wins until unpinned; WatchPlans and GetState show it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_support;

use std::time::Duration;

use control_support::*;
use loadshift_core::{endpoint::Endpoint, telemetry::WindowSnapshot};
use loadshift_proto::v1 as pb;
use loadshift_proxy::control_client::{EndpointReport, ProxyReport};

fn weights(s: &Seen, svc: &str) -> Vec<(String, f64)> {
    s.current
        .as_ref()
        .and_then(|p| p.services.get(svc))
        .map(|sp| {
            sp.endpoint_weights
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_get_plans_for_what_they_call_and_pins_win_until_unpinned() {
    let token = token_file(TOKEN);
    let b_eps = [
        (addr(1), "b-1", 3.0),
        (addr(2), "b-2", 1.0),
        (addr(3), "b-3", 1.0),
    ];
    let mut cfg = config(
        addr(0),
        &token,
        vec![
            ("b", service("even", &b_eps)),
            ("c", service("even", &[(addr(4), "c-1", 1.0)])),
        ],
    );
    cfg.metrics_listen = Some(addr(0));
    cfg.windows_kept = 3;
    let control = Control::start(cfg).await;

    // a-1 calls b; b-1 is the inbound sidecar of container b-1 and calls nothing.
    let dp_a = RecordingPlane::new(None);
    let dp_b = RecordingPlane::new(None);
    let _a = spawn_proxy(
        &control.url(),
        &token,
        identity("a-1", Some("a"), &["b"]),
        dp_a.clone(),
    );
    let _b = spawn_proxy(
        &control.url(),
        &token,
        identity("b-1", Some("b"), &[]),
        dp_b.clone(),
    );

    let seen = dp_a
        .wait_for(10, "a-1 gets the even plan for b", |s| {
            weights(s, "b").len() == 3
        })
        .await;
    assert_eq!(
        seen.endpoints["b"].len(),
        3,
        "endpoints arrive with the plan"
    );
    assert!(weights(&seen, "b").iter().all(|(_, w)| *w == 1.0));
    let plan = seen.current.unwrap();
    assert_eq!(
        plan.services.keys().collect::<Vec<_>>(),
        vec!["b"],
        "only the services a-1 calls"
    );
    let seen_b = dp_b
        .wait_for(10, "b-1 gets its (empty) snapshot", |s| s.current.is_some())
        .await;
    assert!(seen_b.current.unwrap().services.is_empty());
    assert!(seen_b.endpoints.is_empty());

    // Reports reach the state the operator sees.
    let win = |p95: f64| WindowSnapshot {
        count: 50,
        p95_ms: p95,
        mean_ms: p95 / 2.0,
        window_s: 10.0,
        ..Default::default()
    };
    dp_b.set_report(ProxyReport {
        inbound: Some(win(42.0)),
        ..Default::default()
    });
    dp_a.set_report(ProxyReport {
        endpoints: vec![EndpointReport {
            service: "b".into(),
            endpoint: Endpoint::new(addr(1), "host-1", "z1", "b-1"),
            window: win(60.0),
            in_flight: 3,
            ewma_ms: 12.0,
        }],
        offered: vec![("b".into(), 200)],
        ..Default::default()
    });
    let mut op = control.operator(TOKEN).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let state = loop {
        let st = op
            .get_state(pb::GetStateRequest {
                service: "b".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let s = st.services[0].clone();
        let ep1 = s
            .endpoints
            .iter()
            .find(|e| e.endpoint.as_ref().unwrap().addr == "127.0.0.1:1")
            .unwrap()
            .clone();
        if ep1.inbound.is_some() && ep1.outbound.unwrap().count > 0 {
            break (st, s, ep1);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reports never reached GetState: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (st, svc, ep1) = state;
    assert_eq!(st.proxies, 2);
    assert_eq!(
        ep1.inbound.unwrap().p95_ms,
        42.0,
        "inbound comes from the container's own sidecar"
    );
    assert_eq!(ep1.outbound.unwrap().p95_ms, 60.0);
    assert_eq!(ep1.in_flight, 3);
    assert_eq!(svc.callers, vec!["a-1".to_string()]);
    assert!((svc.offered_rps - 20.0).abs() < 1e-9, "{}", svc.offered_rps);
    assert!((ep1.share - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(svc.planner, "even");
    // Planner rounds keep a bounded history of what they saw.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = op
            .get_state(pb::GetStateRequest {
                service: "b".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let h = &st.services[0].history;
        assert!(
            h.len() <= 3,
            "history is bounded by windows_kept: {}",
            h.len()
        );
        if h.last()
            .is_some_and(|s| s.calls == 50 && s.inbound_p95_ms == 42.0)
        {
            assert!((h.last().unwrap().offered_rps - 20.0).abs() < 1e-9);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no history sample with the reports: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Watch, then pin: exactly one new plan reaches the proxy and it is the pinned one.
    let mut watch = op
        .watch_plans(pb::WatchPlansRequest {
            services: vec!["b".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.source, "planner:even");
    let offered_before = dp_a.seen().offered.len();
    let pinned = pb::ServicePlan {
        endpoint_weights: [("127.0.0.1:2".to_string(), 1.0)].into(),
        ..Default::default()
    };
    op.pin_plan(pb::PinPlanRequest {
        service: "b".into(),
        plan: Some(pinned),
    })
    .await
    .unwrap();
    let seen = dp_a
        .wait_for(5, "the pin reaches a-1", |s| {
            weights(s, "b") == vec![("127.0.0.1:2".to_string(), 1.0)]
        })
        .await;
    assert_eq!(
        seen.offered.len(),
        offered_before + 1,
        "the pin arrives in one push"
    );
    let ev = watch.message().await.unwrap().unwrap();
    assert_eq!(ev.source, "pin");
    assert_eq!(ev.plan.unwrap().endpoint_weights.len(), 1);

    // The planner keeps running underneath; the pin holds over several planner intervals.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        weights(&dp_a.seen(), "b"),
        vec![("127.0.0.1:2".to_string(), 1.0)]
    );
    let list = op
        .list_services(pb::ListServicesRequest {})
        .await
        .unwrap()
        .into_inner();
    let b = list.services.iter().find(|s| s.name == "b").unwrap();
    assert!(b.pinned);
    assert_eq!((b.endpoints, b.callers), (3, 1));

    // A plan naming an unknown endpoint is refused at the API, before any proxy sees it.
    let bad = pb::ServicePlan {
        endpoint_weights: [("10.9.9.9:1".to_string(), 1.0)].into(),
        ..Default::default()
    };
    let err = op
        .pin_plan(pb::PinPlanRequest {
            service: "b".into(),
            plan: Some(bad),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("10.9.9.9:1"), "{}", err.message());

    op.unpin(pb::UnpinRequest {
        service: "b".into(),
    })
    .await
    .unwrap();
    dp_a.wait_for(5, "unpin restores the planner's plan", |s| {
        weights(s, "b").len() == 3
    })
    .await;
    assert_eq!(
        watch.message().await.unwrap().unwrap().source,
        "planner:even"
    );

    // Switching the planner takes effect at once.
    let r = op
        .set_objective(pb::SetObjectiveRequest {
            service: "b".into(),
            planner: "static".into(),
            objective: Some(pb::Objective {
                sla_ms: 50.0,
                percentile: 99.0,
                flow: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.service.unwrap().planner, "static");
    let seen = dp_a
        .wait_for(5, "static weights arrive", |s| {
            weights(s, "b").iter().any(|(_, w)| *w == 3.0)
        })
        .await;
    assert_eq!(weights(&seen, "b").len(), 3);
    let st = op
        .get_state(pb::GetStateRequest {
            service: "b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.services[0].objective.as_ref().unwrap().percentile, 99.0);
    assert!((st.services[0].endpoints[0].share - 0.6).abs() < 1e-9);

    // The control plane's own metrics are scrapeable.
    // Counters appear once their first event has happened (a report may still be in flight):
    // scrape until all are there, for at most 5 s.
    let names = [
        "loadshift_control_connected_proxies 2",
        "loadshift_control_plan_acks_total",
        "loadshift_control_plan_pushes_total{kind=\"full\"} 2",
        "loadshift_control_reports_total",
    ];
    let mut text = String::new();
    for _ in 0..50 {
        text = http_get(control.addrs.metrics.unwrap(), "/metrics").await;
        if names.iter().all(|n| text.contains(n)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for name in names {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    // The probes the Kubernetes Deployment uses.
    for (path, body) in [("/live", "live"), ("/ready", "ready")] {
        let page = http_get(control.addrs.metrics.unwrap(), path).await;
        assert!(
            page.starts_with("HTTP/1.1 200") && page.ends_with(&format!("{body}\n")),
            "{page}"
        );
    }
    // Prometheus conventions: every family has HELP and TYPE, the `_seconds` ones are
    // histograms (aggregatable across control planes), counters with known labels start at 0.
    // (The proxies of this test share the process and its recorder; their families are the
    // proxy test's to check.)
    for line in text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter(|l| l.starts_with("loadshift_control_"))
    {
        let family = line.split(' ').next().unwrap();
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP:\n{text}"
        );
    }
    assert!(
        text.contains("# TYPE loadshift_control_plan_ack_seconds histogram")
            && text.contains("loadshift_control_plan_ack_seconds_bucket{le=\"0.005\"}"),
        "{text}"
    );
    assert!(text.contains("loadshift_control_unauthenticated_total{api=\"operator\"} 0"));

    let err = op
        .get_state(pb::GetStateRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    control.stop().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
