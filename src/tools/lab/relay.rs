//! Inter-zone round-trip times in the lab, on real sockets.
//!
//! When a scenario sets any `rtt`, every container gets a relay listener in front of its sidecar,
//! and that listener's address is the container's endpoint everywhere (control plane, sidecars,
//! gateway): plans key endpoints by `ip:port`, so all callers must use one address per container.
//! Per accepted connection the relay finds the caller's zone (the lab proxy that owns the peer
//! socket, [`super::peer_zone`]), connects to the container's sidecar and forwards both directions,
//! each delayed by half the scenario's RTT between the caller's zone and the container's zone at
//! the moment the bytes arrive ([`super::delay_pipe`]); the `rtt` schedule is read from the start
//! of the load. A connection whose caller is not identified is forwarded without delay and
//! counted.
//!
//! The initial containers' relays are bound before any process starts (their addresses go into
//! every config). Containers the lab's fleet starts and stops during the run get theirs through a
//! [`RelayHandle`]: [`RelayHandle::add`] binds one and returns the address the fleet publishes as
//! the container's endpoint, [`RelayHandle::remove`] closes it (listener and connections) when the
//! container stops.
//!
//! The relays run on their own thread and single-threaded runtime inside the lab process, so
//! their timers do not queue behind the load generator's tasks. Dropping [`ZoneRelays`] stops
//! the thread, which closes every listener and relayed connection.
//!
//! Measured: per (caller zone, callee zone) and report interval, the mean delay each direction
//! really had (arrival to write, timer lateness included); their sum is the RTT the calls took,
//! reported as `zone_rtt_ms` in the time series.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use loadshift_sim::scenario::{Scenario, Schedule};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::delay_pipe::pipe;
use super::layout::Layout;
use super::peer_zone::Identifier;

/// Label of a (caller zone, callee zone) pair in reports.
pub fn pair_label(from: &str, to: &str) -> String {
    format!("{from}->{to}")
}

/// The scenario's RTT between zones over time (missing pairs: 0, as in the simulator).
#[derive(Debug, Clone, Default)]
pub struct RttTable(HashMap<(String, String), Schedule>);

impl RttTable {
    pub fn new(s: &Scenario) -> Self {
        let mut m = HashMap::new();
        for r in &s.rtt {
            let [a, b] = &r.between;
            m.insert((a.clone(), b.clone()), r.ms.clone());
            m.insert((b.clone(), a.clone()), r.ms.clone());
        }
        Self(m)
    }

    /// RTT between zones `a` and `b` at `t_s`, milliseconds.
    pub fn ms(&self, a: &str, b: &str, t_s: f64) -> f64 {
        self.0
            .get(&(a.to_string(), b.to_string()))
            .map_or(0.0, |s| s.at(t_s).max(0.0))
    }
}

/// Delay sums of one pair: per report interval, `[caller->callee, callee->caller]` as
/// (sum of microseconds, chunks).
#[derive(Debug, Default, Clone)]
struct PairStats {
    connections: u64,
    intervals: Vec<[(u64, u64); 2]>,
}

#[derive(Debug, Default)]
struct Stats {
    pairs: BTreeMap<(String, String), PairStats>,
    unidentified: u64,
}

/// One container's relay listener.
#[derive(Debug)]
struct Front {
    container: String,
    zone: String,
    listener: TcpListener,
}

/// The lab's zone relays (see the module documentation).
#[derive(Debug)]
pub struct ZoneRelays {
    fronts: Vec<Front>,
    rtt: RttTable,
    stats: Arc<Mutex<Stats>>,
    running: Option<Running>,
    interval: Duration,
}

/// The relay thread and what adds relays to it.
#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    thread: JoinHandle<()>,
    handle: RelayHandle,
}

/// Adds and removes relays while the relays run: one per container, keyed by its name (see the
/// module documentation). Clones share the relays.
#[derive(Clone, Debug)]
pub struct RelayHandle {
    rt: tokio::runtime::Handle,
    shared: Shared,
    /// Each container's accept loop; aborting it drops its listener and connections.
    live: Arc<Mutex<HashMap<String, AbortHandle>>>,
}

