//! One lab run: drive every flow with the open-loop generator through the gateway, follow each
//! host's interference schedule by rewriting its containers' interference files every second,
//! count each container's served requests every report interval, read the control plane's plan
//! pushes from its `/metrics`, and turn it all into the report the simulator also writes.
//!
//! The generator records latency per `tick` (the greatest common divisor of the report interval
//! and the planner's interval, at least 100 ms); ticks are regrouped into report intervals for the
//! time series and into planner iterations for `converge_iterations`, judged by the simulator's
//! criterion ([`loadshift_sim::converged_after`], counted from the scenario's last
//! change, [`loadshift_sim::onset_s`], each iteration pooled with the
//! [`loadshift_sim::CONVERGE_POOL`]` - 1` before it). Two differences remain: the lab's per-iteration
//! p95 comes from the generator's log-linear histograms (within 6.25 %) where the simulator keeps
//! exact samples, and requests are assigned to iterations by intended send time where the
//! simulator uses completion time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http::header::{HOST, HeaderName, HeaderValue};
use http_body_util::Empty;
use loadshift_core::telemetry::histogram::Histogram;
use loadshift_sim::report::{Counts, Interval, PolicyRun, PolicySummary};
use loadshift_sim::scenario::{Arrival, ArrivalState, Scenario};
use loadshift_sim::{CONVERGE_POOL, converged_after, onset_s};
use parking_lot::Mutex;

use super::configs::PRIORITY_HEADER;
use super::layout::Layout;
use super::relay::ZoneRelays;
use super::supervisor::Supervisor;
use crate::tools::{app::server::STATS_PATH, support::write_atomically};
use crate::tools::{
    load::{self as loadgen, Arrivals, LoadReport, LoadSpec, Rate},
    support::Pool,
};

/// How often interference files are rewritten.
const INTERFERENCE_TICK: Duration = Duration::from_secs(1);

/// What one run measured, before it becomes a report.
#[derive(Debug)]
pub struct Measured {
    /// One generator report per flow.
    pub flows: Vec<LoadReport>,
    /// Requests served per container per report interval, parallel to the supervisor's `placed`.
    pub served: Vec<Vec<u64>>,
    /// Width of the generator's intervals (see the module documentation).
    pub tick: Duration,
    /// Plan updates the control plane sent to proxies during the run; `None` when its
    /// `/metrics` could not be read.
    pub plan_pushes: Option<u64>,
    /// Per report interval: inter-zone RTT measured at the zone relays, per pair.
    pub zone_rtt: Vec<BTreeMap<String, f64>>,
}

/// Width of the generator's intervals for a report interval and a planner interval: their
/// greatest common divisor in milliseconds, at least 100 ms.
pub fn tick(interval: Duration, control: Duration) -> Duration {
    fn gcd(a: u128, b: u128) -> u128 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let (a, b) = (interval.as_millis(), control.as_millis());
    let g = match (a, b) {
        (0, x) | (x, 0) => x,
        _ => gcd(a, b),
    };
    Duration::from_millis(u64::try_from(g.max(100)).unwrap_or(u64::MAX))
}

