//! Admission: what the proxy takes on before it does any work. Client connections are capped per
//! listener and per source address, the file-descriptor budget is checked at start, and the
//! overload manager (Envoy's idea, Linkerd's fail-fast) sheds new requests with 503 +
//! `retry-after` while in-flight requests or the process's resident memory are past their
//! thresholds. A listener at its cap, or a process past its memory threshold, stops accepting:
//! waiting clients stay in the kernel's backlog instead of costing descriptors. The admin
//! listener is not subject to any of this, and requests already admitted run to completion.
//!
//! Every refusal is counted by reason; the counts are in `/stats` (`admission`) and `/metrics`.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;
use serde::Serialize;

use crate::{
    FastMap,
    config::{ProxyConfig, RESERVED_FDS},
    metrics as m,
    side::Side,
};

/// Descriptors one client connection is budgeted: its own and one upstream connection.
const FDS_PER_CONNECTION: u64 = 2;

/// The memory threshold clears when resident memory falls below this fraction of it.
const MEMORY_HYSTERESIS: f64 = 0.9;

/// Why a connection or a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The source address already has its most connections (the connection is closed).
    SourceCap,
    /// Too many requests in flight (503).
    InFlight,
    /// Resident memory past its threshold (503).
    Memory,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SourceCap => "source-cap",
            Self::InFlight => "in-flight",
            Self::Memory => "memory",
        }
    }
}

/// A client-side limit that closed a connection or failed a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTimeout {
    /// A head (or the HTTP/2 preface) not complete within `header_read_ms`.
    Header,
    /// A request body that made no progress for `body_progress_ms`.
    Body,
    /// A response the client took nothing of for `send_progress_ms`.
    Send,
}

impl ClientTimeout {
    fn as_str(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Body => "body",
            Self::Send => "send",
        }
    }
}

/// The resolved limits (config defaults filled in from the descriptor budget and the cgroup).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct AdmissionLimits {
    /// Client connections per listener (all workers together).
    pub max_connections: usize,
    /// Client connections per source address per listener; 0: no cap.
    pub max_connections_per_source: usize,
    /// Requests waiting for a response head, all listeners together; 0: no cap.
    pub max_in_flight: usize,
    /// Resident memory past which new work is shed; 0: no threshold.
    pub max_memory_bytes: u64,
    /// Seconds in the `retry-after` of a shed response.
    pub retry_after_s: u32,
}

