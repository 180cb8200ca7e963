//! Prequal's hot-cold rule, sans-IO, with its probes carried in band (Wydrowski, Kleinberg,
//! Rumble, Archer, "Load is not what you should balance: Introducing Prequal", NSDI 2024).
//!
//! **The paper.** A Prequal client keeps a pool of recent probe answers, each a replica's
//! requests in flight (RIF) and its latency estimate at that load (the server's, see
//! [`crate::telemetry::rif_latency`]). Each query sends `r_probe` = 3 probes to replicas drawn
//! uniformly without replacement, asynchronously: the query is routed on the pool as it is, the
//! answers serve later queries. The pool holds at most 16 probes ("a pool size of 16 suffices");
//! a probe older than its age limit (1 s) is dropped; `r_remove` = 1 probe per query is removed,
//! alternately the oldest and the worst (the hot one with the highest RIF, else the cold one with
//! the highest latency), so the pool does not silt up with the hot replicas selection leaves
//! behind. The **hot-cold lexicographic rule** picks: a replica whose RIF is above the `Q_RIF`
//! quantile of the RIF distribution is hot; the cold one with the lowest latency wins; if all
//! are hot, the one with the lowest RIF. `Q_RIF` is 2^-0.25 ≈ 0.84 in the paper's deployment;
//! it reports [0.6, 0.9] as the good range. An empty pool falls back to a uniformly random
//! replica. A query sent on a probe increments that probe's RIF, so the next query sees it.
//!
//! **In band.** The probes here are the load reports the callee's inbound sidecar attaches to
//! every response it forwards to a mesh caller (`loadshift-load: rif=3;lat=12.5`,
//! `docs/protocols.md`); the caller's proxy keeps each endpoint's latest one with its age
//! ([`Loads::reported`]). There is no probe traffic, so the mapping is:
//!
//! - a pool entry is an endpoint whose value is its **latest** report, not a copy taken when it
//!   was probed; using it spends nothing, so there is no reuse budget (`b_reuse`). The RIF read is
//!   the reported one plus the requests this caller sent there since ([`Reported::rif`]): the
//!   paper's increment on use;
//! - a **probe** reads an endpoint's report (an atomic load, not an RPC): every pick probes
//!   [`PROBES`] endpoints drawn uniformly from the eligible set, after it has chosen, so, as in
//!   the paper, a pick routes on the pool the earlier picks filled;
//! - the **pool** is every eligible endpoint when there are at most [`POOL_SIZE`] (each is
//!   probed at every pick: the paper's pool would hold them all), else [`POOL_SIZE`] slots;
//! - **removal**: the paper removes probes every query because its pool loses cold probes to the
//!   reuse budget and drifts toward hot ones; entries here are not spent, so a probe that finds
//!   the pool full evicts one, alternately the oldest (the report longest unrefreshed) and the
//!   worst, by the paper's two rules;
//! - **age**: a report older than [`MAX_AGE`] (1 s) is dropped, and the endpoint is judged as an
//!   endpoint without a sidecar is: on what this caller sees itself, its own requests in flight
//!   as RIF and its own Peak-EWMA (decayed while idle) as latency. That also keeps an avoided
//!   endpoint from being avoided for good: reports come only with responses, so an endpoint
//!   nobody calls never reports again, where the paper's random probes would still reach it;
//!   its decaying estimate brings it back, as in P2C;
//! - the **quantile** is taken over the pool's RIFs (linear interpolation between order
//!   statistics), the paper's sample of the RIF distribution; cold is strictly below it, so in a
//!   pool whose RIFs are all equal none is cold and the lowest RIF wins, lowest latency breaking
//!   ties (lexicographic on RIF, then latency).
//!
//! - **latency as the caller pays it**: the paper balances inside one cluster, on the server's
//!   latency. Across zones a caller also pays the network, which the server's number does not
//!   hold (a far endpoint would look as good as a near one), so the latency compared is the
//!   report's plus this caller's measured overhead to that endpoint ([`Reported::overhead_ms`]:
//!   its calls' latency minus the app's own time for them, which each report also carries). An
//!   endpoint judged on the caller's own view has it already: its Peak-EWMA holds everything.
//!
//! Ejected endpoints are not entries; with none left the pick is random among the available
//! eligible ones, else among all eligible (failing open, as every mode does). Slow start scales
//! an entry as least request and P2C do: RIF `(rif + 1) / f - 1` and latency `latency / f`.
//!
//! **Inside weights** (`algorithm: prequal` with a plan's weights, the shifting planner's inner
//! pick): two distinct candidates are drawn by weight, and the hot-cold rule settles between
//! them against the pool's threshold: cold beats hot, two cold ones by latency, two hot ones by
//! RIF then latency, each candidate's RIF and latency taken per unit of its weight relative to
//! the other's (as slow start scales them), so the one the plan gives less must be that much
//! less loaded to win and the rule does not undo the plan's shares.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use rand::Rng;

