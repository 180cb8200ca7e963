//! The Imbres performance hash table (seed 002 §4.1.2, eq. 2-4): per service, a map from
//! (interference, load per container) to tail latency, learned online and used to predict a
//! container's latency (`imbres-connect`, §4.2.2) and a service's gain from one more container
//! (Alg. 3, §4.3.2).
//!
//! **Keys.** Interference `I = (CPU, MemB, Net)` (eq. 2), each utilisation in [0, 1] cut into
//! `interference_buckets` (paper: 4) equal buckets over [0, `interference_max`] (paper: 0.8); higher
//! values fall into the top bucket. Load per container `w`, requests per second, cut into
//! `load_buckets` (paper: 4) equal buckets over [0, `w_max`], where `w_max` is the load at which a
//! container reaches `target_cpu` (paper: 50%) of one core without interference.
//!
//! **Values.** Per key, an EWMA of the observed p95 latency (weight `max(alpha, 1/n)`, so the first
//! observations average and later ones track drift; `alpha` default 0.2) with observation and
//! request counts.
//!
//! **Lookup** (eq. 3, `phi(I, w)`):
//! - Interference key missing: the present key nearest in bucket space (squared Euclidean distance
//!   over the three bucket indices; ties go to the key with more requests behind it, then to the
//!   lower key), as the paper's "closest key".
//! - Load key present: its value. Missing: linear interpolation between the two closest present
//!   load buckets `w_m < w_n` (their bucket centres), **with the base term** the paper's eq. 4
//!   leaves out: `phi(I, w) = phi(I, w_m) + (phi(I, w_n) - phi(I, w_m)) (w - w_m) / (w_n - w_m)`.
//!   As printed, eq. 4 is only the increment and would predict ~0 ms near `w_m`. When `w` lies
//!   outside the present buckets the same line through the two closest is extended (clamped at 0);
//!   with one present bucket its value is returned.
//!
//! **What is measured.** Each report updates one key per container: its host's interference, its
//! own inbound load (requests / window) and its own inbound p95. The paper keys service-level
//! averages; per-container observations are the same mapping at a finer grain and give the
//! per-container queries of §4.2.2 more data. Interference comes from [`HostPressure`]:
//! `CPU = cpu_util` (from `/proc/stat`); memory bandwidth and network are not measured by the
//! proxies, so `MemB` is approximated by PSI memory `some avg10` / 100 (time stalled on memory,
//! which reclaim and bandwidth pressure both raise) and `Net` by PSI io `some avg10` / 100 (block
//! I/O stall, the only I/O pressure signal reported; it does not see NIC contention). Without PSI
//! both are 0, so only the CPU dimension separates keys. Callers with real counters (the
//! simulator's interference schedule, resctrl MBM, NIC counters) pass an [`Interference`] directly.
//!
//! `w_max` comes from config (`max_load_rps`) or, once per service, from the first report with
//! traffic: `target_cpu / s`, with `s` the lowest mean inbound latency among its containers as the
//! service-time estimate (assumes one core per container and CPU-bound handlers). It is stored with
//! the table so buckets keep their meaning across restarts.

use std::collections::{BTreeMap, BTreeSet};

use loadshift_core::telemetry::pressure::HostPressure;
use serde::{Deserialize, Serialize};

use crate::Snapshot;

/// Shape of the table.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableParams {
    /// Buckets per interference dimension (paper: 4).
    pub interference_buckets: u8,
    /// Upper edge of the interference buckets, utilisation in (0, 1] (paper: 0.8).
    pub interference_max: f64,
    /// Buckets of load per container (paper: 4).
    pub load_buckets: u8,
    /// Load per container (requests/s) at the top of the load buckets, for every service; `None`
    /// (default) estimates it per service.
    pub max_load_rps: Option<f64>,
    /// CPU share of one core that defines the top load (paper: 0.5).
    pub target_cpu: f64,
    /// Smallest EWMA weight of a new observation (default 0.2).
    pub alpha: f64,
}