impl RelayHandle {
    /// Binds a relay for `container` (in `zone`) that forwards to `target` (its sidecar's inbound
    /// listener) with the same delays as every other relay; returns the relay's address, which
    /// is the container's endpoint from now on.
    pub fn add(
        &self,
        container: &str,
        zone: &str,
        target: SocketAddr,
    ) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind a zone relay on loopback")?;
        let addr = listener.local_addr()?;
        self.serve(container, zone, listener, target)?;
        Ok(addr)
    }

    /// Closes `container`'s relay, its listener and every connection through it; false when it
    /// has none.
    pub fn remove(&self, container: &str) -> bool {
        let Some(task) = self.live.lock().remove(container) else {
            return false;
        };
        task.abort();
        true
    }

    fn serve(
        &self,
        container: &str,
        zone: &str,
        listener: TcpListener,
        target: SocketAddr,
    ) -> anyhow::Result<()> {
        listener.set_nonblocking(true)?;
        let task = self.rt.spawn(front(
            listener,
            zone.to_string(),
            target,
            self.shared.clone(),
        ));
        if let Some(old) = self
            .live
            .lock()
            .insert(container.to_string(), task.abort_handle())
        {
            old.abort();
        }
        Ok(())
    }
}

impl ZoneRelays {
    /// Binds one relay listener per container when the scenario sets any RTT; `None` otherwise.
    pub fn bind(s: &Scenario, layout: &Layout) -> anyhow::Result<Option<Self>> {
        if s.rtt.is_empty() {
            return Ok(None);
        }
        let mut fronts = Vec::new();
        for c in &layout.containers {
            let listener =
                TcpListener::bind("127.0.0.1:0").context("bind a zone relay on loopback")?;
            fronts.push(Front {
                container: c.name.clone(),
                zone: c.zone.clone(),
                listener,
            });
        }
        Ok(Some(Self {
            fronts,
            rtt: RttTable::new(s),
            stats: Arc::default(),
            running: None,
            interval: Duration::from_secs(1),
        }))
    }

    /// Points every container's endpoint at its relay.
    pub fn route(&self, layout: &mut Layout) -> anyhow::Result<()> {
        for c in &mut layout.containers {
            let f = self
                .fronts
                .iter()
                .find(|f| f.container == c.name)
                .context("a container without a relay")?;
            c.front = Some(f.listener.local_addr()?);
        }
        Ok(())
    }

    /// Starts forwarding to each container's sidecar (`targets`: container name -> inbound
    /// address); the RTT schedule's time 0 is now. `interval` is the report interval the
    /// measured delays are grouped by.
    pub fn start(
        &mut self,
        targets: &HashMap<String, SocketAddr>,
        interval: Duration,
    ) -> anyhow::Result<()> {
        self.interval = interval.max(Duration::from_millis(100));
        let shared = Shared {
            rtt: Arc::new(self.rtt.clone()),
            stats: self.stats.clone(),
            peers: Identifier::spawn().context("start the zone relays' caller lookup")?,
            interval: self.interval,
            epoch: Instant::now(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("start the zone relays' runtime")?;
        let handle = RelayHandle {
            rt: rt.handle().clone(),
            shared,
            live: Arc::default(),
        };
        for f in std::mem::take(&mut self.fronts) {
            let target = *targets
                .get(&f.container)
                .with_context(|| format!("no sidecar address for {}", f.container))?;
            handle.serve(&f.container, &f.zone, f.listener, target)?;
        }
        let (stop_tx, mut stop) = watch::channel(false);
        // Dropping the runtime when the stop flag is set drops every relay task with it, which
        // closes every listener and connection.
        let thread = std::thread::Builder::new()
            .name("lab-zone-relays".into())
            .spawn(move || {
                rt.block_on(async move {
                    let _ = stop.wait_for(|s| *s).await;
                });
            })
            .context("start the zone relays' thread")?;
        self.running = Some(Running {
            stop: stop_tx,
            thread,
            handle,
        });
        Ok(())
    }

    /// Adds and removes relays from now on; `None` until [`ZoneRelays::start`].
    pub fn handle(&self) -> Option<RelayHandle> {
        self.running.as_ref().map(|r| r.handle.clone())
    }

    /// Per report interval: measured RTT (ms) per pair label that carried traffic in it.
    pub fn series(&self) -> Vec<BTreeMap<String, f64>> {
        let st = self.stats.lock();
        let n = st
            .pairs
            .values()
            .map(|p| p.intervals.len())
            .max()
            .unwrap_or(0);
        (0..n)
            .map(|k| {
                st.pairs
                    .iter()
                    .filter_map(|((a, b), p)| {
                        let rtt = measured_rtt_ms(p.intervals.get(k)?)?;
                        Some((pair_label(a, b), rtt))
                    })
                    .collect()
            })
            .collect()
    }

    /// One line per pair for the report: connections, measured RTT over the run against the
    /// scenario's RTT averaged over the same time.
    pub fn describe(&self, duration: Duration) -> Vec<String> {
        let st = self.stats.lock();
        let mut out = Vec::new();
        for ((a, b), p) in &st.pairs {
            let mut sum = [(0u64, 0u64); 2];
            for iv in &p.intervals {
                for d in 0..2 {
                    sum[d].0 += iv[d].0;
                    sum[d].1 += iv[d].1;
                }
            }
            let steps = 100;
            let sched = (0..steps)
                .map(|i| {
                    self.rtt.ms(
                        a,
                        b,
                        duration.as_secs_f64() * (i as f64 + 0.5) / steps as f64,
                    )
                })
                .sum::<f64>()
                / steps as f64;
            let measured = measured_rtt_ms(&sum).map_or("-".into(), |m| format!("{m:.2}"));
            out.push(format!(
                "zone relay {}: {} connections, measured RTT {measured} ms (scenario mean {sched:.2} ms)",
                pair_label(a, b),
                p.connections
            ));
        }
        if st.unidentified > 0 {
            out.push(format!(
                "zone relays: {} connections from unidentified callers were forwarded without delay",
                st.unidentified
            ));
        }
        out
    }
}

impl Drop for ZoneRelays {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop.send(true);
            // The thread only waits on the stop flag; it ends promptly.
            let _ = r.thread.join();
        }
    }
}