use super::Loads;

/// Entries in the pool (the paper's 16).
pub const POOL_SIZE: usize = 16;
/// A report older than this is dropped (the paper's probe age limit, 1 s).
pub const MAX_AGE: Duration = Duration::from_secs(1);
/// The RIF quantile that separates hot from cold: 2^-0.25 ≈ 0.841, the paper's deployed value,
/// inside the [0.6, 0.9] range it reports as good.
pub const Q_RIF: f64 = 0.840_896_415_253_714_5;
/// Endpoints probed per pick (the paper's `r_probe`, 3).
pub const PROBES: usize = 3;

/// An endpoint's latest load report, as its inbound sidecar sent it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reported {
    /// Requests in flight it reported, plus the ones this caller sent it since.
    pub rif: u32,
    /// Its latency estimate at that load, milliseconds.
    pub latency_ms: f64,
    /// What the network and the proxies add to its latency on this caller's path, milliseconds
    /// (a mean over its recent calls of their latency minus the app's own time; 0 when unknown).
    pub overhead_ms: f64,
    /// Time since the report arrived.
    pub age: Duration,
}

/// One endpoint as the hot-cold rule sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Entry {
    /// Endpoint index.
    pub i: usize,
    /// Requests in flight (slow start applied).
    pub rif: f64,
    /// Latency estimate, ms (slow start applied).
    pub latency_ms: f64,
    /// Age of its report; `Duration::MAX` when it has none.
    pub age: Duration,
}

impl Entry {
    /// Endpoint `i`'s entry: its report while fresh, else this caller's own view of it; slow
    /// start applied.
    pub fn of<L: Loads + ?Sized>(i: usize, loads: &L) -> Self {
        Self::scaled(i, loads, loads.warmth(i))
    }

    /// A candidate drawn by weight (times the slow start factor, so that is not applied again),
    /// scaled by `share` in (0, 1], its weight over the larger of the two candidates' weights,
    /// as slow start scales: the one the plan gives less must be that much less loaded to win.
    pub fn per_weight<L: Loads + ?Sized>(i: usize, loads: &L, share: f64) -> Self {
        Self::scaled(i, loads, share)
    }

    fn scaled<L: Loads + ?Sized>(i: usize, loads: &L, f: f64) -> Self {
        let report = loads.reported(i);
        let (rif, latency_ms) = match report {
            Some(r) if r.age <= MAX_AGE => (f64::from(r.rif), r.latency_ms + r.overhead_ms),
            _ => {
                let own = f64::from(loads.in_flight(i));
                (own, loads.cost(i) / (own + 1.0) / 1e6)
            }
        };
        Self {
            i,
            rif: (rif + 1.0) / f - 1.0,
            latency_ms: latency_ms / f,
            age: report.map_or(Duration::MAX, |r| r.age),
        }
    }
}