/// Counters and gauges of admission, shared by every worker.
pub struct Admission {
    pub limits: AdmissionLimits,
    /// Open client connections per listener (outbound, inbound).
    connections: [AtomicUsize; 2],
    /// Open client connections per source address (outbound, inbound); kept only with a cap.
    sources: [Mutex<FastMap<IpAddr, u32>>; 2],
    in_flight: AtomicUsize,
    /// Last resident-memory sample.
    resident: AtomicU64,
    over_memory: AtomicBool,
    refused_source: AtomicU64,
    shed_in_flight: AtomicU64,
    shed_memory: AtomicU64,
    /// Times a listener stopped accepting (at its connection cap or past the memory threshold).
    accept_pauses: AtomicU64,
    /// Connections closed before their first request to make room at a full listener.
    evicted: AtomicU64,
    timeouts: [AtomicU64; 3],
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            limits,
            connections: Default::default(),
            sources: Default::default(),
            in_flight: AtomicUsize::new(0),
            resident: AtomicU64::new(0),
            over_memory: AtomicBool::new(false),
            refused_source: AtomicU64::new(0),
            shed_in_flight: AtomicU64::new(0),
            shed_memory: AtomicU64::new(0),
            accept_pauses: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            timeouts: Default::default(),
        }
    }

    fn side(side: Side) -> usize {
        match side {
            Side::Outbound => 0,
            Side::Inbound => 1,
        }
    }

    /// Whether `side`'s listener may accept another connection now.
    pub fn may_accept(&self, side: Side) -> bool {
        self.connections[Self::side(side)].load(Ordering::Relaxed) < self.limits.max_connections
            && !self.over_memory.load(Ordering::Relaxed)
    }

    /// Whether `side` holds more connections than its cap (one accepted to replace an evicted
    /// one, until that one's task has closed it).
    pub fn over_cap(&self, side: Side) -> bool {
        self.connections[Self::side(side)].load(Ordering::Relaxed) > self.limits.max_connections
    }

    /// Whether resident memory is past its threshold (evicting a connection would not help).
    pub fn over_memory(&self) -> bool {
        self.over_memory.load(Ordering::Relaxed)
    }

    /// Counts a connection closed before its first request to make room at a full listener.
    pub fn evicted(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "evicted").increment(1);
    }

    /// Counts a listener that stopped accepting.
    pub fn paused(&self) {
        self.accept_pauses.fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!(m::ACCEPT_PAUSES).increment(1);
    }

    /// Registers an accepted connection; `None` (and counted) when its source is at its cap.
    pub fn connection(self: &Arc<Self>, side: Side, source: IpAddr) -> Option<ConnectionGuard> {
        let i = Self::side(side);
        let cap = self.limits.max_connections_per_source;
        if cap > 0 {
            let mut map = self.sources[i].lock();
            let n = map.entry(source).or_insert(0);
            if *n as usize >= cap {
                drop(map);
                self.refused_source.fetch_add(1, Ordering::Relaxed);
                ::metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => Refusal::SourceCap.as_str())
                    .increment(1);
                return None;
            }
            *n += 1;
        }
        self.connections[i].fetch_add(1, Ordering::Relaxed);
        Some(ConnectionGuard {
            admission: self.clone(),
            side: i,
            source,
        })
    }

    /// Admits a new request, or says why it is shed.
    pub fn request(&self) -> Result<RequestGuard<'_>, Refusal> {
        if self.over_memory.load(Ordering::Relaxed) {
            self.shed_memory.fetch_add(1, Ordering::Relaxed);
            ::metrics::counter!(m::SHED, "reason" => Refusal::Memory.as_str()).increment(1);
            return Err(Refusal::Memory);
        }
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let cap = self.limits.max_in_flight;
        if cap > 0 && before >= cap {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.shed_in_flight.fetch_add(1, Ordering::Relaxed);
            ::metrics::counter!(m::SHED, "reason" => Refusal::InFlight.as_str()).increment(1);
            return Err(Refusal::InFlight);
        }
        Ok(RequestGuard(self))
    }

    /// Counts a client that hit one of its timeouts.
    pub fn timed_out(&self, t: ClientTimeout) {
        self.timeouts[t as usize].fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!(m::CLIENT_TIMEOUTS, "kind" => t.as_str()).increment(1);
    }

    /// Records a resident-memory sample; past the threshold, new work is shed until it falls
    /// below 90 % of it.
    pub fn sample_memory(&self, resident: u64) {
        self.resident.store(resident, Ordering::Relaxed);
        let max = self.limits.max_memory_bytes;
        if max == 0 {
            return;
        }
        let was = self.over_memory.load(Ordering::Relaxed);
        let now = if was {
            resident as f64 >= max as f64 * MEMORY_HYSTERESIS
        } else {
            resident >= max
        };
        if now != was {
            self.over_memory.store(now, Ordering::Relaxed);
            if now {
                tracing::warn!(
                    resident_mb = resident >> 20,
                    threshold_mb = max >> 20,
                    "resident memory past its threshold: shedding new requests and connections"
                );
            } else {
                tracing::info!(
                    resident_mb = resident >> 20,
                    "resident memory back under its threshold"
                );
            }
        }
    }

    pub fn stats(&self) -> AdmissionStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AdmissionStats {
            limits: self.limits,
            connections_outbound: self.connections[0].load(Ordering::Relaxed),
            connections_inbound: self.connections[1].load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            resident_bytes: load(&self.resident),
            over_memory: self.over_memory.load(Ordering::Relaxed),
            refused_source_cap: load(&self.refused_source),
            shed_in_flight: load(&self.shed_in_flight),
            shed_memory: load(&self.shed_memory),
            accept_pauses: load(&self.accept_pauses),
            evicted_before_first_request: load(&self.evicted),
            header_timeouts: load(&self.timeouts[ClientTimeout::Header as usize]),
            body_timeouts: load(&self.timeouts[ClientTimeout::Body as usize]),
            send_timeouts: load(&self.timeouts[ClientTimeout::Send as usize]),
        }
    }

    /// Sets the admission gauges before a scrape.
    pub fn refresh_gauges(&self) {
        let s = self.stats();
        ::metrics::gauge!(m::CLIENT_CONNECTIONS, "listener" => "outbound")
            .set(s.connections_outbound as f64);
        ::metrics::gauge!(m::CLIENT_CONNECTIONS, "listener" => "inbound")
            .set(s.connections_inbound as f64);
        ::metrics::gauge!(m::REQUESTS_IN_FLIGHT).set(s.in_flight as f64);
        ::metrics::gauge!(m::RESIDENT_BYTES).set(s.resident_bytes as f64);
        ::metrics::gauge!(m::OVERLOADED).set(if s.over_memory { 1.0 } else { 0.0 });
    }
}