impl Default for TableParams {
    fn default() -> Self {
        Self {
            interference_buckets: 4,
            interference_max: 0.8,
            load_buckets: 4,
            max_load_rps: None,
            target_cpu: 0.5,
            alpha: 0.2,
        }
    }
}

/// Host interference, each a utilisation in [0, 1] (eq. 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interference {
    pub cpu: f64,
    pub membw: f64,
    pub net: f64,
}

impl Interference {
    /// The approximation described in the module doc.
    pub fn from_pressure(p: &HostPressure) -> Self {
        let pct = |v: Option<f64>| v.map_or(0.0, |x| x / 100.0);
        Self {
            cpu: p.cpu_util,
            membw: pct(p.psi_memory),
            net: pct(p.psi_io),
        }
    }
}

/// Interference bucket indices (the first key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InterferenceKey {
    pub cpu: u8,
    pub membw: u8,
    pub net: u8,
}

/// One value of the table.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// EWMA of the observed p95, milliseconds.
    pub p95_ms: f64,
    /// Observations folded in.
    pub observations: u64,
    /// Requests behind those observations.
    pub requests: u64,
}

/// One service's table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceTable {
    /// `w_max`, requests/s per container; fixed once known.
    pub max_load_rps: Option<f64>,
    cells: BTreeMap<InterferenceKey, BTreeMap<u8, Cell>>,
}

/// The persisted form of a service table: flat rows, so JSON and key-value stores hold it as is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredTable {
    pub max_load_rps: Option<f64>,
    pub cells: Vec<StoredCell>,
}

/// One persisted row.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredCell {
    pub key: InterferenceKey,
    pub load: u8,
    pub cell: Cell,
}

impl ServiceTable {
    /// Number of cells.
    pub fn len(&self) -> usize {
        self.cells.values().map(BTreeMap::len).sum()
    }

    /// True before the first observation.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn to_stored(&self) -> StoredTable {
        let cells = self
            .cells
            .iter()
            .flat_map(|(&key, loads)| {
                loads
                    .iter()
                    .map(move |(&load, &cell)| StoredCell { key, load, cell })
            })
            .collect();
        StoredTable {
            max_load_rps: self.max_load_rps,
            cells,
        }
    }

    pub fn from_stored(t: &StoredTable) -> Self {
        let mut cells: BTreeMap<InterferenceKey, BTreeMap<u8, Cell>> = BTreeMap::new();
        for c in &t.cells {
            cells.entry(c.key).or_default().insert(c.load, c.cell);
        }
        Self {
            max_load_rps: t.max_load_rps,
            cells,
        }
    }
}

/// Every service's table plus which ones changed since the last save.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PerfTable {
    params: TableParams,
    services: BTreeMap<String, ServiceTable>,
    dirty: BTreeSet<String>,
}

impl PerfTable {
    pub fn new(params: TableParams) -> Self {
        let params = TableParams {
            interference_buckets: params.interference_buckets.max(1),
            load_buckets: params.load_buckets.max(1),
            ..params
        };
        Self {
            params,
            services: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    pub fn params(&self) -> &TableParams {
        &self.params
    }

    /// True while no service has a single cell.
    pub fn is_empty(&self) -> bool {
        self.services.values().all(ServiceTable::is_empty)
    }

    /// One service's table.
    pub fn service(&self, name: &str) -> Option<&ServiceTable> {
        self.services.get(name)
    }

    /// Replaces a service's table (after loading it from a store); not marked dirty.
    pub fn insert(&mut self, name: String, table: ServiceTable) {
        self.services.insert(name, table);
    }

    /// Services changed since the last call, with their tables.
    pub fn take_dirty(&mut self) -> Vec<(String, StoredTable)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|n| self.services.get(&n).map(|t| (n, t.to_stored())))
            .collect()
    }

    /// Bucket of one interference utilisation.
    pub fn interference_bucket(&self, u: f64) -> u8 {
        let n = self.params.interference_buckets;
        bucket(u / self.params.interference_max, n)
    }

