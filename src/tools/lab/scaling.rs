//! Scaler actuation in the lab: the real scaler in the real control plane decides, the lab
//! carries it out.
//!
//! When any service has a scaler other than `none` (the scenario's `policy`, or `--scaler`), the
//! lab's control plane runs with
//! - `actuator: webhook` for every kind of decision (replicas, limits, brownout), pointed at the
//!   receiver ([`super::receiver`]) this module serves on `127.0.0.1:0`: replica counts start and
//!   stop containers, a CPU limit sets the emulated app's concurrency, a brownout takes an
//!   optional service to zero containers and back;
//! - `discovery: {file}` over the endpoints file the fleet ([`super::fleet`]) rewrites, polled
//!   every [`POLL`], so callers learn about new replicas and stop sending to leaving ones before
//!   they stop;
//! - `scale_interval_ms` from `--scale-interval-s` and, for `hpa`, `scaler_settings` with the
//!   container's capacity (the scenario's `concurrency`) and `max_replicas` (`--max-replicas`);
//!   for `imbres`, `queueflower` and `avg` their `interval_ms` from `--scale-interval-s` too, and
//!   for `imbres` `max_replicas`, `cooldown_ms` (two scale intervals, as the defaults' 60 s and
//!   120 s) and `servers_per_container` (the lowest `concurrency` of the scenario's services: its
//!   settings are per application).
//!
//! The fleet never goes below one container per service (but for a browned-out optional service),
//! nor above `--max-replicas` per service or `--max-containers` in all. Replicas' served requests are polled here every report interval
//! (the run polls the initial containers), and [`patch_run`] rewrites the report's containers
//! over time, container-seconds (real process lifetimes) and load shares to include them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use http::Request;
use http::header::{HOST, HeaderValue};
use http_body_util::Empty;
use loadshift_control::ControlConfig;
use loadshift_sim::report::PolicyRun;
use loadshift_sim::scenario::Scenario;
use parking_lot::Mutex;
use serde_json::Value;

use super::configs::{ControlEdit, Placed};
use super::fleet::{Fleet, FleetBase, Timeline};
use super::receiver::{Slot, receive};
use super::relay::RelayHandle;
use super::supervisor::Supervisor;
use crate::tools::app::server::STATS_PATH;
use crate::tools::support::Pool;

/// How often the control plane re-reads the endpoints file.
pub const POLL: Duration = Duration::from_millis(250);

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct ScalingOptions {
    /// Scaler for every service (overrides the scenario).
    pub scaler: Option<String>,
    /// Scale loop period.
    pub interval: Duration,
    /// Most containers per service.
    pub max_replicas: u32,
    /// Most containers in all.
    pub max_containers: usize,
    /// HPA scale-down stabilisation window.
    pub scale_down_window: Duration,
}

impl ScalingOptions {
    /// Each service's scaler.
    pub fn scalers(&self, s: &Scenario) -> BTreeMap<String, String> {
        s.services
            .iter()
            .map(|svc| {
                let sc = self
                    .scaler
                    .clone()
                    .unwrap_or_else(|| s.scaler_for(&svc.name).to_string());
                (svc.name.clone(), sc)
            })
            .collect()
    }

    /// Whether any service scales.
    pub fn active(&self, s: &Scenario) -> bool {
        self.scalers(s).values().any(|n| n != "none")
    }

    /// The report's policy suffix (`+hpa`), empty when nothing scales.
    pub fn suffix(&self, s: &Scenario) -> String {
        let names: std::collections::BTreeSet<String> = self
            .scalers(s)
            .into_values()
            .filter(|n| n != "none")
            .collect();
        if names.is_empty() {
            String::new()
        } else {
            format!("+{}", names.into_iter().collect::<Vec<_>>().join("+"))
        }
    }
}

/// What the fleet ran, once it is stopped.
pub struct Ran {
    pub timeline: Timeline,
    /// Per replica (position in `replicas`): requests served per report interval.
    pub replica_served: BTreeMap<usize, Vec<u64>>,
    pub replicas: Vec<Placed>,
}

/// The receiver and everything the control-plane config needs; one per lab run.
pub struct Scaling {
    opts: ScalingOptions,
    url: String,
    endpoints_file: PathBuf,
    slot: Slot,
    server: tokio::task::JoinHandle<()>,
    /// Per replica (fleet index): requests served per report interval.
    replica_served: Arc<Mutex<BTreeMap<usize, Vec<u64>>>>,
    counter: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Scaling {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(c) = &self.counter {
            c.abort();
        }
        if let Some(f) = self.slot.lock().take() {
            f.shutdown();
        }
    }
}

