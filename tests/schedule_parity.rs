//! The live control plane and the simulator run one schedule: the same planners and scaler over
//! the same sequence of snapshots produce identical plans, decisions and table changes, at the
//! same instants. The simulator runs a scenario and records every round with the snapshot it
//! read; the real control plane (in process, on a paused clock) replays those snapshots through
//! its own loop, and its rounds, plan book and decision list must match.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_support;

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use control_support::{TOKEN, token_file};
use loadshift_control::{
    ControlConfig, ControlServer,
    config::{EndpointConfig, ServiceConfig},
};
use loadshift_core::plan::ServicePlan;
use loadshift_policy::{
    Snapshot,
    schedule::{Action, Round},
};
use loadshift_proto::v1 as pb;
use loadshift_sim::{SimOptions, scenario::Scenario};

/// `front` calls `back` on three hosts, one of them noisy from 10 s; `back` is short of
/// containers, so the HPA scales it; `front` shifts load by Alg. 1 and `back` runs the
/// application-scoped `imbres-connect`.
const SCENARIO: &str = "
name: parity
seed: 7
duration_s: 62
warmup_s: 0
hosts:
  - {name: h1, cores: 8}
  - {name: h2, cores: 8}
  - {name: h3, cores: 8, interference: {cpu: {steps: [[0, 0.0], [10, 0.7]]}}}
services:
  - {name: front, service_time: {dist: exponential, mean_ms: 2}, concurrency: 4,
     replicas: {h1: 1, h2: 1, h3: 1}, calls: [{service: back}]}
  - {name: back, service_time: {dist: exponential, mean_ms: 20}, concurrency: 1,
     replicas: {h1: 1, h2: 1}}
flows:
  - {name: f, entry: front, arrival: {process: poisson, rate: 120}, sla: {latency_ms: 200}}
policy:
  planner: imbres-shift
  scaler: hpa
  services:
    back: {planner: imbres-connect}
";

/// The live control plane for the scenario's services with the same choices: static endpoints
/// are irrelevant (policies read containers from the snapshot), so one placeholder each.
fn live_config(s: &Scenario) -> ControlConfig {
    let mut cfg = ControlConfig::new("127.0.0.1:0".parse().unwrap(), token_file(TOKEN));
    for (i, svc) in s.services.iter().enumerate() {
        let mut c = ServiceConfig {
            planner: s.planner_for(&svc.name).to_string(),
            scaler: s.scaler_for(&svc.name).to_string(),
            scaler_settings: Some(s.policy.scaler_settings.clone()),
            planner_settings: None,
            objective: None,
            endpoints: Vec::new(),
        };
        c.endpoints.push(EndpointConfig {
            addr: format!("127.0.0.1:{}", 9 + i).parse().unwrap(),
            host: "h1".into(),
            zone: "default".into(),
            container: None,
            weight: 1.0,
        });
        cfg.services.insert(svc.name.clone(), c);
    }
    cfg.planner_settings = s.policy.planner_settings.clone();
    cfg
}

#[tokio::test(start_paused = true)]
async fn live_control_plane_and_simulator_produce_the_same_rounds() {
    let s = Scenario::parse(SCENARIO, None).unwrap();
    let sim = loadshift_sim::run(
        &s,
        &SimOptions {
            trace: true,
            ..Default::default()
        },
        &mut |_| {},
    )
    .unwrap();
    let traced: Vec<(Snapshot, Round)> = sim.rounds;
    // The run must exercise everything being compared.
    let planned = |r: &Round, name: &str| r.outputs.iter().any(|o| o.policy == name);
    assert!(
        traced
            .iter()
            .filter(|(_, r)| planned(r, "imbres-shift"))
            .count()
            >= 12
    );
    assert!(traced.iter().any(|(_, r)| planned(r, "imbres-connect")));
    assert!(traced.iter().any(|(_, r)| !r.table_changes.is_empty()));
    assert!(
        !sim.scale_decisions.is_empty(),
        "the HPA scales back up: {:?}",
        sim.run.counts
    );
    let last_at = traced.last().unwrap().0.now;

    // The live control plane reads the recorded snapshots in order; a read at an instant the
    // simulator did not run a round is a mismatch (after the trace it sees the last one again).
    let queue: Arc<Mutex<VecDeque<Snapshot>>> =
        Arc::new(Mutex::new(traced.iter().map(|(s, _)| s.clone()).collect()));
    let mismatches: Arc<Mutex<Vec<(Duration, Duration)>>> = Arc::default();
    let live_rounds: Arc<Mutex<Vec<Round>>> = Arc::default();
    let (q, mm, lr) = (queue.clone(), mismatches.clone(), live_rounds.clone());
    let last = traced.last().unwrap().0.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addrs, serve) = ControlServer::builder(live_config(&s))
        .snapshots(Box::new(move |now| {
            let mut q = q.lock().unwrap();
            match q.pop_front() {
                Some(snap) => {
                    if snap.now != now {
                        mm.lock().unwrap().push((now, snap.now));
                    }
                    snap
                }
                None => Snapshot {
                    now,
                    ..last.clone()
                },
            }
        }))
        .on_round(Box::new(move |_, round| {
            lr.lock().unwrap().push(round.clone());
        }))
        .bind(async move {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
    let server = tokio::spawn(serve);

    // Paused: time jumps from round to round as the loop sleeps, exactly to each due instant.
    tokio::time::sleep(last_at + Duration::from_millis(500)).await;
    let live: Vec<Round> = live_rounds.lock().unwrap().clone();
    assert!(
        mismatches.lock().unwrap().is_empty(),
        "live read snapshots at other instants (live, sim): {:?}",
        mismatches.lock().unwrap()
    );
    assert!(live.len() >= traced.len(), "{} live rounds", live.len());
    for (i, (sim_round, live_round)) in traced.iter().map(|(_, r)| r).zip(&live).enumerate() {
        assert_eq!(sim_round.at, live_round.at, "round {i}");
        assert_eq!(sim_round, live_round, "round {i} at {:?}", sim_round.at);
    }

    // What the live control plane carried out: the plan book holds the last service-wide plan
    // each planner produced, and the decision list holds every decision, as the simulator's.
    tokio::time::resume();
    let mut op = control_support::operator(addrs.operator, Some(TOKEN)).await;
    let state = op
        .get_state(pb::GetStateRequest::default())
        .await
        .unwrap()
        .into_inner();
    for svc in &state.services {
        let want = traced.iter().rev().find_map(|(_, r)| {
            r.outputs.iter().find_map(|o| match &o.action {
                Action::Plans(up) if up.touched().contains(svc.name.as_str()) => {
                    Some(up.services.get(&svc.name).cloned())
                }
                _ => None,
            })
        });
        // The plan book stamps its revision on what it stores; the planner's plan has none.
        let got = svc.plan.as_ref().map(ServicePlan::from).map(|p| {
            assert_eq!(p.revision, svc.plan_revision, "{}", svc.name);
            ServicePlan { revision: 0, ..p }
        });
        assert_eq!(Some(got), want, "{}", svc.name);
    }
    let listed = op
        .list_scale_decisions(pb::ListScaleDecisionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .decisions;
    let listed: Vec<(String, u32, u32, String)> = listed
        .into_iter()
        .map(|d| (d.service, d.from, d.to, d.reason))
        .collect();
    let simulated: Vec<(String, u32, u32, String)> = sim
        .scale_decisions
        .iter()
        .map(|d| (d.service.clone(), d.from, d.to, d.reason.clone()))
        .collect();
    assert_eq!(listed[..simulated.len()], simulated[..]);
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
