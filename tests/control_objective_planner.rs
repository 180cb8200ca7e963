//! The `objective` planner (Samani & Stadler) on a real control plane: its model file named in
//! the planner settings, a real proxy control client calling both services and reporting what
//! they are offered, the application's management objective set with `loadshift ctl` (the real
//! binary). Without an objective the planner leaves the plans alone; once one is set it
//! publishes routing weights and blocking for the services the objective names, the proxy
//! applies them, and the current objective shows in `ctl status`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_support;

use std::{path::Path, time::Duration};

use control_support::*;
use loadshift_control::config::ApplicationConfig;
use loadshift_policy::planners::objective::{
    model::{ForestParams, StepService, SystemModel, TraceStep},
    space::{ActionSpace, ManagedService},
};
use loadshift_proto::v1 as pb;
use rand::SeedableRng;

/// A model over s1 (hosts of ports 11, 12) and s2 (13, 14) trained on a made-up trace in which
/// a host's delay grows with the load sent to it.
fn model_file(dir: &Path) -> std::path::PathBuf {
    let services = vec![
        ManagedService {
            name: "s1".into(),
            hosts: vec!["host-11".into(), "host-12".into()],
        },
        ManagedService {
            name: "s2".into(),
            hosts: vec!["host-13".into(), "host-14".into()],
        },
    ];
    let space = ActionSpace::new(services.clone(), 6).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let steps: Vec<TraceStep> = (0..200)
        .map(|i| {
            let a = space.sample(&mut rng);
            TraceStep {
                t_s: 5.0 * i as f64,
                services: a
                    .iter()
                    .map(|x| {
                        let l = 5.0 + (i % 4) as f64 * 5.0;
                        let c = l * (1.0 - x.block);
                        StepService {
                            offered_rps: l,
                            carried_rps: c,
                            mean_ms: (c > 0.0)
                                .then(|| 20.0 + c * (2.0 * x.shares[0] + 4.0 * x.shares[1])),
                            action: x.clone(),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    let m = SystemModel::fit(
        services,
        &steps,
        ForestParams {
            trees: 10,
            ..Default::default()
        },
    )
    .unwrap();
    let path = dir.join("model.json");
    std::fs::write(&path, m.to_json().unwrap()).unwrap();
    path
}

async fn plan(control: &Control, service: &str) -> (Option<pb::ServicePlan>, u64) {
    let mut op = control.operator(TOKEN).await;
    let s = op
        .get_state(pb::GetStateRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .services
        .remove(0);
    (s.plan, s.plan_revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_objective_set_with_ctl_reaches_the_objective_planner() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(TOKEN);
    let mut cfg = config(
        addr(0),
        &token,
        vec![
            (
                "s1",
                service(
                    "objective",
                    &[(addr(11), "s1-a", 1.0), (addr(12), "s1-b", 1.0)],
                ),
            ),
            (
                "s2",
                service(
                    "objective",
                    &[(addr(13), "s2-a", 1.0), (addr(14), "s2-b", 1.0)],
                ),
            ),
        ],
    );
    cfg.planner_settings.objective.model = Some(model_file(dir.path()));
    cfg.operator_listen = Some(addr(0));
    cfg.applications.insert(
        "mesh".into(),
        ApplicationConfig {
            services: vec!["s1".into(), "s2".into()],
            management: None,
            flows: Default::default(),
        },
    );
    let control = Control::start(cfg).await;
    let server = format!("http://{}", control.addrs.operator);
    // The front proxy: calls both services and reports their offered load every 100 ms.
    let dp = RecordingPlane::new(None);
    let window = loadshift_core::telemetry::WindowSnapshot {
        count: 60,
        mean_ms: 40.0,
        p95_ms: 90.0,
        window_s: 10.0,
        ..Default::default()
    };
    let ep = |svc: &str, port: u16, c: &str| loadshift_proxy::control_client::EndpointReport {
        service: svc.into(),
        endpoint: loadshift_core::endpoint::Endpoint::new(
            addr(port),
            format!("host-{port}"),
            "z1",
            c,
        ),
        window,
        in_flight: 1,
        ewma_ms: 40.0,
    };
    dp.set_report(loadshift_proxy::control_client::ProxyReport {
        endpoints: vec![
            ep("s1", 11, "s1-a"),
            ep("s1", 12, "s1-b"),
            ep("s2", 13, "s2-a"),
            ep("s2", 14, "s2-b"),
        ],
        offered: vec![("s1".into(), 150), ("s2".into(), 200)],
        ..Default::default()
    });
    let (_stop, _task) = spawn_proxy(
        &control.url(),
        &token,
        identity("front", None, &["s1", "s2"]),
        dp.clone(),
    );

    // Planner rounds every 200 ms: without an objective nothing is planned.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (p, _) = plan(&control, "s1").await;
    assert!(
        p.as_ref().is_none_or(|p| p.host_weights.is_empty()),
        "{p:?}"
    );

    let (ok, out, err) = ctl(
        &server,
        &token,
        &[
            "objective",
            "set",
            "s1",
            "--mo",
            "mo1",
            "--bound",
            "s1=80",
            "--bound",
            "s2=150",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("s1"), "{out}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let planned = loop {
        let (p, rev) = plan(&control, "s2").await;
        if let Some(p) = p.filter(|p| !p.host_weights.is_empty()) {
            break (p, rev);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no plan for s2 within 10 s of the objective"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Both hosts of the service, weights from the six levels; the objective planner's plans.
    let (p, rev) = planned;
    assert!(rev > 0);
    let mut hosts: Vec<String> = p.host_weights.keys().cloned().collect();
    hosts.sort();
    assert_eq!(hosts, ["host-13", "host-14"]);
    let levels = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
    for w in p.host_weights.values() {
        assert!(levels.iter().any(|l| (l - w).abs() < 1e-9), "{w}");
    }
    // The proxy got it.
    dp.wait_for(
        10,
        "the objective planner's plan for s2 at the proxy",
        |s| {
            s.current
                .as_ref()
                .and_then(|p| p.services.get("s2"))
                .is_some_and(|sp| !sp.host_weights.is_empty())
        },
    )
    .await;
    let (ok, out, err) = ctl(&server, &token, &["status", "s1", "--json"]).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kind = v["services"][0]["management"]["kind"]
        .as_str()
        .unwrap_or_default();
    assert!(kind.contains("MO1"), "{v}");
    control.stop().await;
}