/// The `Q_RIF` quantile of the entries' RIFs (linear interpolation); `None` for no entries.
pub fn threshold(pool: &[Entry]) -> Option<f64> {
    let mut rifs = [0.0; POOL_SIZE];
    let m = pool.len().min(POOL_SIZE);
    for (r, e) in rifs.iter_mut().zip(pool) {
        *r = e.rif;
    }
    let rifs = &mut rifs[..m];
    rifs.sort_unstable_by(f64::total_cmp);
    let h = Q_RIF * (m.checked_sub(1)? as f64);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(m - 1);
    Some(rifs[lo] + (h - lo as f64) * (rifs[hi] - rifs[lo]))
}

/// The hot-cold rule: the position in `pool` of the cold entry (RIF below `theta`) with the
/// lowest latency, else of the entry with the lowest RIF (then latency); `None` for an empty
/// pool. The first of equals wins.
pub fn hot_cold(pool: &[Entry], theta: f64) -> Option<usize> {
    let by_latency =
        |a: &(usize, &Entry), b: &(usize, &Entry)| a.1.latency_ms.total_cmp(&b.1.latency_ms);
    let by_rif = |a: &(usize, &Entry), b: &(usize, &Entry)| {
        a.1.rif
            .total_cmp(&b.1.rif)
            .then(a.1.latency_ms.total_cmp(&b.1.latency_ms))
    };
    let cold = pool
        .iter()
        .enumerate()
        .filter(|(_, e)| e.rif < theta)
        .min_by(by_latency);
    cold.or_else(|| pool.iter().enumerate().min_by(by_rif))
        .map(|(k, _)| k)
}

/// The hot-cold rule between two candidates: cold beats hot, two cold ones by latency, two hot
/// ones by RIF then latency; `a` on a tie.
pub fn settle(a: &Entry, b: &Entry, theta: f64) -> usize {
    let pair = [*a, *b];
    match hot_cold(&pair, theta) {
        Some(1) => b.i,
        _ => a.i,
    }
}

/// The worst entry, the paper's removal rule: the hot one with the highest RIF, else the cold one
/// with the highest latency. With the threshold taken over the pool itself the highest RIF is
/// always hot, so this is the highest RIF, then the highest latency.
fn worst(pool: &[Entry]) -> Option<usize> {
    pool.iter()
        .enumerate()
        .max_by(|a, b| {
            a.1.rif
                .total_cmp(&b.1.rif)
                .then(a.1.latency_ms.total_cmp(&b.1.latency_ms))
        })
        .map(|(k, _)| k)
}

/// The oldest entry: the report longest unrefreshed (no report counts as oldest).
fn oldest(pool: &[Entry]) -> Option<usize> {
    pool.iter()
        .enumerate()
        .max_by_key(|(_, e)| e.age)
        .map(|(k, _)| k)
}

/// The entries of one pick, on the stack, with the slot each came from.
pub(super) struct Entries {
    buf: [Entry; POOL_SIZE],
    slot: [usize; POOL_SIZE],
    len: usize,
}

impl Entries {
    fn new() -> Self {
        let none = Entry {
            i: 0,
            rif: 0.0,
            latency_ms: 0.0,
            age: Duration::ZERO,
        };
        Self {
            buf: [none; POOL_SIZE],
            slot: [0; POOL_SIZE],
            len: 0,
        }
    }

    fn push(&mut self, e: Entry, slot: usize) {
        if self.len < POOL_SIZE {
            self.buf[self.len] = e;
            self.slot[self.len] = slot;
            self.len += 1;
        }
    }

    /// Forgets entry `k` (evicted from its slot).
    fn remove(&mut self, k: usize) {
        self.len -= 1;
        self.buf[k] = self.buf[self.len];
        self.slot[k] = self.slot[self.len];
    }

    pub(super) fn as_slice(&self) -> &[Entry] {
        &self.buf[..self.len]
    }
}

