//! The lab's containers as a fleet that grows and shrinks: the actuation side of scaling.
//!
//! After start-up the fleet takes over every container's processes (app + sidecar) from the
//! supervisor, so it can stop any of them, and starts new replicas on demand:
//! - scale-up: per new replica four reserved loopback ports, the app (`loadshift app` with the
//!   service's arguments, its current concurrency and the interference file of its host, which
//!   the run keeps following), then its sidecar (knowing every live container), each waited on
//!   until it listens; in a scenario with inter-zone RTT a zone relay in front of the sidecar
//!   ([`super::relay::RelayHandle::add`]), whose address becomes the replica's endpoint as for the
//!   initial containers; then the endpoints file is rewritten and the control plane's file
//!   discovery sends the new endpoint to every caller. New replicas go to the service's hosts
//!   with the fewest of its containers.
//! - scale-down: the newest containers first, never the last one unless the service is browned
//!   out (an optional service taken to zero, [`Fleet::resize`] with `brownout`). Each leaves the
//!   endpoints file first (a service with no container is listed with no endpoints, so callers
//!   drop the old ones); after [`FleetBase::drain`] (discovery poll + push + the work queued at it)
//!   its sidecar gets SIGTERM (it finishes open requests, then exits; killed after 3 s), then its
//!   app stops and its zone relay closes.
//! - concurrency: [`Fleet::set_concurrency`] records a service's new per-container concurrency
//!   (replicas started later get it) and names the live apps to resize in place.
//!
//! Every start, leave and stop is timed, which gives the report its containers over time and
//! container-seconds. Dropping the fleet (or [`Fleet::shutdown`]) kills everything it owns; a
//! scale-up racing a shutdown kills what it started.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use loadshift_control::config::EndpointConfig;
use loadshift_sim::scenario::Scenario;
use parking_lot::Mutex;

use super::configs::{self, Placed};
use super::relay::RelayHandle;
use super::supervisor::Supervisor;
use crate::tools::support::process::Guard;
use crate::tools::support::write_atomically;

mod replica;

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
    /// The zone relays, when the scenario has inter-zone RTT: replicas get one each.
    pub relays: Option<RelayHandle>,
}

/// One container, live or gone.
#[derive(Debug)]
pub struct Member {
    pub placed: Placed,
    /// Its address in discovery (its zone relay, else the sidecar's inbound listener).
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
    /// Per service: the concurrency set by a limits decision (absent: the scenario's).
    concurrency: BTreeMap<String, u32>,
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
                concurrency: BTreeMap::new(),
            }),
            ops: Mutex::new(()),
        }
    }

    /// Live containers per service, 0 for a browned-out one.
    pub fn counts(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for m in &self.inner.lock().members {
            *out.entry(m.placed.spec.service.clone()).or_insert(0) += u32::from(m.live());
        }
        out
    }

    /// The scenario the fleet runs.
    pub fn scenario(&self) -> &Scenario {
        &self.base.scenario
    }

    /// Concurrency of `service`'s containers: the last one set, else the scenario's.
    pub fn concurrency(&self, service: &str) -> u32 {
        if let Some(&c) = self.inner.lock().concurrency.get(service) {
            return c;
        }
        self.base
            .scenario
            .services
            .iter()
            .find(|x| x.name == service)
            .map_or(1, |x| x.concurrency.max(1))
    }

    /// Records `concurrency` for `service` (replicas started from now on get it) and returns the
    /// app address of each of its live containers, to resize in place. Waits for a resize in
    /// progress, so a replica starting meanwhile is either listed or started with it.
    pub fn set_concurrency(&self, service: &str, concurrency: u32) -> Vec<(String, SocketAddr)> {
        let _op = self.ops.lock();
        let mut inner = self.inner.lock();
        inner
            .concurrency
            .insert(service.to_string(), concurrency.max(1));
        inner
            .members
            .iter()
            .filter(|m| m.live() && m.placed.spec.service == service)
            .map(|m| (m.placed.spec.name.clone(), m.placed.ports.app))
            .collect()
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

    /// Brings `service` to `want` containers, within `[1, bound]`, or `[0, bound]` with
    /// `brownout` (the caller checks the service is optional); returns the count reached.
    pub fn resize(&self, service: &str, want: u32, brownout: bool) -> anyhow::Result<u32> {
        let _op = self.ops.lock();
        let (known, cur, total) = {
            let inner = self.inner.lock();
            if inner.closed {
                bail!("the lab is stopping");
            }
            let of_service = |m: &&Member| m.placed.spec.service == service;
            let known = inner.members.iter().any(|m| of_service(&m));
            let live = inner.members.iter().filter(|m| m.live());
            let cur = live.clone().filter(of_service).count();
            (known, cur, live.count())
        };
        if !known {
            bail!("unknown service {service:?}");
        }
        let floor = u32::from(!brownout);
        let room = self.base.max_total.saturating_sub(total) + cur;
        let bound = u32::try_from(room)
            .unwrap_or(u32::MAX)
            .min(self.base.max_per_service)
            .max(1);
        let target = want.clamp(floor, bound) as usize;
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

    /// Rewrites the endpoints file from the live containers. Every service is listed, a
    /// browned-out one with no endpoints: discovery keeps the static list of a service the file
    /// leaves out.
    fn write_endpoints(&self) -> anyhow::Result<()> {
        let mut map: BTreeMap<String, Vec<EndpointConfig>> = self
            .base
            .scenario
            .services
            .iter()
            .map(|x| (x.name.clone(), Vec::new()))
            .collect();
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