/// Value of the Prometheus counter `name` summed over its label sets, from `/metrics` text; 0
/// when absent (counters appear with their first event).
pub fn prometheus_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            // `name{...} v` or `name v`, not a longer name sharing the prefix.
            let v = if rest.starts_with('{') {
                rest.rsplit_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            v.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

async fn plan_pushes(metrics: SocketAddr) -> Option<u64> {
    let pool = Pool::new(metrics, 1, Duration::from_secs(2));
    let text = get(&pool, "/metrics").await?;
    let text = String::from_utf8(text).ok()?;
    Some(prometheus_sum(&text, loadshift_control::metrics::PLAN_PUSHES) as u64)
}

/// Runs the scenario for `duration` against a started deployment.
pub async fn drive(
    s: &Scenario,
    layout: &Layout,
    sup: &Supervisor,
    relays: Option<&ZoneRelays>,
    duration: Duration,
    interval: Duration,
    tick: Duration,
) -> anyhow::Result<Measured> {
    let pushes_before = plan_pushes(sup.control_metrics).await;
    // A watch channel, not a Notify: a stop sent while a task is between awaits is still seen.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let interference = tokio::spawn(follow_interference(s.clone(), sup, stop.clone()));
    let served = tokio::spawn(count_served(
        sup.placed.iter().map(|p| p.ports.app).collect(),
        interval,
        stop.clone(),
    ));

    let mut flows = tokio::task::JoinSet::new();
    let live: Vec<Arc<Mutex<LoadReport>>> = s.flows.iter().map(|_| Arc::default()).collect();
    let progress = tokio::spawn(show_progress(live.clone(), duration, tick, stop.clone()));
    for (i, flow) in s.flows.iter().enumerate() {
        let mut spec = LoadSpec::new(
            sup.gateway,
            flow_rate(&flow.arrival, s.seed + i as u64, layout.rate_scale),
            duration,
        );
        spec.host = flow.entry.clone();
        spec.headers.push((
            HeaderName::from_static(PRIORITY_HEADER),
            HeaderValue::from_str(&flow.name)?,
        ));
        spec.arrivals = match flow.arrival {
            Arrival::Constant { .. } => Arrivals::Uniform,
            _ => Arrivals::Poisson,
        };
        spec.seed = s.seed.wrapping_add(i as u64);
        spec.connections = 4;
        spec.max_connections = 512;
        spec.timeout = Duration::from_secs_f64(flow.timeout_ms / 1000.0);
        spec.interval = tick;
        spec.slow_threshold = Some(Duration::from_secs_f64(flow.sla.latency_ms / 1000.0));
        // Dozens of processes share two cores with the generator: no busy-waiting.
        spec.precise = false;
        spec.live = Some(Arc::clone(&live[i]));
        flows.spawn(async move { (i, loadgen::run(spec).await) });
    }
    let mut reports: Vec<Option<LoadReport>> = (0..s.flows.len()).map(|_| None).collect();
    while let Some(joined) = flows.join_next().await {
        let (i, report) = joined?;
        reports[i] = Some(report?);
    }
    let _ = stop_tx.send(true);
    interference.abort();
    let _ = progress.await;
    let served = served.await?;
    let pushes_after = plan_pushes(sup.control_metrics).await;
    Ok(Measured {
        flows: reports.into_iter().flatten().collect(),
        served,
        tick,
        plan_pushes: pushes_before
            .zip(pushes_after)
            .map(|(b, a)| a.saturating_sub(b)),
        zone_rtt: relays.map(ZoneRelays::series).unwrap_or_default(),
    })
}

/// A progress bar on stderr while the load runs: seconds elapsed of the run, and the p95 of the
/// requests sent in the last interval whose responses are in (two intervals back; the newest
/// still has requests in flight), with the successes and failures so far, over every flow.
/// Hidden when stderr is not a terminal.
async fn show_progress(
    live: Vec<Arc<Mutex<LoadReport>>>,
    duration: Duration,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let bar = indicatif::ProgressBar::new(duration.as_secs().max(1));
    if let Ok(style) = indicatif::ProgressStyle::with_template("  [{bar:30}] {pos}/{len} s  {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let elapsed = start.elapsed();
        bar.set_position(elapsed.as_secs().min(duration.as_secs()));
        let width = interval.as_secs_f64().max(1e-3);
        let settled = (elapsed.as_secs_f64() / width) as usize;
        let (mut recent, mut ok, mut failed) = (Histogram::default(), 0, 0);
        for r in &live {
            let r = r.lock();
            ok += r.completed;
            failed += r.errors.values().sum::<u64>();
            if let Some(i) = settled.checked_sub(2).and_then(|k| r.intervals.get(k)) {
                recent.merge(&i.latency);
            }
        }
        let p95 = if recent.count() > 0 {
            format!("{:.1} ms", recent.quantile(0.95) / 1000.0)
        } else {
            "-".into()
        };
        bar.set_message(format!("p95 {p95}  {ok} ok  {failed} failed"));
    }
    bar.finish_and_clear();
}

/// The scenario's arrival process for one flow, scaled.
fn flow_rate(arrival: &Arrival, seed: u64, scale: f64) -> Rate {
    let state = Mutex::new(ArrivalState::new(arrival.clone(), seed));
    Rate::from_fn(move |t| state.lock().rate_at(t.as_secs_f64()) * scale)
}

/// Rewrites every container's interference file from its host's schedules, every second.
fn follow_interference(
    s: Scenario,
    sup: &Supervisor,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + use<> {
    let targets: Vec<(String, std::path::PathBuf)> = sup
        .placed
        .iter()
        .zip(&sup.interference_files)
        .map(|(p, f)| (p.spec.host.clone(), f.clone()))
        .collect();
    async move {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(INTERFERENCE_TICK);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let t = start.elapsed().as_secs_f64();
            for (host, file) in &targets {
                let Some(h) = s.hosts.iter().find(|h| &h.name == host) else {
                    continue;
                };
                let i = &h.interference;
                let factor = if s.interference.self_load {
                    // The apps add the CPU term themselves, over the host's own load too.
                    let dir = super::configs::host_dir(
                        file.parent().unwrap_or(std::path::Path::new(".")),
                        host,
                    );
                    let _ = std::fs::create_dir_all(&dir);
                    let bg = dir.join(crate::tools::app::host_load::BACKGROUND);
                    if let Err(e) = write_atomically(&bg, &format!("{}\n", i.cpu.at(t))) {
                        tracing::warn!(file = %bg.display(), error = %e, "cannot update background CPU");
                    }
                    s.interference.factor(0.0, i.membw.at(t), i.net.at(t))
                } else {
                    s.interference
                        .factor(i.cpu.at(t), i.membw.at(t), i.net.at(t))
                };
                if let Err(e) = write_atomically(file, &format!("{factor}\n")) {
                    tracing::warn!(file = %file.display(), error = %e, "cannot update interference");
                }
            }
        }
    }
}

/// Polls every app's served counter each interval; returns per-container per-interval deltas.
async fn count_served(
    apps: Vec<SocketAddr>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<Vec<u64>> {
    let pools: Vec<_> = apps
        .iter()
        .map(|&a| Pool::new(a, 1, Duration::from_secs(1)))
        .collect();
    let mut last = vec![0u64; apps.len()];
    let mut out = vec![Vec::new(); apps.len()];
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        let stopped = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        for (i, pool) in pools.iter().enumerate() {
            let now = served(pool).await.unwrap_or(last[i]);
            out[i].push(now.saturating_sub(last[i]));
            last[i] = now.max(last[i]);
        }
        if stopped {
            return out;
        }
    }
}

async fn served(pool: &Arc<Pool>) -> Option<u64> {
    let body = get(pool, STATS_PATH).await?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v["served"].as_u64()
}

/// The body of a successful `GET path`.
pub async fn get(pool: &Arc<Pool>, path: &'static str) -> Option<Vec<u8>> {
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = http::Uri::from_static(path);
    req.headers_mut()
        .insert(HOST, HeaderValue::from_static("localhost"));
    let lease = pool.checkout().await.ok()?;
    let resp = lease.send(req, Duration::from_secs(2)).await.ok()?;
    resp.status().is_success().then(|| resp.body().to_vec())
}

/// Every flow's generator intervals merged, regrouped `per` ticks at a time.
fn merged(m: &Measured, per: usize) -> Vec<loadgen::report::Interval> {
    let n = m.flows.iter().map(|f| f.intervals.len()).max().unwrap_or(0);
    (0..n.div_ceil(per.max(1)))
        .map(|k| {
            let mut out = loadgen::report::Interval::default();
            for f in &m.flows {
                for iv in f.intervals.iter().skip(k * per).take(per) {
                    out.latency.merge(&iv.latency);
                    out.sent += iv.sent;
                    out.completed += iv.completed;
                    out.errors += iv.errors;
                    out.blocked += iv.blocked;
                    out.slow += iv.slow;
                }
            }
            out
        })
        .collect()
}

/// Builds the report's run for this policy; `control` is the planner's interval (one
/// iteration of `converge_iterations`).
#[allow(clippy::too_many_arguments)]
pub fn policy_run(
    s: &Scenario,
    layout: &Layout,
    sup: &Supervisor,
    m: &Measured,
    policy: &str,
    duration: Duration,
    interval: Duration,
    control: Duration,
) -> PolicyRun {
    let tick = m.tick.as_secs_f64();
    let per = ((interval.as_secs_f64() / tick).round() as usize).max(1);
    let by_interval = merged(m, per);
    let n = by_interval.len();
    let warm = s.warmup_s.max(0.0);
    let width = interval.as_secs_f64();
    let containers: BTreeMap<String, u32> = layout.kept.clone();
    let mut counted = Histogram::default();
    let mut counts = Counts::default();
    let (mut slow, mut failed_counted, mut blocked_counted, mut offered_counted) =
        (0u64, 0u64, 0u64, 0u64);
    let mut intervals = Vec::with_capacity(n);
    for (k, iv) in by_interval.iter().enumerate() {
        let h = &iv.latency;
        let (sent, done, errs, blocked, slw) =
            (iv.sent, iv.completed, iv.errors, iv.blocked, iv.slow);
        if k as f64 * width >= warm {
            counted.merge(h);
            offered_counted += sent;
            slow += slw;
            failed_counted += errs - blocked;
            blocked_counted += blocked;
        }
        let (host_share, service_host_share) = shares(sup, m, k);
        intervals.push(Interval {
            t_s: (k + 1) as f64 * width,
            requests: done,
            p50_ms: h.quantile(0.5) / 1000.0,
            p95_ms: h.quantile(0.95) / 1000.0,
            p99_ms: h.quantile(0.99) / 1000.0,
            host_share,
            service_host_share,
            containers: containers.clone(),
            zone_rtt_ms: m.zone_rtt.get(k).cloned().unwrap_or_default(),
        });
    }
    let converge = converge(s, m, duration, control);
    for f in &m.flows {
        let errors: u64 = f.errors.values().sum();
        let blocked = f
            .errors
            .get(&loadgen::ErrorClass::Status503)
            .copied()
            .unwrap_or(0);
        counts.offered += f.sent;
        counts.completed += f.completed;
        counts.blocked += blocked;
        counts.unfinished += f.sent.saturating_sub(f.completed + errors);
        counts.failed += errors - blocked + f.sent.saturating_sub(f.completed + errors);
    }
    counts.calls = m.served.iter().flatten().sum();
    let not_blocked = offered_counted.saturating_sub(blocked_counted);
    let counted_s = (duration.as_secs_f64() - warm).max(0.0);
    let summary = PolicySummary {
        mean_ms: mean_ms(&counted),
        p50_ms: counted.quantile(0.5) / 1000.0,
        p90_ms: counted.quantile(0.9) / 1000.0,
        p95_ms: counted.quantile(0.95) / 1000.0,
        p99_ms: counted.quantile(0.99) / 1000.0,
        sla_violation_pct: pct(slow + failed_counted, not_blocked),
        blocked_pct: pct(blocked_counted, offered_counted),
        container_seconds: f64::from(containers.values().sum::<u32>()) * counted_s,
        converge_iterations: converge,
        // Not judged in the lab: it keeps no per-flow tallies per interval.
        sla_met_at_s: None,
        plan_pushes: m.plan_pushes.unwrap_or(0),
        requests: offered_counted,
        anr: None,
        hpa_target: None,
        // Not split by flow in the lab yet.
        flows: BTreeMap::new(),
    };
    PolicyRun {
        policy: policy.to_string(),
        summary,
        counts,
        intervals,
    }
}

/// `converge_iterations` over planner iterations of `control` lying wholly inside the run, as in
/// the simulator.
fn converge(s: &Scenario, m: &Measured, duration: Duration, control: Duration) -> Option<u32> {
    let per = ((control.as_secs_f64() / m.tick.as_secs_f64()).round() as usize).max(1);
    let mut iterations: Vec<Histogram> = merged(m, per).into_iter().map(|iv| iv.latency).collect();
    let control_s = control.as_secs_f64().max(1e-3);
    iterations.truncate((duration.as_secs_f64() / control_s) as usize);
    let n = iterations.len();
    if n == 0 {
        return None;
    }
    let mut tail = Histogram::default();
    for h in &iterations[n - n.div_ceil(4)..] {
        tail.merge(h);
    }
    let onset = (onset_s(s, 0.75 * duration.as_secs_f64()) / control_s) as usize;
    // Each iteration pooled with the ones before it, as the simulator does.
    let since_onset: Vec<(f64, usize)> = (onset.min(n - 1)..n)
        .map(|i| {
            let mut pooled = Histogram::default();
            for h in &iterations[i.saturating_sub(CONVERGE_POOL - 1)..=i] {
                pooled.merge(h);
            }
            let count = usize::try_from(pooled.count()).unwrap_or(usize::MAX);
            (pooled.quantile(0.95), count)
        })
        .collect();
    converged_after(&since_onset, tail.quantile(0.95))
}

/// Mean of the histogram's latencies in ms: the integral of its quantile function, taken at 1000
/// evenly spaced ranks (the histogram keeps counts, not sums; each value is within its 6.25 %).
fn mean_ms(h: &Histogram) -> f64 {
    const RANKS: u32 = 1000;
    let sum: f64 = (0..RANKS)
        .map(|i| h.quantile((f64::from(i) + 0.5) / f64::from(RANKS)))
        .sum();
    sum / f64::from(RANKS) / 1000.0
}

fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

type Shares = (
    BTreeMap<String, f64>,
    BTreeMap<String, BTreeMap<String, f64>>,
);

/// Share of all calls per host, and of each service's calls per host, in interval `k`.
fn shares(sup: &Supervisor, m: &Measured, k: usize) -> Shares {
    let mut by_host: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_service: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (p, series) in sup.placed.iter().zip(&m.served) {
        let n = series.get(k).copied().unwrap_or(0);
        *by_host.entry(p.spec.host.clone()).or_default() += n;
        *by_service
            .entry(p.spec.service.clone())
            .or_default()
            .entry(p.spec.host.clone())
            .or_default() += n;
    }
    let norm = |m: BTreeMap<String, u64>| {
        let total: u64 = m.values().sum();
        m.into_iter()
            .map(|(k, v)| {
                (
                    k,
                    if total == 0 {
                        0.0
                    } else {
                        v as f64 / total as f64
                    },
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    let services = by_service.into_iter().map(|(s, m)| (s, norm(m))).collect();
    (norm(by_host), services)
}

/// The flows through a managed service: those entering at it, or whose entry service calls it.
fn flows_through(s: &Scenario, svc: &str) -> Vec<usize> {
    s.flows
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            f.entry == svc
                || s.services
                    .iter()
                    .find(|x| x.name == f.entry)
                    .is_some_and(|e| e.calls.iter().any(|c| c.service == svc))
        })
        .map(|(i, _)| i)
        .collect()
}

/// One step of the objective planner's trace over the generator ticks `ticks`: per managed
/// service, the requests of the flows through it (sent by intended send time in those ticks):
/// offered = sent, carried = sent less the 503s of blocking, `d` = the mean end-to-end latency of
/// the successful ones. The action is left empty (all shares 0, no blocking) for the caller.
/// The simulator's `d` is the front's call latency; here the gateway, the entry app and two more
/// proxies add a few milliseconds.
pub fn steps_over(
    s: &Scenario,
    m: &Measured,
    services: &[loadshift_policy::planners::objective::space::ManagedService],
    ticks: std::ops::Range<usize>,
) -> loadshift_policy::planners::objective::model::TraceStep {
    use loadshift_policy::planners::objective::{
        model::{StepService, TraceStep},
        space::ServiceAction,
    };
    let tick = m.tick.as_secs_f64();
    let width = ticks.len() as f64 * tick;
    TraceStep {
        t_s: ticks.end as f64 * tick,
        services: services
            .iter()
            .map(|svc| {
                let (mut sent, mut blocked, mut h) = (0u64, 0u64, Histogram::default());
                for i in flows_through(s, &svc.name) {
                    for iv in m.flows[i].intervals.get(ticks.clone()).unwrap_or_default() {
                        sent += iv.sent;
                        blocked += iv.blocked;
                        h.merge(&iv.latency);
                    }
                }
                StepService {
                    offered_rps: sent as f64 / width,
                    carried_rps: sent.saturating_sub(blocked) as f64 / width,
                    mean_ms: (h.count() > 0).then(|| mean_ms(&h)),
                    action: ServiceAction {
                        shares: vec![0.0; svc.hosts.len()],
                        block: 0.0,
                    },
                }
            })
            .collect(),
    }
}

/// The objective planner's steps as the generator measured them: per 5 s step (the generator's
/// intervals regrouped), [`steps_over`]. Steps before the warm-up and the last one (requests
/// still in flight) are left out.
pub fn objective_steps(
    s: &Scenario,
    m: &Measured,
    services: &[loadshift_policy::planners::objective::space::ManagedService],
) -> Vec<loadshift_policy::planners::objective::model::TraceStep> {
    let step_s = loadshift_sim::objective::STEP_S;
    let per = ((step_s / m.tick.as_secs_f64()).round() as usize).max(1);
    let width = m.tick.as_secs_f64() * per as f64;
    let n = m.flows.iter().map(|f| f.intervals.len()).min().unwrap_or(0) / per;
    (0..n.saturating_sub(1))
        .filter(|k| *k as f64 * width >= s.warmup_s)
        .map(|k| steps_over(s, m, services, k * per..(k + 1) * per))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per 5 s step and managed service: the flow that calls it, sent, sent less 503s, and the
    /// mean of its successes; the warm-up and the last step left out.
    #[test]
    fn objective_steps_come_from_the_flows_that_call_each_service() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios/mesh-two-services-sin.yaml"
        );
        let s = Scenario::load(std::path::Path::new(path)).unwrap();
        let (_, services) = loadshift_sim::objective::managed(&s).unwrap();
        let flow = |sent: u64, blocked: u64, ms: u64| {
            let mut iv = loadgen::report::Interval {
                sent,
                completed: sent - blocked,
                errors: blocked,
                blocked,
                ..Default::default()
            };
            for _ in 0..sent - blocked {
                iv.latency.record(ms * 1000);
            }
            iv
        };
        // Ticks of 5 s: 0-5 and 5-10 are the warm-up, the last one is dropped.
        let report = |blocked: u64, ms: u64| LoadReport {
            intervals: (0..5).map(|_| flow(50, blocked, ms)).collect(),
            ..Default::default()
        };
        let m = Measured {
            flows: vec![report(0, 40), report(10, 100)],
            served: Vec::new(),
            tick: Duration::from_secs(5),
            plan_pushes: None,
            zone_rtt: Vec::new(),
        };
        let steps = objective_steps(&s, &m, &services);
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert_eq!(steps[0].t_s, 15.0);
        let (s1, s2) = (&steps[0].services[0], &steps[0].services[1]);
        assert_eq!((s1.offered_rps, s1.carried_rps), (10.0, 10.0));
        assert_eq!((s2.offered_rps, s2.carried_rps), (10.0, 8.0));
        assert!((s1.mean_ms.unwrap() - 40.0).abs() < 40.0 * 0.07, "{s1:?}");
        assert!((s2.mean_ms.unwrap() - 100.0).abs() < 100.0 * 0.07, "{s2:?}");
    }

    #[test]
    fn ticks_divide_both_intervals() {
        let s = Duration::from_secs;
        assert_eq!(tick(s(5), s(5)), s(5));
        assert_eq!(tick(s(10), s(5)), s(5));
        assert_eq!(tick(s(5), s(2)), s(1));
        assert_eq!(
            tick(Duration::from_millis(250), s(5)),
            Duration::from_millis(250)
        );
        // Never finer than 100 ms.
        assert_eq!(
            tick(Duration::from_millis(1001), s(1)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn histogram_mean_is_within_its_resolution() {
        let mut h = Histogram::default();
        assert_eq!(mean_ms(&h), 0.0);
        // 10, 20, ..., 1000 ms: mean 505 ms.
        for k in 1..=100u64 {
            h.record(k * 10_000);
        }
        let m = mean_ms(&h);
        assert!((m - 505.0).abs() < 0.0625 * 505.0, "{m}");
    }

    #[test]
    fn sums_a_counter_over_its_label_sets_only() {
        let text = "# TYPE loadshift_control_plan_pushes_total counter\n\
                    loadshift_control_plan_pushes_total{kind=\"full\"} 12\n\
                    loadshift_control_plan_pushes_total{kind=\"delta\"} 30\n\
                    loadshift_control_plan_pushes_total_other 99\n\
                    loadshift_control_plan_acks_total 40\n";
        assert_eq!(
            prometheus_sum(text, "loadshift_control_plan_pushes_total"),
            42.0
        );
        assert_eq!(prometheus_sum(text, "loadshift_control_missing"), 0.0);
    }
}
