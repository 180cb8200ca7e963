//! The lab's containers as a fleet that grows and shrinks: the actuation side of scaling.
//!
//! After start-up the fleet takes over every container's processes (app + sidecar) from the
//! supervisor, so it can stop any of them, and starts new replicas on demand:
//! - scale-up: per new replica four reserved loopback ports, the app (`loadshift app` with the
//!   service's arguments and the interference file of its host, which the run keeps following),
//!   then its sidecar (knowing every live container), each waited on until it listens; then the
//!   endpoints file is rewritten and the control plane's file discovery sends the new endpoint to
//!   every caller. New replicas go to the service's hosts with the fewest of its containers.
//! - scale-down: the newest containers first, never the last one. Each leaves the endpoints file
//!   first; after [`Fleet::drain`] (discovery poll + push + the work queued at it) its sidecar
//!   gets SIGTERM (it finishes open requests, then exits; killed after 3 s), then its app stops.
//!
//! Every start, leave and stop is timed, which gives the report its containers over time and
//! container-seconds. Dropping the fleet (or [`Fleet::shutdown`]) kills everything it owns; a
//! scale-up racing a shutdown kills what it started.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use loadshift_control::config::EndpointConfig;
use loadshift_sim::scenario::Scenario;
use parking_lot::Mutex;

use super::configs::{self, Placed, Ports};
use super::supervisor::Supervisor;
use crate::tools::support::process::Guard;
use crate::tools::support::write_atomically;

/// Fixed facts every resize needs.
#[derive(Debug, Clone)]
pub struct FleetBase {
    pub scenario: Scenario,
    /// Where configs and logs go.
    pub dir: PathBuf,
    /// The `loadshift` binary.
    pub me: PathBuf,
    /// Control plane proxy API and its token file.
    pub control: SocketAddr,
    pub token: PathBuf,
    /// The file the control plane's discovery reads.
    pub endpoints_file: PathBuf,
    /// Most containers per service.
    pub max_per_service: u32,
    /// Most containers in the whole lab.
    pub max_total: usize,
    /// How long a leaving container keeps its processes after leaving discovery.
    pub drain: Duration,
}

/// One container, live or gone.
#[derive(Debug)]
pub struct Member {
    pub placed: Placed,
    /// Its address in discovery (the sidecar's inbound listener, or what the control plane was
    /// first given for it).
    pub addr: SocketAddr,
    pub interference: PathBuf,
    /// Part of the initial layout (its served requests are counted by the run itself).
    pub original: bool,
    /// When it joined (`None`: before the fleet existed).
    pub started: Option<Instant>,
    /// When it left discovery.
    pub left: Option<Instant>,
    /// When its processes were stopped.
    pub stopped: Option<Instant>,
    /// Sidecar first, then app, so stopping in order lets the sidecar drain.
    guards: Vec<Guard>,
}

impl Member {
    pub fn live(&self) -> bool {
        self.left.is_none()
    }
}

#[derive(Debug, Default)]
struct Inner {
    members: Vec<Member>,
    closed: bool,
    next: u32,
}

/// Containers of a lab run.
#[derive(Debug)]
pub struct Fleet {
    base: FleetBase,
    inner: Mutex<Inner>,
    /// Serialises resizes (decisions arrive one at a time anyway).
    ops: Mutex<()>,
}

/// `(service, joined, left, stopped)` of every container; `None` joined = from the start,
/// `None` left / stopped = still there.
pub type Timeline = Vec<(String, Option<Instant>, Option<Instant>, Option<Instant>)>;

impl Fleet {
    /// Takes every container's app and sidecar guards out of `sup` (the control plane and the
    /// gateway stay there). `addrs` maps container names to their address in the endpoints file
    /// as the control plane started with it (default: the sidecar's inbound listener).
    pub fn adopt(
        base: FleetBase,
        sup: &mut Supervisor,
        addrs: &BTreeMap<String, SocketAddr>,
    ) -> Self {
        let mut members = Vec::new();
        for (p, file) in sup.placed.iter().zip(&sup.interference_files) {
            let names = [
                format!("sidecar-{}", p.spec.name),
                format!("app-{}", p.spec.name),
            ];
            let mut guards = Vec::new();
            for n in &names {
                if let Some(i) = sup.processes.iter().position(|g| g.name() == n) {
                    guards.push(sup.processes.remove(i));
                }
            }
            members.push(Member {
                addr: addrs.get(&p.spec.name).copied().unwrap_or(p.ports.inbound),
                placed: p.clone(),
                interference: file.clone(),
                original: true,
                started: None,
                left: None,
                stopped: None,
                guards,
            });
        }
        Self {
            base,
            inner: Mutex::new(Inner {
                members,
                closed: false,
                next: 1,
            }),
            ops: Mutex::new(()),
        }
    }