/// `/stats` view of admission.
#[derive(Clone, Debug, Serialize)]
pub struct AdmissionStats {
    pub limits: AdmissionLimits,
    pub connections_outbound: usize,
    pub connections_inbound: usize,
    pub in_flight: usize,
    pub resident_bytes: u64,
    pub over_memory: bool,
    pub refused_source_cap: u64,
    pub shed_in_flight: u64,
    pub shed_memory: u64,
    pub accept_pauses: u64,
    pub evicted_before_first_request: u64,
    pub header_timeouts: u64,
    pub body_timeouts: u64,
    pub send_timeouts: u64,
}

/// An open client connection; dropping it frees its place.
pub struct ConnectionGuard {
    admission: Arc<Admission>,
    side: usize,
    source: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let a = &self.admission;
        a.connections[self.side].fetch_sub(1, Ordering::Relaxed);
        if a.limits.max_connections_per_source > 0 {
            let mut map = a.sources[self.side].lock();
            if let Some(n) = map.get_mut(&self.source) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.source);
                }
            }
        }
    }
}

/// An admitted request, counted in flight until dropped.
pub struct RequestGuard<'a>(&'a Admission);

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The process's open-file limits after start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    pub soft: u64,
    pub hard: u64,
}

/// The descriptor budget does not allow the configured limits.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("reading the open-file limit: {0}")]
    Read(std::io::Error),
    #[error(
        "limits.min_fds: the open-file limit is {have} after raising the soft limit to the hard \
         one, below the floor of {floor}; raise `ulimit -n` (or LimitNOFILE) or lower min_fds"
    )]
    BelowFloor { have: u64, floor: u64 },
    #[error(
        "limits.max_connections: {max} per listener on {listeners} listener(s) needs {need} \
         descriptors ({FDS_PER_CONNECTION} per connection + {RESERVED_FDS} reserved), the \
         open-file limit is {have}; lower max_connections or raise `ulimit -n`"
    )]
    OverBudget {
        max: usize,
        listeners: usize,
        need: u64,
        have: u64,
    },
}

/// Raises the soft open-file limit to the hard one and checks it against the floor.
pub fn raise_fd_limit(floor: u64) -> Result<FdLimit, BudgetError> {
    let (soft, hard) = rlimit::Resource::NOFILE.get().map_err(BudgetError::Read)?;
    let soft = if soft < hard {
        match rlimit::Resource::NOFILE.set(hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "could not raise the open-file soft limit");
                soft
            }
        }
    } else {
        soft
    };
    if soft < floor {
        return Err(BudgetError::BelowFloor { have: soft, floor });
    }
    Ok(FdLimit { soft, hard })
}

/// Fills in the defaults of the admission limits: the connection cap from the descriptor
/// budget, the memory threshold from the cgroup's limit.
pub fn resolve(
    config: &ProxyConfig,
    fds: FdLimit,
    cgroup_memory: Option<u64>,
) -> Result<AdmissionLimits, BudgetError> {
    let listeners = 1 + usize::from(config.inbound.is_some());
    let budget = fds.soft.saturating_sub(RESERVED_FDS) / FDS_PER_CONNECTION;
    let fair = usize::try_from(budget).unwrap_or(usize::MAX) / listeners;
    let max_connections = match config.limits.max_connections {
        0 => fair.max(1),
        n => {
            let need = (n * listeners) as u64 * FDS_PER_CONNECTION + RESERVED_FDS;
            if need > fds.soft {
                return Err(BudgetError::OverBudget {
                    max: n,
                    listeners,
                    need,
                    have: fds.soft,
                });
            }
            n
        }
    };
    let o = &config.overload;
    let max_memory_bytes = match o.max_memory_mb {
        Some(mb) => mb << 20,
        None => cgroup_memory.map_or(0, |l| (l as f64 * o.memory_fraction_of_limit) as u64),
    };
    Ok(AdmissionLimits {
        max_connections,
        max_connections_per_source: config.limits.max_connections_per_source,
        max_in_flight: o.max_in_flight,
        max_memory_bytes,
        retry_after_s: o.retry_after_s,
    })
}