impl Scaling {
    /// The scaling of one run: `None` when no service scales (the control plane then keeps its
    /// dry-run actuator and static endpoints).
    pub async fn for_run(
        opts: &ScalingOptions,
        s: &Scenario,
        dir: &std::path::Path,
    ) -> anyhow::Result<Option<Self>> {
        if !opts.active(s) {
            return Ok(None);
        }
        Ok(Some(Self::serve(opts.clone(), dir).await?))
    }

    /// Serves the receiver on `127.0.0.1:0`; the endpoints file goes in `dir`.
    pub async fn serve(opts: ScalingOptions, dir: &std::path::Path) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the scale receiver")?;
        let addr = listener.local_addr()?;
        let slot: Slot = Arc::default();
        let server = tokio::spawn(receive(listener, slot.clone()));
        Ok(Self {
            opts,
            url: format!("http://{addr}/scale"),
            endpoints_file: dir.join("endpoints.yaml"),
            slot,
            server,
            replica_served: Arc::default(),
            counter: None,
        })
    }

    /// What the supervisor applies to the control-plane config before the control plane starts:
    /// each service's scaler, the HPA's tunables from the lab's options.
    pub fn control_edit(&self, s: &Scenario) -> ControlEdit {
        let names = self.opts.scalers(s);
        let min_concurrency = s
            .services
            .iter()
            .map(|svc| svc.concurrency.max(1))
            .min()
            .unwrap_or(1);
        let scalers = s
            .services
            .iter()
            .map(|svc| {
                let name = names.get(&svc.name).cloned().unwrap_or_default();
                let mut settings = s
                    .policy
                    .services
                    .get(&svc.name)
                    .and_then(|p| p.scaler_settings.clone())
                    .unwrap_or_else(|| s.policy.scaler_settings.clone());
                let interval_ms = self.opts.interval.as_millis().max(1) as u64;
                // The application-wide scalers take one settings block per application (the
                // first of its services'); every service gets the same values here.
                settings.imbres.max_replicas = self.opts.max_replicas.max(1);
                settings.imbres.min_replicas = settings
                    .imbres
                    .min_replicas
                    .min(settings.imbres.max_replicas);
                settings.imbres.servers_per_container = f64::from(min_concurrency);
                settings.imbres.interval_ms = interval_ms;
                // The lab compresses time: the cool-down keeps the defaults' two rounds.
                settings.imbres.cooldown_ms = 2 * interval_ms;
                settings.queueflower.interval_ms = interval_ms;
                settings.avg.interval_ms = interval_ms;
                if name == "hpa" {
                    let hpa = &mut settings.hpa;
                    hpa.capacity = f64::from(svc.concurrency.max(1));
                    hpa.max_replicas = self.opts.max_replicas.max(1);
                    hpa.interval_ms = self.opts.interval.as_millis().max(1) as u64;
                    hpa.scale_down_stabilization_ms =
                        self.opts.scale_down_window.as_millis() as u64;
                }
                (svc.name.clone(), (name, settings))
            })
            .collect();
        ControlEdit {
            url: self.url.clone(),
            endpoints_file: self.endpoints_file.clone(),
            poll: POLL,
            scalers,
        }
    }

    /// Takes the containers over from `sup` and starts answering decisions; `relays` (started
    /// already) gives replicas their zone relays.
    pub fn attach(
        &mut self,
        s: &Scenario,
        sup: &mut Supervisor,
        dir: &std::path::Path,
        me: &std::path::Path,
        relays: Option<RelayHandle>,
    ) -> anyhow::Result<()> {
        let control = ControlConfig::load(&dir.join("control.yaml"))
            .context("read the lab's control config")?;
        let base = FleetBase {
            scenario: s.clone(),
            dir: dir.to_path_buf(),
            me: me.to_path_buf(),
            control: control.listen,
            token: control.token_file.clone(),
            endpoints_file: self.endpoints_file.clone(),
            max_per_service: self.opts.max_replicas.max(1),
            max_total: self.opts.max_containers,
            // A poll, a push, and the work already queued at the container.
            drain: POLL * 2 + Duration::from_millis(1500),
            relays,
        };
        let addrs: BTreeMap<String, std::net::SocketAddr> = control
            .services
            .values()
            .flat_map(|svc| &svc.endpoints)
            .filter_map(|e| Some((e.container.clone()?, e.addr)))
            .collect();
        *self.slot.lock() = Some(Arc::new(Fleet::adopt(base, sup, &addrs)));
        Ok(())
    }

    fn fleet(&self) -> Option<Arc<Fleet>> {
        self.slot.lock().clone()
    }

    /// Starts counting replicas' served requests every `interval` from now (call it as the load
    /// starts, so intervals line up with the run's).
    pub fn start_counting(&mut self, interval: Duration) -> Instant {
        let epoch = Instant::now();
        if let Some(fleet) = self.fleet() {
            self.counter = Some(tokio::spawn(count_replicas(
                fleet,
                interval,
                self.replica_served.clone(),
            )));
        }
        epoch
    }

    /// Fails if a live container's process exited.
    pub fn check_alive(&self) -> anyhow::Result<()> {
        self.fleet().map_or(Ok(()), |f| f.check_alive())
    }

    /// Stops every container and rewrites `run` from what the fleet really ran (see
    /// [`patch_run`]); the policy gets the scaler suffix (`even+hpa`).
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        &mut self,
        s: &Scenario,
        run: &mut PolicyRun,
        originals: &[Placed],
        served: &[Vec<u64>],
        epoch: Instant,
        interval: Duration,
        duration: Duration,
    ) {
        let suffix = self.opts.suffix(s);
        let Some(Ran {
            timeline,
            replica_served,
            replicas,
        }) = self.shutdown()
        else {
            return;
        };
        patch_run(
            run,
            &FleetRecord {
                timeline: &timeline,
                originals: (originals, served),
                replicas: (&replicas, &replica_served),
                epoch,
                interval,
                warmup: Duration::from_secs_f64(s.warmup_s.max(0.0)),
                duration,
            },
        );
        run.policy.push_str(&suffix);
    }

    /// Stops the receiver and every container process.
    pub fn shutdown(&mut self) -> Option<Ran> {
        self.server.abort();
        if let Some(c) = self.counter.take() {
            c.abort();
        }
        let fleet = self.slot.lock().take()?;
        let replicas = fleet.replica_apps();
        fleet.shutdown();
        let mut placed = Vec::new();
        let mut served = BTreeMap::new();
        let counted = self.replica_served.lock().clone();
        for (k, (i, p)) in replicas.into_iter().enumerate() {
            placed.push(p);
            served.insert(k, counted.get(&i).cloned().unwrap_or_default());
        }
        Some(Ran {
            timeline: fleet.timeline(),
            replica_served: served,
            replicas: placed,
        })
    }
}