    /// Live containers per service.
    pub fn counts(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for m in self.inner.lock().members.iter().filter(|m| m.live()) {
            *out.entry(m.placed.spec.service.clone()).or_insert(0) += 1;
        }
        out
    }

    pub fn timeline(&self) -> Timeline {
        self.inner
            .lock()
            .members
            .iter()
            .map(|m| (m.placed.spec.service.clone(), m.started, m.left, m.stopped))
            .collect()
    }

    /// Apps of containers the fleet started (not the initial ones), in start order, with the
    /// index each keeps for the whole run.
    pub fn replica_apps(&self) -> Vec<(usize, Placed)> {
        self.inner
            .lock()
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.original)
            .map(|(i, m)| (i, m.placed.clone()))
            .collect()
    }

    /// Fails if a live container's process has exited.
    pub fn check_alive(&self) -> anyhow::Result<()> {
        let mut inner = self.inner.lock();
        for m in inner.members.iter_mut().filter(|m| m.left.is_none()) {
            for g in &mut m.guards {
                if !g.is_running() {
                    bail!("{} exited during the run; log:\n{}", g.name(), g.log_tail());
                }
            }
        }
        Ok(())
    }

    /// Brings `service` to `want` containers, within `[1, bound]`; returns the count reached.
    pub fn resize(&self, service: &str, want: u32) -> anyhow::Result<u32> {
        let _op = self.ops.lock();
        let (cur, total) = {
            let inner = self.inner.lock();
            if inner.closed {
                bail!("the lab is stopping");
            }
            let live = inner.members.iter().filter(|m| m.live());
            let cur = live
                .clone()
                .filter(|m| m.placed.spec.service == service)
                .count();
            (cur, live.count())
        };
        if cur == 0 {
            bail!("unknown service {service:?}");
        }
        let room = self.base.max_total.saturating_sub(total) + cur;
        let bound = u32::try_from(room)
            .unwrap_or(u32::MAX)
            .min(self.base.max_per_service)
            .max(1);
        let target = want.clamp(1, bound) as usize;
        if target > cur {
            for _ in cur..target {
                self.start_one(service)?;
            }
            self.write_endpoints()?;
        } else if target < cur {
            self.stop_newest(service, cur - target)?;
        }
        Ok(self.counts().get(service).copied().unwrap_or(0))
    }

    /// Starts one replica of `service` and registers it (not yet in the endpoints file).
    fn start_one(&self, service: &str) -> anyhow::Result<()> {
        let b = &self.base;
        let (spec, interference, peers, n) = {
            let mut inner = self.inner.lock();
            // The service's host with the fewest of its live containers; the initial layout put
            // at least one container of the service on each of its hosts.
            let mut per_host: BTreeMap<&str, (usize, &Member)> = BTreeMap::new();
            for m in inner
                .members
                .iter()
                .filter(|m| m.placed.spec.service == service)
            {
                let e = per_host.entry(&m.placed.spec.host).or_insert((0, m));
                if m.live() {
                    e.0 += 1;
                }
                if m.original {
                    e.1 = m;
                }
            }
            let (_, model) = per_host
                .values()
                .min_by_key(|(n, _)| *n)
                .copied()
                .context("no container to copy")?;
            let mut spec = model.placed.spec.clone();
            let interference = model.interference.clone();
            let n = inner.next;
            inner.next += 1;
            spec.name = format!("{}-{}-r{n}", spec.service, spec.host);
            let peers: Vec<Placed> = inner
                .members
                .iter()
                .filter(|m| m.live())
                .map(|m| m.placed.clone())
                .collect();
            (spec, interference, peers, n)
        };
        let mut hold: Vec<TcpListener> = (0..4)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()
            .context("reserve loopback ports")?;
        let addr = |i: usize| hold[i].local_addr();
        let placed = Placed {
            spec,
            ports: Ports {
                app: addr(0)?,
                inbound: addr(1)?,
                outbound: addr(2)?,
                admin: addr(3)?,
            },
        };
        let mut all = peers;
        all.push(placed.clone());
        let name = placed.spec.name.clone();
        let sidecar_cfg = configs::sidecar(&b.scenario, &all, &placed, b.control, &b.token);
        let path = b.dir.join(format!("sidecar-{name}.yaml"));
        std::fs::write(&path, configs::yaml(&sidecar_cfg)?)
            .with_context(|| format!("write {}", path.display()))?;
        let app_args = configs::app_args(&b.scenario, &placed, &interference);
        // Each port is released just before the process that binds it starts, so nothing else
        // gets it in between.
        drop(hold.remove(0));
        let app = spawn_ready(
            &format!("app-{name}"),
            &b.me,
            &app_args,
            &b.dir,
            placed.ports.app,
        )?;
        drop(hold);
        let sidecar_args = [
            "proxy".into(),
            "--config".into(),
            path.display().to_string(),
        ];
        let sidecar = spawn_ready(
            &format!("sidecar-{name}"),
            &b.me,
            &sidecar_args,
            &b.dir,
            placed.ports.inbound,
        )?;
        let mut inner = self.inner.lock();
        if inner.closed {
            // Dropping the guards here kills both.
            bail!("the lab stopped while replica {n} of {service} started");
        }
        inner.members.push(Member {
            addr: placed.ports.inbound,
            placed,
            interference,
            original: false,
            started: Some(Instant::now()),
            left: None,
            stopped: None,
            guards: vec![sidecar, app],
        });
        tracing::info!(%service, container = %name, "replica started");
        Ok(())
    }

    /// Takes the newest `k` live containers of `service` out of discovery, waits for the drain,
    /// then stops their processes.
    fn stop_newest(&self, service: &str, k: usize) -> anyhow::Result<()> {
        let leaving: Vec<usize> = {
            let mut inner = self.inner.lock();
            let mut idx: Vec<usize> = inner
                .members
                .iter()
                .enumerate()
                .filter(|(_, m)| m.live() && m.placed.spec.service == service)
                .map(|(i, _)| i)
                .collect();
            // Members are appended as they start: the highest index is the newest.
            idx.reverse();
            idx.truncate(k);
            let now = Instant::now();
            for &i in &idx {
                inner.members[i].left = Some(now);
            }
            idx
        };
        self.write_endpoints()?;
        std::thread::sleep(self.base.drain);
        for i in leaving {
            let guards = {
                let mut inner = self.inner.lock();
                std::mem::take(&mut inner.members[i].guards)
            };
            stop_in_order(guards);
            let mut inner = self.inner.lock();
            inner.members[i].stopped = Some(Instant::now());
            tracing::info!(%service, container = %inner.members[i].placed.spec.name, "replica stopped");
        }
        Ok(())
    }

    /// Rewrites the endpoints file from the live containers.
    fn write_endpoints(&self) -> anyhow::Result<()> {
        let mut map: BTreeMap<String, Vec<EndpointConfig>> = BTreeMap::new();
        for m in self.inner.lock().members.iter().filter(|m| m.live()) {
            let p = &m.placed;
            map.entry(p.spec.service.clone())
                .or_default()
                .push(EndpointConfig {
                    addr: m.addr,
                    host: p.spec.host.clone(),
                    zone: p.spec.zone.clone(),
                    container: Some(p.spec.name.clone()),
                    weight: 1.0,
                });
        }
        let text = configs::yaml(&map)?;
        write_atomically(&self.base.endpoints_file, &text)
            .with_context(|| format!("write {}", self.base.endpoints_file.display()))
    }

    /// Kills every process the fleet owns (sidecars before apps) and refuses further resizes.
    pub fn shutdown(&self) {
        let all: Vec<Vec<Guard>> = {
            let mut inner = self.inner.lock();
            inner.closed = true;
            let now = Instant::now();
            inner
                .members
                .iter_mut()
                .map(|m| {
                    if m.stopped.is_none() {
                        m.stopped = Some(now);
                    }
                    std::mem::take(&mut m.guards)
                })
                .collect()
        };
        // Every sidecar, then every app: no app sees its sidecar's callers vanish mid-request.
        let (mut sidecars, mut apps) = (Vec::new(), Vec::new());
        for mut g in all {
            apps.extend(g.pop());
            sidecars.append(&mut g);
        }
        drop(sidecars);
        drop(apps);
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// SIGTERM to the sidecar (it drains, then exits; killed after 3 s), then the app.
fn stop_in_order(guards: Vec<Guard>) {
    let mut it = guards.into_iter();
    if let Some(mut sidecar) = it.next() {
        let _ = Command::new("kill")
            .args(["-TERM", &sidecar.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while sidecar.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(sidecar);
    }
    drop(it);
}

/// Starts a child and waits (at most 10 s) until it listens on `addr`.
fn spawn_ready(
    name: &str,
    me: &Path,
    args: &[String],
    dir: &Path,
    addr: SocketAddr,
) -> anyhow::Result<Guard> {
    let mut g = Guard::spawn(name, me, args, dir)?;
    g.wait_ready(addr)?;
    Ok(g)
}