/// The probe pool of one service, shared by every request through `&self`: beyond
/// [`POOL_SIZE`] eligible endpoints, slots of endpoint indices written with atomic stores (a race
/// between two workers can lose or duplicate an entry, never corrupt one; both are harmless to
/// the rule). The pool is state, not configuration: clones copy it, and any two compare equal.
#[derive(Debug, Default)]
pub(super) struct Pool {
    /// Endpoint index + 1 per slot, 0 for an empty slot; no slots when the pool is every
    /// eligible endpoint.
    slots: Box<[AtomicU32]>,
    /// Evictions so far: even ones take the oldest entry, odd ones the worst.
    evictions: AtomicU32,
}

impl Clone for Pool {
    fn clone(&self) -> Self {
        Self {
            slots: self
                .slots
                .iter()
                .map(|s| AtomicU32::new(s.load(Ordering::Relaxed)))
                .collect(),
            evictions: AtomicU32::new(self.evictions.load(Ordering::Relaxed)),
        }
    }
}

impl PartialEq for Pool {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Pool {
    /// The pool for `eligible` endpoints: slots only when there are more than [`POOL_SIZE`].
    pub(super) fn new(eligible: usize) -> Self {
        let n = if eligible > POOL_SIZE { POOL_SIZE } else { 0 };
        Self {
            slots: (0..n).map(|_| AtomicU32::new(0)).collect(),
            evictions: AtomicU32::new(0),
        }
    }

    /// The pool's available entries now.
    pub(super) fn entries<L: Loads + ?Sized>(&self, eligible: &[usize], loads: &L) -> Entries {
        let mut out = Entries::new();
        if self.slots.is_empty() {
            for (k, &i) in eligible.iter().enumerate() {
                if loads.available(i) {
                    out.push(Entry::of(i, loads), k);
                }
            }
        } else {
            for (k, s) in self.slots.iter().enumerate() {
                match s.load(Ordering::Relaxed) {
                    0 => {}
                    v if loads.available(v as usize - 1) => {
                        out.push(Entry::of(v as usize - 1, loads), k);
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Probes [`PROBES`] distinct eligible endpoints into the slots (nothing to do when the pool
    /// is every eligible endpoint); a full pool evicts one per probe, alternately the oldest and
    /// the worst of `now`, the entries this pick read.
    pub(super) fn probe<R: Rng + ?Sized>(
        &self,
        eligible: &[usize],
        rng: &mut R,
        now: &mut Entries,
    ) {
        if self.slots.is_empty() {
            return;
        }
        let n = eligible.len();
        let mut drawn = [usize::MAX; PROBES];
        for k in 0..PROBES {
            // Without replacement: more than POOL_SIZE endpoints, so a redraw is rare.
            let mut i = eligible[rng.random_range(0..n)];
            while drawn[..k].contains(&i) {
                i = eligible[rng.random_range(0..n)];
            }
            drawn[k] = i;
            self.insert(i, now);
        }
    }

    fn insert(&self, i: usize, now: &mut Entries) {
        let v = i as u32 + 1;
        if self.slots.iter().any(|s| s.load(Ordering::Relaxed) == v) {
            return;
        }
        for s in self.slots.iter() {
            if s.compare_exchange(0, v, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
        let pool = now.as_slice();
        let victim = if self
            .evictions
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(2)
        {
            oldest(pool)
        } else {
            worst(pool)
        };
        let slot = match victim {
            Some(k) => {
                let slot = now.slot[k];
                now.remove(k);
                slot
            }
            // Nothing read this pick (every slot's endpoint ejected): the first slot goes.
            None => 0,
        };
        self.slots[slot].store(v, Ordering::Relaxed);
    }

    /// Endpoint indices in the slots, for tests.
    #[cfg(test)]
    pub(super) fn members(&self) -> Vec<usize> {
        self.slots
            .iter()
            .filter_map(|s| s.load(Ordering::Relaxed).checked_sub(1))
            .map(|v| v as usize)
            .collect()
    }
}

#[cfg(test)]
mod tests;
