//! The control loop: the shared [`Schedule`](loadshift_policy::schedule::Schedule) on a tokio
//! clock. It sleeps until the next task is due (or until an operator change wakes it), builds a
//! snapshot from the proxies' reports (or from a replay source), runs the due tasks and carries
//! out their outputs: plans into the plan book, scale decisions to the actuator (refused there
//! when it does not do that kind of change), changed performance-table rows to the store, and one
//! history sample per service for `GetState`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use loadshift_policy::{
    ActuateError, Actuator, ScaleDecision, Snapshot, actuate, schedule::Action,
};
use loadshift_proto::v1 as pb;

use super::shared::{DecisionRecord, Shared, stopped};
use crate::{metrics as m, plans::unix_ms};

/// Runs rounds as they fall due until the shutdown flag flips.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut stop = shared.shutdown.clone();
    loop {
        let due = shared.policies.lock().schedule.next_due();
        let sleep = async {
            match due {
                Some(d) => tokio::time::sleep_until(shared.started + d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => off_runtime(&shared).await,
            () = shared.wake.notified() => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// Runs one round on the blocking pool: a planner may take milliseconds (k-means, tables) and an
/// actuator seconds (a webhook), and neither may stall the proxy streams sharing the runtime.
async fn off_runtime(shared: &Arc<Shared>) {
    let s = shared.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || round(&s)).await {
        tracing::error!(error = %e, "a control round panicked; the next one runs as scheduled");
    }
}

/// The snapshot every due task reads.
fn snapshot(shared: &Shared, now: Duration) -> Snapshot {
    if let Some(replay) = shared.hooks.lock().snapshots.as_mut() {
        return replay(now);
    }
    let eps = shared.endpoints.borrow().clone();
    let (objectives, applications) = {
        let p = shared.policies.lock();
        (p.objectives.clone(), p.applications.clone())
    };
    let store = shared.store.lock();
    let stale = shared.cfg.report_stale();
    let mut snap = store.snapshot(now, stale, &eps, &objectives);
    snap.flows = store.flows(now, stale, &shared.flows);
    snap.applications = applications
        .into_iter()
        .map(|(name, a)| (name, std::sync::Arc::new(a)))
        .collect();
    snap
}

/// Runs the tasks due now (a policy the operator just chose plans at once) and wakes the loop to
/// re-read when the next one is due.
pub(crate) fn round_now(shared: &Shared) {
    round(shared);
    shared.wake.notify_one();
}

/// Runs the tasks due now and carries out what they produced.
pub(crate) fn round(shared: &Shared) {
    let started = Instant::now();
    let snap = snapshot(shared, shared.now());
    let round = shared.policies.lock().schedule.run_due(&snap);
    if round.outputs.is_empty() {
        return;
    }
    let mut planned = false;
    let mut decided = Vec::new();
    for out in &round.outputs {
        if out.foreign > 0 {
            tracing::warn!(policy = %out.policy, scope = %out.scope.label, dropped = out.foreign, "a policy planned services outside its scope; those plans were dropped");
        }
        match &out.action {
            Action::Plans(up) => {
                planned = true;
                shared.plans.apply(&out.policy, up);
            }
            Action::Decisions(ds) => {
                decided.extend(ds.iter().map(|d| (out.policy.clone(), d.clone())));
            }
        }
    }
    if planned {
        record_history(shared, &snap);
    }
    carry_out(shared, decided);
    if !round.table_changes.is_empty() {
        let mut tables = shared.tables.lock();
        tables.save(round.table_changes.clone());
        if let Some(e) = &tables.last_error {
            tracing::warn!(error = %e, "saving the performance table failed; it is kept in memory and saved with the next change");
        }
    }
    if let Some(observe) = shared.hooks.lock().on_round.as_mut() {
        observe(&snap, &round);
    }
    let kind = if planned { "planner" } else { "scale" };
    metrics::histogram!(m::LOOP_SECONDS, "loop" => kind).record(started.elapsed().as_secs_f64());
}

/// Hands decisions to the actuator outside every other lock (an actuator may wait seconds on a
/// webhook or an orchestrator) and keeps a record of each for `ListScaleDecisions`.
fn carry_out(shared: &Shared, decided: Vec<(String, ScaleDecision)>) {
    if decided.is_empty() {
        return;
    }
    let records: Vec<DecisionRecord> = {
        let mut actuator = shared.actuator.lock();
        decided
            .into_iter()
            .map(|(scaler, d)| carry_out_one(actuator.as_mut(), scaler, d))
            .collect()
    };
    let mut kept = shared.decisions.lock();
    kept.extend(records);
    while kept.len() > shared.cfg.decisions_kept {
        kept.pop_front();
    }
}

/// One decision through `actuator` (refused first if it asks for a kind the actuator does not
/// do), counted, and its record.
fn carry_out_one(actuator: &mut dyn Actuator, scaler: String, d: ScaleDecision) -> DecisionRecord {
    let result = actuate(actuator, &d);
    let outcome = match &result {
        Ok(()) => "applied",
        Err(ActuateError::Failed(_)) => "failed",
        Err(_) => "refused",
    };
    metrics::counter!(m::SCALE_DECISIONS, "service" => d.service.clone(), "actuator" => actuator.name().to_string(), "result" => outcome).increment(1);
    metrics::gauge!(m::SCALE_TARGET, "service" => d.service.clone()).set(f64::from(d.to));
    if let Err(e) = &result {
        tracing::warn!(service = %d.service, error = %e, outcome, "scale decision not carried out; the scaler asks again next round");
    }
    let limits = d.limits.unwrap_or_default();
    DecisionRecord {
        record: pb::ScaleDecisionRecord {
            service: d.service,
            from: d.from,
            to: d.to,
            reason: d.reason,
            scaler,
            actuator: actuator.name().to_string(),
            error: result.err().map(|e| e.to_string()).unwrap_or_default(),
            unix_ms: unix_ms(),
            cpu_millicores: limits.cpu_millicores,
            memory_mib: limits.memory_mib,
            brownout: d.brownout,
            outcome: outcome.to_string(),
        },
    }
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

#[cfg(test)]
mod tests {
    use loadshift_policy::{ActionKind, ResourceLimits};

    use super::*;
    use crate::{actuators::DryRun, config::WebhookConfig};

    #[test]
    fn a_kind_the_actuator_does_not_do_is_refused_and_recorded() {
        let d = ScaleDecision {
            service: "api".into(),
            from: 2,
            to: 2,
            limits: Some(ResourceLimits {
                cpu_millicores: Some(500),
                memory_mib: Some(256),
            }),
            reason: "more cpu".into(),
            ..Default::default()
        };
        // A webhook that does replicas only; nothing listens at its URL and nothing is sent.
        let mut hook = crate::actuators::Webhook::new(&WebhookConfig {
            url: "http://127.0.0.1:9/scale".into(),
            timeout_ms: 100,
            token_file: None,
            kinds: vec![ActionKind::Replicas],
        })
        .unwrap();
        let r = carry_out_one(&mut hook, "drpc".into(), d.clone()).record;
        assert_eq!(r.outcome, "refused");
        assert_eq!(
            r.error,
            "actuator webhook does not carry out limits changes (it does: replicas)"
        );
        assert_eq!((r.cpu_millicores, r.memory_mib), (Some(500), Some(256)));
        let r = carry_out_one(&mut DryRun, "drpc".into(), d).record;
        assert_eq!((r.outcome.as_str(), r.error.as_str()), ("applied", ""));
        let off = ScaleDecision {
            service: "recommendations".into(),
            from: 1,
            to: 0,
            reason: "shed".into(),
            ..Default::default()
        };
        let r = carry_out_one(&mut DryRun, "drpc".into(), off).record;
        assert_eq!(r.outcome, "refused");
        assert!(r.error.contains("without brownout"), "{}", r.error);
        let r = carry_out_one(
            &mut hook,
            "hpa".into(),
            ScaleDecision {
                service: "api".into(),
                from: 1,
                to: 3,
                reason: "busy".into(),
                ..Default::default()
            },
        )
        .record;
        assert_eq!(r.outcome, "failed", "nothing listens: {}", r.error);
    }
}