/// Mean delay one way plus mean delay back, ms; `None` unless both directions carried data.
fn measured_rtt_ms(iv: &[(u64, u64); 2]) -> Option<f64> {
    let mean = |(s, n): (u64, u64)| (n > 0).then(|| s as f64 / n as f64 / 1000.0);
    Some(mean(iv[0])? + mean(iv[1])?)
}

#[derive(Clone, Debug)]
struct Shared {
    rtt: Arc<RttTable>,
    stats: Arc<Mutex<Stats>>,
    peers: Identifier,
    interval: Duration,
    /// Time 0 of the RTT schedule and of the report intervals.
    epoch: Instant,
}

/// One container's accept loop, on the relays' runtime.
async fn front(l: TcpListener, zone: String, target: SocketAddr, shared: Shared) {
    let Ok(l) = tokio::net::TcpListener::from_std(l) else {
        tracing::warn!("a zone relay listener could not join the runtime");
        return;
    };
    // Dropped with this task (removed, or the runtime stopped): every connection closes with it.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((conn, peer)) = l.accept().await else {
            // Out of descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Finished connections are reaped as new ones come.
        while conns.try_join_next().is_some() {}
        conns.spawn(relay(conn, peer, zone.clone(), target, shared.clone()));
    }
}

async fn relay(
    conn: tokio::net::TcpStream,
    peer: SocketAddr,
    callee_zone: String,
    target: SocketAddr,
    shared: Shared,
) {
    let epoch = shared.epoch;
    let Ok(local) = conn.local_addr() else { return };
    // Both take a while; neither needs the other.
    let (caller_zone, upstream) = tokio::join!(
        shared.peers.zone_of(peer, local),
        tokio::net::TcpStream::connect(target)
    );
    let Ok(upstream) = upstream else { return };
    let _ = conn.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let Some(caller_zone) = caller_zone else {
        shared.stats.lock().unidentified += 1;
        let (cr, cw) = conn.into_split();
        let (ur, uw) = upstream.into_split();
        tokio::join!(
            pipe(cr, uw, || Duration::ZERO, |_| {}),
            pipe(ur, cw, || Duration::ZERO, |_| {})
        );
        return;
    };
    let key = (caller_zone, callee_zone);
    shared
        .stats
        .lock()
        .pairs
        .entry(key.clone())
        .or_default()
        .connections += 1;
    let half = {
        let (rtt, key) = (shared.rtt.clone(), key.clone());
        move || {
            let ms = rtt.ms(&key.0, &key.1, epoch.elapsed().as_secs_f64());
            Duration::from_secs_f64(ms / 2000.0)
        }
    };
    let observe = |dir: usize| {
        let (stats, key, width) = (shared.stats.clone(), key.clone(), shared.interval);
        move |d: Duration| {
            let k = (epoch.elapsed().as_nanos() / width.as_nanos().max(1)) as usize;
            let mut st = stats.lock();
            let p = st.pairs.entry(key.clone()).or_default();
            if p.intervals.len() <= k {
                p.intervals.resize(k + 1, [(0, 0); 2]);
            }
            p.intervals[k][dir].0 += d.as_micros() as u64;
            p.intervals[k][dir].1 += 1;
        }
    };
    let (cr, cw) = conn.into_split();
    let (ur, uw) = upstream.into_split();
    tokio::join!(
        pipe(cr, uw, half.clone(), observe(0)),
        pipe(ur, cw, half, observe(1))
    );
}

#[cfg(test)]
mod tests;
