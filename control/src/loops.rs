//! The two control loops. Every planner interval (default 5 s) each service's planner reads a
//! snapshot holding that service (and every host) and its plan goes into the plan book; every
//! scale interval (default 60 s) each service's scaler reads the same kind of snapshot and the
//! actuator carries out its decisions, which are kept for `ListScaleDecisions`.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use loadshift_proto::v1 as pb;

use crate::{
    metrics as m,
    plans::unix_ms,
    server::{DecisionRecord, Policy, Shared},
};
use loadshift_policy::Snapshot;

/// Runs both loops until the shutdown flag flips.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut plan_tick = tokio::time::interval(shared.cfg.planner_interval());
    let mut scale_tick = tokio::time::interval(shared.cfg.scale_interval());
    for t in [&mut plan_tick, &mut scale_tick] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    // The first ticks fire at once; the first plan was made at bind time and scaling right at
    // start would act on no telemetry.
    plan_tick.tick().await;
    scale_tick.tick().await;
    let mut stop = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = plan_tick.tick() => off_runtime(&shared, plan_once).await,
            _ = scale_tick.tick() => off_runtime(&shared, scale_once).await,
            () = crate::server::stopped(&mut stop) => return,
        }
    }
}

/// Runs one round on the blocking pool: a planner may take milliseconds (k-means, tables) and
/// must not stall the proxy streams sharing the runtime's workers.
async fn off_runtime(shared: &Arc<Shared>, round: fn(&Shared)) {
    let s = shared.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || round(&s)).await {
        tracing::error!(error = %e, "a control round panicked; the next tick runs again");
    }
}

/// Snapshot of every service.
fn snapshots(
    shared: &Shared,
    objectives: &BTreeMap<String, loadshift_policy::Objective>,
) -> Snapshot {
    let eps = shared.endpoints.borrow().clone();
    shared
        .store
        .lock()
        .snapshot(shared.now(), shared.cfg.report_stale(), &eps, objectives)
}

/// The part of `snap` one service's planner or scaler sees: the service, every host, and the
/// service's callers.
fn per_service(snap: &Snapshot, name: &str) -> Option<Snapshot> {
    let svc = snap.services.get(name)?;
    let proxies = svc
        .callers
        .iter()
        .filter_map(|p| Some((p.clone(), snap.proxies.get(p)?.clone())))
        .collect();
    Some(Snapshot {
        now: snap.now,
        services: [(name.to_string(), svc.clone())].into(),
        hosts: snap.hosts.clone(),
        proxies,
    })
}

/// The snapshot every round reads, with each service's objective.
fn snapshot_for(shared: &Shared, policies: &BTreeMap<String, Policy>) -> Snapshot {
    let objectives = policies
        .iter()
        .filter_map(|(n, p)| Some((n.clone(), p.objective.clone()?)))
        .collect();
    snapshots(shared, &objectives)
}

/// One planner round over every service.
pub(crate) fn plan_once(shared: &Shared) {
    let started = Instant::now();
    let mut policies = shared.policies.lock();
    let snap = snapshot_for(shared, &policies);
    record_history(shared, &snap);
    for (name, policy) in policies.iter_mut() {
        let Some(sub) = per_service(&snap, name) else {
            continue;
        };
        let update = policy.planner.plan(&sub);
        shared
            .plans
            .set_planned(name, policy.planner.name(), update);
    }
    drop(policies);
    metrics::histogram!(m::LOOP_SECONDS, "loop" => "planner")
        .record(started.elapsed().as_secs_f64());
}

/// Appends one sample per service to the bounded history.
fn record_history(shared: &Shared, snap: &Snapshot) {
    let at = unix_ms();
    let mut history = shared.history.lock();
    for (name, svc) in &snap.services {
        let (mut calls, mut errors, mut p95_sum) = (0u64, 0u64, 0.0f64);
        let (mut inbound_sum, mut inbound_n) = (0.0f64, 0u32);
        for c in &svc.containers {
            calls += c.outbound.count;
            errors += c.outbound.errors;
            p95_sum += c.outbound.p95_ms * c.outbound.count as f64;
            if let Some(w) = c.inbound {
                inbound_sum += w.p95_ms;
                inbound_n += 1;
            }
        }
        let sample = pb::ServiceSample {
            unix_ms: at,
            offered_rps: svc.offered_rps,
            outbound_p95_ms: if calls == 0 {
                0.0
            } else {
                p95_sum / calls as f64
            },
            inbound_p95_ms: if inbound_n == 0 {
                0.0
            } else {
                inbound_sum / f64::from(inbound_n)
            },
            calls,
            errors,
        };
        let ring = history.entry(name.clone()).or_default();
        ring.push_back(sample);
        while ring.len() > shared.cfg.windows_kept {
            ring.pop_front();
        }
    }
}

/// One scale round over every service.
pub(crate) fn scale_once(shared: &Shared) {
    let started = Instant::now();
    // Decide under the policies lock, apply after releasing it: an actuator may wait seconds on
    // a webhook or an orchestrator, and plan rounds and the operator API need that lock.
    let decided: Vec<(String, loadshift_policy::ScaleDecision)> = {
        let mut policies = shared.policies.lock();
        let snap = snapshot_for(shared, &policies);
        let mut v = Vec::new();
        for (name, policy) in policies.iter_mut() {
            let Some(sub) = per_service(&snap, name) else {
                continue;
            };
            let scaler = policy.scaler.name().to_string();
            v.extend(
                policy
                    .scaler
                    .scale(&sub)
                    .into_iter()
                    .map(|d| (scaler.clone(), d)),
            );
        }
        v
    };
    let mut records = Vec::new();
    {
        let mut actuator = shared.actuator.lock();
        for (scaler, d) in decided {
            let result = actuator.apply(&d);
            let outcome = if result.is_ok() { "applied" } else { "failed" };
            metrics::counter!(m::SCALE_DECISIONS, "service" => d.service.clone(), "actuator" => actuator.name().to_string(), "result" => outcome).increment(1);
            metrics::gauge!(m::SCALE_TARGET, "service" => d.service.clone()).set(f64::from(d.to));
            if let Err(e) = &result {
                tracing::warn!(service = %d.service, error = %e, "actuator failed; the scaler asks again next round");
            }
            records.push(DecisionRecord {
                record: pb::ScaleDecisionRecord {
                    service: d.service,
                    from: d.from,
                    to: d.to,
                    reason: d.reason,
                    scaler,
                    actuator: actuator.name().to_string(),
                    error: result.err().unwrap_or_default(),
                    unix_ms: unix_ms(),
                },
            });
        }
    }
    let mut kept = shared.decisions.lock();
    kept.extend(records);
    while kept.len() > shared.cfg.decisions_kept {
        kept.pop_front();
    }
    drop(kept);
    metrics::histogram!(m::LOOP_SECONDS, "loop" => "scale").record(started.elapsed().as_secs_f64());
}