    /// The first key for an interference reading.
    pub fn interference_key(&self, i: Interference) -> InterferenceKey {
        InterferenceKey {
            cpu: self.interference_bucket(i.cpu),
            membw: self.interference_bucket(i.membw),
            net: self.interference_bucket(i.net),
        }
    }

    fn load_width(&self, t: &ServiceTable) -> Option<f64> {
        let max = self.params.max_load_rps.or(t.max_load_rps)?;
        (max.is_finite() && max > 0.0).then(|| max / f64::from(self.params.load_buckets))
    }

    /// Folds one observation into `service`'s table. Ignored until `w_max` is known, and for
    /// non-finite or negative values or zero requests.
    pub fn record(
        &mut self,
        service: &str,
        i: Interference,
        load_rps: f64,
        p95_ms: f64,
        requests: u64,
    ) {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if requests == 0 || !ok(load_rps) || !ok(p95_ms) {
            return;
        }
        let key = self.interference_key(i);
        let alpha = self.params.alpha;
        let load_buckets = self.params.load_buckets;
        let t = self.services.entry(service.to_string()).or_default();
        let Some(max) = self.params.max_load_rps.or(t.max_load_rps) else {
            return;
        };
        let b = bucket(load_rps / max, load_buckets);
        let cell = t.cells.entry(key).or_default().entry(b).or_insert(Cell {
            p95_ms,
            observations: 0,
            requests: 0,
        });
        let weight = (1.0 / (cell.observations + 1) as f64).max(alpha);
        cell.p95_ms += weight * (p95_ms - cell.p95_ms);
        cell.observations += 1;
        cell.requests += requests;
        self.dirty.insert(service.to_string());
    }

    /// Sets `w_max` for a service if it has none (config wins over this).
    pub fn set_max_load(&mut self, service: &str, max_load_rps: f64) {
        if !(max_load_rps.is_finite() && max_load_rps > 0.0) {
            return;
        }
        let t = self.services.entry(service.to_string()).or_default();
        if t.max_load_rps.is_none() {
            t.max_load_rps = Some(max_load_rps);
            self.dirty.insert(service.to_string());
        }
    }

    /// Updates every service from a snapshot, one observation per container with inbound traffic.
    pub fn observe(&mut self, snap: &Snapshot) {
        for (name, svc) in &snap.services {
            let windows: Vec<_> = svc
                .containers
                .iter()
                .filter_map(|c| {
                    c.inbound
                        .filter(|w| w.count > 0 && w.window_s > 0.0)
                        .map(|w| (c, w))
                })
                .collect();
            let min_mean_ms = windows
                .iter()
                .map(|(_, w)| w.mean_ms)
                .filter(|m| m.is_finite() && *m > 0.0)
                .fold(f64::INFINITY, f64::min);
            if min_mean_ms.is_finite() {
                self.set_max_load(name, self.params.target_cpu / (min_mean_ms / 1000.0));
            }
            for (c, w) in windows {
                let i = snap
                    .hosts
                    .get(&c.endpoint.host)
                    .map(Interference::from_pressure)
                    .unwrap_or_default();
                self.record(name, i, w.count as f64 / w.window_s, w.p95_ms, w.count);
            }
        }
    }

    /// `phi(I, w)`: predicted p95 for a container of `service` under interference `i` at `load_rps`.
    /// `None` when the service has no data.
    pub fn lookup(&self, service: &str, i: Interference, load_rps: f64) -> Option<f64> {
        let t = self.services.get(service)?;
        let loads = self.nearest(t, self.interference_key(i))?;
        let width = self.load_width(t)?;
        let nb = self.params.load_buckets;
        let b = bucket(load_rps / (width * f64::from(nb)), nb);
        if let Some(c) = loads.get(&b) {
            return Some(c.p95_ms);
        }
        let centre = |k: u8| (f64::from(k) + 0.5) * width;
        let below: Vec<(u8, &Cell)> = loads
            .range(..b)
            .rev()
            .take(2)
            .map(|(&k, c)| (k, c))
            .collect();
        let above: Vec<(u8, &Cell)> = loads.range(b + 1..).take(2).map(|(&k, c)| (k, c)).collect();
        let (m, n) = match (below.as_slice(), above.as_slice()) {
            ([lo, ..], [hi, ..]) => (*lo, *hi),
            ([lo, lo2], []) => (*lo2, *lo),
            ([], [hi, hi2]) => (*hi, *hi2),
            ([only], []) | ([], [only]) => return Some(only.1.p95_ms),
            _ => return None,
        };
        let (wm, wn) = (centre(m.0), centre(n.0));
        let (pm, pn) = (m.1.p95_ms, n.1.p95_ms);
        Some((pm + (pn - pm) * (load_rps - wm) / (wn - wm)).max(0.0))
    }

