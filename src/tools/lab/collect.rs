//! `loadshift model collect --lab`: the objective planner's trace from real processes. The
//! scenario runs in the lab with the `random` planner (a new action drawn uniformly every 5 s)
//! under the random-level load on every flow; a poller reads the plan in force from a caller's
//! sidecar (`/plan`) every 200 ms, and each stretch of time one action was in force becomes one
//! step of the trace, from the generator's 1 s intervals that lie wholly inside it (offered,
//! carried, mean latency of the successes per managed service, as [`run::objective_steps`]
//! counts them). Stretches shorter than 3 s (a change seen late) are left out.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use loadshift_core::plan::Plan;
use loadshift_policy::planners::objective::{
    model::TraceStep,
    space::{ManagedService, ServiceAction},
};
use loadshift_sim::scenario::Scenario;
use tokio::time::Instant;

use super::{layout, run, supervisor::Supervisor};
use crate::tools::support::Pool;

/// How often the plan in force is read.
const POLL: Duration = Duration::from_millis(200);

/// Shortest stretch of one action that becomes a step, in generator ticks.
const MIN_TICKS: usize = 3;

/// Runs the collection for `steps` actions of 5 s on `seed`; the lab's processes live in `dir`.
pub async fn collect(
    s: &Scenario,
    steps: usize,
    seed: u64,
    dir: &Path,
) -> anyhow::Result<(Vec<ManagedService>, Vec<TraceStep>)> {
    let (_, services) = loadshift_sim::objective::managed(s).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut c = loadshift_sim::objective::collection_scenario(s, steps);
    c.seed = seed;
    c.report_interval_s = 1.0;
    c.policy.planner_settings.interval_ms = Some((loadshift_sim::objective::STEP_S * 1e3) as u64);
    c.policy.planner_settings.objective.seed = seed;
    let layout = layout::layout(&c, 600.0, 40).map_err(|e| anyhow::anyhow!("{e}"))?;
    let me = std::env::current_exe().context("locate the loadshift binary")?;
    let start = {
        let (c, layout, dir) = (c.clone(), layout.clone(), dir.to_path_buf());
        tokio::task::spawn_blocking(move || {
            Supervisor::start(&c, &layout, &dir, &me, Some("random"), None)
        })
    };
    let mut sup = start.await??;
    // A caller's sidecar per managed service: its `/plan` is the plan in force for it.
    let admins: Vec<SocketAddr> = services
        .iter()
        .map(|m| {
            sup.placed
                .iter()
                .find(|p| {
                    c.services
                        .iter()
                        .find(|x| x.name == p.spec.service)
                        .is_some_and(|x| x.calls.iter().any(|k| k.service == m.name))
                })
                .map(|p| p.ports.admin)
                .with_context(|| format!("no caller of {} to read its plan from", m.name))
        })
        .collect::<anyhow::Result<_>>()?;
    let duration = Duration::from_secs_f64(c.duration_s);
    let interval = Duration::from_secs(1);
    let tick = run::tick(interval, sup.control_interval);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let t0 = Instant::now();
    let poller = tokio::spawn(poll_plans(admins, services.clone(), t0, stop));
    let measured = run::drive(&c, &layout, &sup, None, duration, interval, tick).await;
    let _ = stop_tx.send(true);
    let changes = poller.await?;
    let measured = measured?;
    sup.check_alive()?;
    drop(sup);
    Ok((
        services.clone(),
        windows(&c, &measured, &services, &changes),
    ))
}

/// Every change of the actions in force, with the seconds since `t0` it was first seen.
async fn poll_plans(
    admins: Vec<SocketAddr>,
    services: Vec<ManagedService>,
    t0: Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<(f64, Vec<ServiceAction>)> {
    let pools: Vec<Arc<Pool>> = admins
        .iter()
        .map(|&a| Pool::new(a, 1, Duration::from_secs(1)))
        .collect();
    let mut out: Vec<(f64, Vec<ServiceAction>)> = Vec::new();
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return out,
        }
        let mut now = Vec::with_capacity(services.len());
        for (pool, m) in pools.iter().zip(&services) {
            let Some(body) = run::get(pool, "/plan").await else {
                break;
            };
            let Ok(plan) = serde_json::from_slice::<Plan>(&body) else {
                break;
            };
            let Some(sp) = plan.services.get(&m.name) else {
                break;
            };
            let w: Vec<f64> = m
                .hosts
                .iter()
                .map(|h| sp.host_weights.get(h).copied().unwrap_or(0.0))
                .collect();
            let sum: f64 = w.iter().sum();
            if sum <= 0.0 {
                break;
            }
            now.push(ServiceAction {
                shares: w.iter().map(|x| x / sum).collect(),
                block: sp.blocking.get("*").map_or(0.0, |b| b.fraction),
            });
        }
        if now.len() == services.len() && out.last().is_none_or(|(_, a)| *a != now) {
            out.push((t0.elapsed().as_secs_f64(), now));
        }
    }
}

/// One step per stretch of one action, from the generator ticks wholly inside it, after the
/// warm-up.
fn windows(
    s: &Scenario,
    m: &run::Measured,
    services: &[ManagedService],
    changes: &[(f64, Vec<ServiceAction>)],
) -> Vec<TraceStep> {
    let tick = m.tick.as_secs_f64();
    let n = m.flows.iter().map(|f| f.intervals.len()).min().unwrap_or(0);
    let mut out = Vec::new();
    for (i, (from, action)) in changes.iter().enumerate() {
        let to = changes.get(i + 1).map_or(n as f64 * tick, |c| c.0);
        let first = (from.max(s.warmup_s) / tick).ceil() as usize;
        let last = ((to / tick).floor() as usize).min(n.saturating_sub(1));
        if last < first + MIN_TICKS {
            continue;
        }
        let mut step = run::steps_over(s, m, services, first..last);
        for (x, a) in step.services.iter_mut().zip(action) {
            x.action = a.clone();
        }
        out.push(step);
    }
    out
}