/// The memory limit of the process's cgroup (v2 `memory.max`, v1 `memory.limit_in_bytes`);
/// `None` when there is none.
pub fn cgroup_memory_limit() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // Limits this large mean "no limit" (v1 reports a page-rounded i64::MAX).
    let real = |v: u64| (v < 1 << 60).then_some(v);
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let file = if controllers.is_empty() {
            format!("/sys/fs/cgroup{path}/memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        } else {
            continue;
        };
        if let Ok(s) = std::fs::read_to_string(&file)
            && let Ok(v) = s.trim().parse::<u64>()
        {
            return real(v);
        }
    }
    None
}

/// The process's resident memory, from `/proc/self/status`.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples resident memory for as long as the admin thread runs.
pub async fn sample(admission: Arc<Admission>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(r) = resident_bytes() {
            admission.sample_memory(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_connections: 2,
            max_connections_per_source: 1,
            max_in_flight: 2,
            max_memory_bytes: 1000,
            retry_after_s: 1,
        }
    }

    #[test]
    fn connections_are_capped_per_listener_and_per_source() {
        let a = Arc::new(Admission::new(limits()));
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = a.connection(Side::Outbound, one).expect("first from one");
        assert!(
            a.connection(Side::Outbound, one).is_none(),
            "second from one"
        );
        // Another listener counts apart.
        let _in = a.connection(Side::Inbound, one).expect("inbound");
        let g2 = a.connection(Side::Outbound, two).expect("first from two");
        assert!(!a.may_accept(Side::Outbound));
        drop(g1);
        assert!(a.may_accept(Side::Outbound));
        let _g3 = a
            .connection(Side::Outbound, one)
            .expect("one again after closing");
        drop(g2);
        let s = a.stats();
        assert_eq!(s.refused_source_cap, 1);
        assert_eq!(s.connections_outbound, 1);
        assert_eq!(s.connections_inbound, 1);
    }

    #[test]
    fn requests_past_the_in_flight_cap_are_shed_and_counted() {
        let a = Arc::new(Admission::new(limits()));
        let r1 = a.request().unwrap();
        let _r2 = a.request().unwrap();
        assert_eq!(a.request().err(), Some(Refusal::InFlight));
        drop(r1);
        assert!(a.request().is_ok());
        assert_eq!(a.stats().shed_in_flight, 1);
    }

    #[test]
    fn memory_threshold_sheds_until_usage_falls_below_ninety_percent() {
        let a = Arc::new(Admission::new(limits()));
        a.sample_memory(999);
        assert!(a.request().is_ok());
        a.sample_memory(1000);
        assert_eq!(a.request().err(), Some(Refusal::Memory));
        assert!(!a.may_accept(Side::Outbound));
        a.sample_memory(950);
        assert_eq!(a.request().err(), Some(Refusal::Memory), "hysteresis");
        a.sample_memory(899);
        assert!(a.request().is_ok());
        assert_eq!(a.stats().shed_memory, 2);
    }

    #[test]
    fn default_connection_cap_comes_from_the_descriptor_budget() {
        let mut c = ProxyConfig::parse("outbound: { listen: 127.0.0.1:0 }\nservices: []\n")
            .expect("config");
        let fds = FdLimit {
            soft: 20_000,
            hard: 20_000,
        };
        let l = resolve(&c, fds, Some(1 << 30)).unwrap();
        assert_eq!(l.max_connections, (20_000 - 256) / 2);
        assert_eq!(l.max_memory_bytes, (f64::from(1u32 << 30) * 0.9) as u64);
        c.limits.max_connections = 10_000;
        let e = resolve(&c, fds, None).unwrap_err();
        assert!(e.to_string().contains("limits.max_connections"), "{e}");
        c.limits.max_connections = 5_000;
        assert_eq!(resolve(&c, fds, None).unwrap().max_connections, 5_000);
        assert_eq!(resolve(&c, fds, None).unwrap().max_memory_bytes, 0);
    }
}