/// Every `interval`, each replica's requests served since the last tick (a replica that joins
/// late gets zeros for the intervals before it).
async fn count_replicas(
    fleet: Arc<Fleet>,
    interval: Duration,
    out: Arc<Mutex<BTreeMap<usize, Vec<u64>>>>,
) {
    let mut pools: BTreeMap<usize, (Arc<Pool>, u64)> = BTreeMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    let mut k = 0usize;
    loop {
        tick.tick().await;
        k += 1;
        for (i, p) in fleet.replica_apps() {
            let (pool, last) = pools
                .entry(i)
                .or_insert_with(|| (Pool::new(p.ports.app, 1, Duration::from_secs(1)), 0));
            let now = served(pool).await.unwrap_or(*last);
            let mut o = out.lock();
            let series = o.entry(i).or_default();
            series.resize(k - 1, 0);
            series.push(now.saturating_sub(*last));
            *last = now.max(*last);
        }
    }
}

async fn served(pool: &Arc<Pool>) -> Option<u64> {
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = http::Uri::from_static(STATS_PATH);
    req.headers_mut()
        .insert(HOST, HeaderValue::from_static("app"));
    let lease = pool.checkout().await.ok()?;
    let resp = lease.send(req, Duration::from_secs(1)).await.ok()?;
    let v: Value = serde_json::from_slice(resp.body()).ok()?;
    v["served"].as_u64()
}

/// What a run measured about its containers, for [`patch_run`].
pub struct FleetRecord<'a> {
    pub timeline: &'a Timeline,
    /// Initial containers and their served series (the run's own counting).
    pub originals: (&'a [Placed], &'a [Vec<u64>]),
    /// Replicas and their served series.
    pub replicas: (&'a [Placed], &'a BTreeMap<usize, Vec<u64>>),
    /// When the load started.
    pub epoch: Instant,
    pub interval: Duration,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Rewrites the report's containers per interval, container-seconds, calls and load shares from