    /// `phi(I, w)` as one piecewise-linear curve through the centres of every present load bucket
    /// of the nearest interference key (extending the first or last segment outside them, clamped
    /// at 0), for callers that compare two loads: [`PerfTable::lookup`] answers a present bucket
    /// with its one value, so two loads in the same bucket (a container more or less on a
    /// service, Alg. 3's eq. 5-6) would differ by nothing. With one present bucket, its value;
    /// `None` when the service has no data or the load is not finite.
    pub fn lookup_linear(&self, service: &str, i: Interference, load_rps: f64) -> Option<f64> {
        if !load_rps.is_finite() {
            return None;
        }
        let t = self.services.get(service)?;
        let loads = self.nearest(t, self.interference_key(i))?;
        let width = self.load_width(t)?;
        let points: Vec<(f64, f64)> = loads
            .iter()
            .map(|(&k, c)| ((f64::from(k) + 0.5) * width, c.p95_ms))
            .collect();
        match points.as_slice() {
            [] => None,
            [(_, only)] => Some(*only),
            _ => {
                // The segment whose right end is the first centre above `w`; below the first
                // centre the first segment, above the last the last one.
                let right = points
                    .iter()
                    .position(|&(w, _)| w > load_rps)
                    .unwrap_or(points.len())
                    .clamp(1, points.len() - 1);
                let ((wm, pm), (wn, pn)) = (points[right - 1], points[right]);
                Some((pm + (pn - pm) * (load_rps - wm) / (wn - wm)).max(0.0))
            }
        }
    }

    /// Load cells of `service` under the interference key [`PerfTable::lookup`] would use for
    /// `i` (0 without data): how many points [`PerfTable::lookup_linear`] has.
    pub fn load_cells(&self, service: &str, i: Interference) -> usize {
        self.services
            .get(service)
            .and_then(|t| self.nearest(t, self.interference_key(i)))
            .map_or(0, BTreeMap::len)
    }

    /// The present interference key nearest to `want` (see the module doc), with its load cells.
    fn nearest<'a>(
        &self,
        t: &'a ServiceTable,
        want: InterferenceKey,
    ) -> Option<&'a BTreeMap<u8, Cell>> {
        if let Some(l) = t.cells.get(&want) {
            return Some(l);
        }
        let d = |k: &InterferenceKey| {
            let sq = |a: u8, b: u8| (i32::from(a) - i32::from(b)).pow(2);
            sq(k.cpu, want.cpu) + sq(k.membw, want.membw) + sq(k.net, want.net)
        };
        let requests = |l: &BTreeMap<u8, Cell>| l.values().map(|c| c.requests).sum::<u64>();
        t.cells
            .iter()
            .min_by(|a, b| {
                d(a.0)
                    .cmp(&d(b.0))
                    .then_with(|| requests(b.1).cmp(&requests(a.1)))
                    .then_with(|| a.0.cmp(b.0))
            })
            .map(|(_, l)| l)
    }
}

/// Bucket of a value normalised to [0, 1] over `n` buckets; above 1 is the top bucket.
fn bucket(x: f64, n: u8) -> u8 {
    if !x.is_finite() || x <= 0.0 {
        return 0;
    }
    ((x * f64::from(n)).floor() as u64).min(u64::from(n) - 1) as u8
}

#[cfg(test)]
mod tests;
