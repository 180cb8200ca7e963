//! The performance hash table persists through the store the control config names: a control
//! plane running `imbres-connect` writes what it learns to `planner_settings.table_store` (an
//! embedded redb file here), and a control plane started later on the same file plans from the
//! restored table at once, where one without it falls back to rendezvous subsets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_support;

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use control_support::{TOKEN, token_file};
use loadshift_control::{ControlConfig, ControlServer, config::ServiceConfig, store::RedbStore};
use loadshift_policy::{
    PlanUpdate, Snapshot,
    planners::settings::TableStoreConfig,
    schedule::{Action, Round},
    store::TableStore,
};
use loadshift_sim::{SimOptions, scenario::Scenario};

/// `front` calls `back`; `back` runs `imbres-connect`, which learns the table.
const SCENARIO: &str = "
name: tables
seed: 3
duration_s: 31
hosts:
  - {name: h1}
  - {name: h2}
  - {name: h3, interference: {cpu: 0.6}}
services:
  - {name: front, service_time: {dist: exponential, mean_ms: 2}, concurrency: 4,
     replicas: {h1: 2, h2: 2}, calls: [{service: back}]}
  - {name: back, service_time: {dist: exponential, mean_ms: 5}, concurrency: 2,
     replicas: {h1: 2, h2: 2, h3: 2}}
flows:
  - {name: f, entry: front, arrival: {process: poisson, rate: 150}, sla: {latency_ms: 200}}
policy:
  planner: even
  services:
    back: {planner: imbres-connect}
";

fn config(s: &Scenario, store: TableStoreConfig) -> ControlConfig {
    let mut cfg = ControlConfig::new("127.0.0.1:0".parse().unwrap(), token_file(TOKEN));
    for svc in &s.services {
        let c = ServiceConfig {
            planner: s.planner_for(&svc.name).to_string(),
            scaler: "none".into(),
            scaler_settings: None,
            planner_settings: None,
            objective: None,
            endpoints: Vec::new(),
        };
        cfg.services.insert(svc.name.clone(), c);
    }
    cfg.planner_settings.table_store = store;
    cfg
}

/// Runs a control plane on `snaps` (one per round, in order) and returns `back`'s plans from
/// every round.
async fn run(cfg: ControlConfig, snaps: Vec<Snapshot>) -> Vec<PlanUpdate> {
    let last_at = snaps.last().unwrap().now;
    let queue = Arc::new(Mutex::new(std::collections::VecDeque::from(snaps)));
    let seen: Arc<Mutex<Vec<Round>>> = Arc::default();
    let (q, s2) = (queue.clone(), seen.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (_, serve) = ControlServer::builder(cfg)
        .snapshots(Box::new(move |now| {
            let mut q = q.lock().unwrap();
            let mut snap = q.pop_front().unwrap_or_default();
            snap.now = now;
            snap
        }))
        .on_round(Box::new(move |_, r| s2.lock().unwrap().push(r.clone())))
        .bind(async move {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
    let server = tokio::spawn(serve);
    tokio::time::sleep(last_at + Duration::from_millis(100)).await;
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    let rounds = seen.lock().unwrap().clone();
    rounds
        .iter()
        .flat_map(|r| &r.outputs)
        .filter(|o| o.policy == "imbres-connect")
        .filter_map(|o| match &o.action {
            Action::Plans(up) => Some(up.clone()),
            Action::Decisions(_) => None,
        })
        .collect()
}

/// Per-proxy subsets from the table, not the rendezvous fallback (`subset_size` without data).
fn grouped(up: &PlanUpdate) -> bool {
    up.services
        .get("back")
        .is_some_and(|p| p.subset_size.is_none())
        && !up.per_proxy.is_empty()
}

fn rows(path: &Path) -> usize {
    RedbStore::open(path).unwrap().load_all().unwrap().len()
}

#[tokio::test(start_paused = true)]
async fn the_table_survives_a_restart_through_the_configured_store() {
    let s = Scenario::parse(SCENARIO, None).unwrap();
    let traced = loadshift_sim::run(
        &s,
        &SimOptions {
            trace: true,
            ..Default::default()
        },
        &mut |_| {},
    )
    .unwrap()
    .rounds;
    let snaps: Vec<Snapshot> = traced.into_iter().map(|(snap, _)| snap).collect();
    // The first snapshot has no telemetry yet: what a fresh control plane sees at start.
    let fresh = vec![snaps[0].clone()];
    let dir = tempfile::tempdir().unwrap();
    let redb = dir.path().join("perf.redb");
    let store = TableStoreConfig::Redb { path: redb.clone() };

    // Without a stored table a fresh control plane falls back to rendezvous subsets.
    let plans = run(config(&s, store.clone()), fresh.clone()).await;
    assert!(!plans.is_empty() && !grouped(&plans[0]), "{:?}", plans[0]);

    // A control plane that saw traffic learned the table and wrote it to the file.
    let plans = run(config(&s, store.clone()), snaps).await;
    assert!(plans.iter().any(grouped), "it planned from the table");
    assert!(
        rows(&redb) >= 2,
        "front and back rows in {}",
        redb.display()
    );

    // Restarted on the same file, it plans from the restored table at once.
    let plans = run(config(&s, store), fresh.clone()).await;
    assert!(grouped(&plans[0]), "{:?}", plans[0]);
    // The same start with the table in memory only: the fallback again.
    let plans = run(config(&s, TableStoreConfig::Memory), fresh).await;
    assert!(!grouped(&plans[0]), "{:?}", plans[0]);
}