/// what the fleet really ran.
pub fn patch_run(run: &mut PolicyRun, r: &FleetRecord<'_>) {
    let at = |t: Duration| r.epoch + t;
    let secs = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64();
    let (from, to) = (at(r.warmup.min(r.duration)), at(r.duration));
    let mut container_s = 0.0;
    for (_, joined, _, stopped) in r.timeline {
        let a = joined.unwrap_or(from).max(from);
        let b = stopped.unwrap_or(to).min(to);
        container_s += secs(a, b);
    }
    run.summary.container_seconds = container_s;
    let width = r.interval;
    for (k, iv) in run.intervals.iter_mut().enumerate() {
        let end = at(width * (k as u32 + 1));
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for (svc, joined, left, _) in r.timeline {
            let here = joined.is_none_or(|j| j <= end) && left.is_none_or(|l| l > end);
            // A browned-out service counts 0, not missing.
            *counts.entry(svc.clone()).or_insert(0) += u32::from(here);
        }
        iv.containers = counts;
        let mut by_host: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_service: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let originals = r.originals.0.iter().zip(r.originals.1.iter());
        let replicas = r
            .replicas
            .0
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((p, r.replicas.1.get(&i)?)));
        for (p, series) in originals.chain(replicas) {
            let n = series.get(k).copied().unwrap_or(0);
            *by_host.entry(p.spec.host.clone()).or_default() += n;
            *by_service
                .entry(p.spec.service.clone())
                .or_default()
                .entry(p.spec.host.clone())
                .or_default() += n;
        }
        iv.host_share = norm(by_host);
        iv.service_host_share = by_service.into_iter().map(|(s, m)| (s, norm(m))).collect();
    }
    run.counts.calls =
        r.originals.1.iter().flatten().sum::<u64>() + r.replicas.1.values().flatten().sum::<u64>();
}

fn norm(m: BTreeMap<String, u64>) -> BTreeMap<String, f64> {
    let total: u64 = m.values().sum();
    m.into_iter()
        .map(|(k, v)| {
            let share = if total == 0 {
                0.0
            } else {
                v as f64 / total as f64
            };
            (k, share)
        })
        .collect()
}

/// The receiver address, for logs.
impl std::fmt::Debug for Scaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaling").field("url", &self.url).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::tools::lab::configs::Ports;

    /// The layout's container of `service` on `host` in a two-host scenario.
    fn placed(service: &str, host: &str) -> Placed {
        let yaml = "name: t\nduration_s: 10\nhosts: [{name: h1}, {name: h2}]\nservices:\n  - name: api\n    \
                    service_time: {dist: constant, mean_ms: 1}\n    replicas: {h1: 1, h2: 1}\n\
                    flows:\n  - {name: f, entry: api, arrival: {process: constant, rate: 1}, \
                    sla: {latency_ms: 10}}\n";
        let sc = Scenario::parse(yaml, None).expect("scenario");
        let layout = crate::tools::lab::layout::layout(&sc, 600.0, 10).expect("layout");
        let spec = layout
            .containers
            .into_iter()
            .find(|c| c.service == service && c.host == host)
            .expect("container");
        let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        Placed {
            spec,
            ports: Ports {
                app: a,
                inbound: a,
                outbound: a,
                admin: a,
            },
        }
    }

    #[test]
    fn report_counts_replicas_and_their_lifetimes() {
        let epoch = Instant::now();
        let s = Duration::from_secs;
        // One initial container for the whole 10 s; a replica from 4 s to 8 s (left at 7 s).
        let timeline: Timeline = vec![
            ("api".into(), None, None, None),
            (
                "api".into(),
                Some(epoch + s(4)),
                Some(epoch + s(7)),
                Some(epoch + s(8)),
            ),
        ];
        let originals = [placed("api", "h1")];
        let orig_served = [vec![10u64; 5]];
        let replicas = [placed("api", "h2")];
        let rep_served: BTreeMap<usize, Vec<u64>> = [(0, vec![0, 0, 10, 30])].into();
        let mut run = PolicyRun {
            policy: "p".into(),
            summary: Default::default(),
            counts: Default::default(),
            intervals: vec![Default::default(); 5],
        };
        patch_run(
            &mut run,
            &FleetRecord {
                timeline: &timeline,
                originals: (&originals, &orig_served),
                replicas: (&replicas, &rep_served),
                epoch,
                interval: s(2),
                warmup: s(2),
                duration: s(10),
            },
        );
        // 8 s of the initial container after warm-up plus 4 s of the replica.
        assert!((run.summary.container_seconds - 12.0).abs() < 1e-6);
        let n: Vec<u32> = run.intervals.iter().map(|i| i.containers["api"]).collect();
        assert_eq!(n, [1, 2, 2, 1, 1]);
        assert!((run.intervals[3].host_share["h2"] - 0.75).abs() < 1e-9);
        assert_eq!(run.counts.calls, 90);
    }
}
