//! One replica's life: started from a model container of its service (ports reserved, zone
//! relay, configs, app then sidecar, each waited on) and stopped after leaving discovery and
//! draining (sidecar first, then app, then its relay).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Fleet, Member};
use crate::tools::lab::configs::{self, Placed, Ports};
use crate::tools::support::process::Guard;

impl Fleet {
    /// Starts one replica of `service` and registers it (not yet in the endpoints file).
    pub(super) fn start_one(&self, service: &str) -> anyhow::Result<()> {
        let b = &self.base;
        let concurrency = self.concurrency(service);
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
        let hold: Vec<TcpListener> = (0..4)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()
            .context("reserve loopback ports")?;
        let addr = |i: usize| hold[i].local_addr();
        let mut placed = Placed {
            spec,
            ports: Ports {
                app: addr(0)?,
                inbound: addr(1)?,
                outbound: addr(2)?,
                admin: addr(3)?,
            },
        };
        // Bound before the configs are written, so the replica's own config lists it at its relay
        // like its peers; no caller learns the address before the endpoints file names it, once
        // the sidecar listens.
        if let Some(relays) = &b.relays {
            let s = &placed.spec;
            placed.spec.front = Some(relays.add(&s.name, &s.zone, placed.ports.inbound)?);
        }
        let started = self.spawn_pair(&placed, peers, &interference, concurrency, hold);
        let guards = match started {
            Ok(g) => g,
            Err(e) => {
                if let Some(relays) = &b.relays {
                    relays.remove(&placed.spec.name);
                }
                return Err(e);
            }
        };
        let name = placed.spec.name.clone();
        let mut inner = self.inner.lock();
        if inner.closed {
            if let Some(relays) = &b.relays {
                relays.remove(&name);
            }
            // Dropping the guards here kills both.
            bail!("the lab stopped while replica {n} of {service} started");
        }
        inner.members.push(Member {
            addr: placed.spec.front.unwrap_or(placed.ports.inbound),
            placed,
            interference,
            original: false,
            started: Some(Instant::now()),
            left: None,
            stopped: None,
            guards,
        });
        tracing::info!(%service, container = %name, "replica started");
        Ok(())
    }

    /// Writes the sidecar's config and starts the app, then the sidecar, each waited on; `hold`
    /// keeps the app's, then the sidecar's ports reserved until just before each starts.
    fn spawn_pair(
        &self,
        placed: &Placed,
        peers: Vec<Placed>,
        interference: &Path,
        concurrency: u32,
        mut hold: Vec<TcpListener>,
    ) -> anyhow::Result<Vec<Guard>> {
        let b = &self.base;
        let mut all = peers;
        all.push(placed.clone());
        let name = placed.spec.name.clone();
        let sidecar_cfg = configs::sidecar(&b.scenario, &all, placed, b.control, &b.token);
        let path = b.dir.join(format!("sidecar-{name}.yaml"));
        std::fs::write(&path, configs::yaml(&sidecar_cfg)?)
            .with_context(|| format!("write {}", path.display()))?;
        let app_args = configs::app_args(&b.scenario, placed, interference, Some(concurrency));
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
        Ok(vec![sidecar, app])
    }

    /// Takes the newest `k` live containers of `service` out of discovery, waits for the drain,
    /// then stops their processes.
    pub(super) fn stop_newest(&self, service: &str, k: usize) -> anyhow::Result<()> {
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
            let name = &inner.members[i].placed.spec.name;
            if let Some(relays) = &self.base.relays {
                relays.remove(name);
            }
            tracing::info!(%service, container = %name, "replica stopped");
        }
        Ok(())
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
