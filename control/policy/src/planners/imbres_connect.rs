//! `imbres-connect`: grouping-based partial connections (seed 002 §4.2.2), run together with
//! Alg. 1 load shifting ([`super::imbres_shift`]).
//!
//! The paper's vocabulary is kept here: for a service pair, *upstream* containers call *downstream*
//! ones. Upstreams are the caller proxies of a service (`ServiceState::callers`), downstreams its
//! containers. Per service, every plan:
//!
//! 1. **Cap.** At most `cap_per_downstream` (paper: 10) connections per downstream container.
//! 2. **Predict.** Each upstream's latency from the performance hash table of its own service
//!    ([`super::perf_table`]) at its host's interference and its load (its service's offered load
//!    times its Alg. 1 container share), as §4.2.2 queries "current load, load proportion in the
//!    current iteration, and resource interference of each upstream container".
//! 3. **Group.** k-means (smartcore, k-means++ seeded) over the predicted latencies into
//!    `cap / downstreams` groups (paper: 10). Each group is matched to all downstreams and a
//!    group of `n` upstreams needs up to `n + downstreams - 1` connections, so the group count is
//!    lowered when needed to keep the total within the cap: `k <= (cap - upstreams) /
//!    (downstreams - 1)`. When even one group cannot fit (`upstreams + downstreams - 1 > cap`),
//!    one group is used and the plan reports the cap as exceeded.
//! 4. **Match.** Inside each group, upstream shares are normalised to sum to 1; the upstream with
//!    the highest remaining share is connected to the downstream with the lowest share, taking
//!    `min(remaining upstream, remaining downstream)`; when the upstream runs out the next one
//!    continues on the same downstream, until every downstream's Alg. 1 share is met. Every group
//!    delivers the full downstream distribution, so downstream `d` receives exactly its share `t_d`
//!    whatever the groups' relative rates, and upstream `u` sends exactly its share.
//! 5. **Output.** Per upstream proxy, `PlanUpdate::per_proxy[u][service]` with the subset and the
//!    fraction of `u`'s traffic for each downstream; the service-wide plan keeps the Alg. 1 host
//!    weights for callers without a subset.
//!
//! Before the table holds any data (a fresh control plane with no stored table), the planner falls
//! back to rendezvous subsetting (`ServicePlan::subset_size = clamp(cap / upstreams, 1,
//! downstreams)`) with the data plane's P2C. Afterwards, an upstream the table cannot predict (its
//! service has no data yet, or it fronts no service, like an ingress) gets the median prediction of
//! the others; when no upstream of a service can be predicted they form one group, which still
//! delivers the downstream shares exactly with the fewest connections.

use std::{collections::BTreeMap, time::Duration};

use loadshift_core::{
    plan::{ServicePlan, SubsetEntry},
    shift::ShiftParams,
};
use serde::{Deserialize, Serialize};
use smartcore::{
    cluster::kmeans::{KMeans, KMeansParameters},
    linalg::basic::matrix::DenseMatrix,
};

use super::{
    imbres_shift::Shifters,
    perf_table::{Interference, PerfTable, TableParams},
};
use crate::{PlanUpdate, Planner, Snapshot};

/// Parameters of `imbres-connect`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectParams {
    /// Connections allowed per downstream container, per service pair (paper: 10).
    pub cap_per_downstream: u32,
    /// Seed of the k-means++ initialisation (default 0), for reproducible plans.
    pub seed: u64,
    /// Alg. 1 parameters.
    pub shift: ShiftParams,
    /// Performance hash table shape.
    pub table: TableParams,
}

impl Default for ConnectParams {
    fn default() -> Self {
        Self {
            cap_per_downstream: 10,
            seed: 0,
            shift: ShiftParams::default(),
            table: TableParams::default(),
        }
    }
}

/// Greedy matching of one group (step 4): upstream shares `up` against downstream shares `down`
/// (each normalised to sum to 1 here; non-finite or negative entries count as 0). Returns flows
/// `(upstream, downstream, amount)` whose amounts sum per upstream to its normalised share and per
/// downstream to its normalised share. Uses at most `up + down - 1` connections.
pub fn greedy_match(up: &[f64], down: &[f64]) -> Vec<(usize, usize, f64)> {
    let (a, t) = (normalised(up), normalised(down));
    let mut ui: Vec<usize> = (0..a.len()).filter(|&i| a[i] > 0.0).collect();
    let mut di: Vec<usize> = (0..t.len()).filter(|&j| t[j] > 0.0).collect();
    if ui.is_empty() || di.is_empty() {
        return Vec::new();
    }
    ui.sort_by(|&x, &y| a[y].total_cmp(&a[x]).then(x.cmp(&y)));
    di.sort_by(|&x, &y| t[x].total_cmp(&t[y]).then(x.cmp(&y)));
    // Remainders this small are rounding, not demand: skipping them keeps every total within
    // 1e-12 and avoids connections that would carry nothing.
    const EPS: f64 = 1e-12;
    let mut flows = Vec::with_capacity(ui.len() + di.len());
    let (mut i, mut j) = (0, 0);
    let (mut ru, mut rd) = (a[ui[0]], t[di[0]]);
    while i < ui.len() && j < di.len() {
        let x = ru.min(rd);
        flows.push((ui[i], di[j], x));
        ru -= x;
        rd -= x;
        if rd <= EPS {
            j += 1;
            rd = di.get(j).map_or(0.0, |&d| t[d]);
        }
        if ru <= EPS {
            i += 1;
            ru = ui.get(i).map_or(0.0, |&u| a[u]);
        }
    }
    // Rounding can leave the last downstream a hair short when upstreams ran out first.
    if let (Some(&last), true) = (ui.last(), j < di.len() && rd > 0.0) {
        flows.push((last, di[j], rd));
        for &d in &di[j + 1..] {
            flows.push((last, d, t[d]));
        }
    }
    flows
}

fn normalised(v: &[f64]) -> Vec<f64> {
    let clean: Vec<f64> = v
        .iter()
        .map(|&x| if x.is_finite() && x > 0.0 { x } else { 0.0 })
        .collect();
    let sum: f64 = clean.iter().sum();
    if sum <= 0.0 {
        return vec![0.0; v.len()];
    }
    clean.into_iter().map(|x| x / sum).collect()
}

/// Groups the cap allows (step 3) before looking at the latencies.
pub fn max_groups(upstreams: usize, downstreams: usize, cap: usize) -> usize {
    if upstreams == 0 || downstreams == 0 {
        return 0;
    }
    let paper = cap / downstreams;
    let fit = if downstreams == 1 {
        upstreams
    } else {
        cap.saturating_sub(upstreams) / (downstreams - 1)
    };
    paper.min(fit).min(upstreams).max(1)
}

/// The connections of one service pair.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionPlan {
    /// Per upstream: `(downstream, fraction of this upstream's traffic)`, fractions summing to 1.
    pub per_upstream: Vec<Vec<(usize, f64)>>,
    /// Group of every upstream.
    pub groups: Vec<usize>,
    /// Connections used (pairs with traffic).
    pub connections: usize,
    /// The cap the plan was made for.
    pub cap: usize,
}

impl ConnectionPlan {
    /// False when the pair needs more connections than the cap allows even with one group.
    pub fn within_cap(&self) -> bool {
        self.connections <= self.cap
    }
}

/// Steps 3-4 for one service pair: upstream shares and predicted latencies, downstream shares.
pub fn plan_connections(
    up_share: &[f64],
    up_latency: &[f64],
    down_share: &[f64],
    cap: usize,
    seed: u64,
) -> ConnectionPlan {
    let n = up_share.len();
    let groups = cluster(up_latency, max_groups(n, down_share.len(), cap), seed);
    let s = normalised(up_share);
    let mut per_upstream = vec![Vec::new(); n];
    let mut connections = 0;
    let group_count = groups.iter().copied().max().map_or(0, |g| g + 1);
    for g in 0..group_count {
        let members: Vec<usize> = (0..n).filter(|&u| groups[u] == g).collect();
        let shares: Vec<f64> = members.iter().map(|&u| s[u]).collect();
        let mass: f64 = shares.iter().sum();
        for (k, d, x) in greedy_match(&shares, down_share) {
            let u = members[k];
            // `x` is in group units; the upstream's own traffic is `s[u] / mass` of them.
            per_upstream[u].push((d, x * mass / s[u]));
            connections += 1;
        }
    }
    ConnectionPlan {
        per_upstream,
        groups,
        connections,
        cap,
    }
}

/// k-means over 1-D latencies into at most `k` groups (fewer when there are fewer distinct
/// values). Group ids are dense, `0..groups`.
fn cluster(latency: &[f64], k: usize, seed: u64) -> Vec<usize> {
    let mut distinct: Vec<f64> = latency.to_vec();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    let k = k.min(distinct.len());
    if k < 2 {
        return vec![0; latency.len()];
    }
    let rows: Vec<Vec<f64>> = latency.iter().map(|&l| vec![l]).collect();
    let labels = DenseMatrix::from_2d_vec(&rows).ok().and_then(|x| {
        let params = KMeansParameters {
            seed: Some(seed),
            ..KMeansParameters::default().with_k(k)
        };
        let model = KMeans::<f64, usize, DenseMatrix<f64>, Vec<usize>>::fit(&x, params).ok()?;
        model.predict(&x).ok()
    });
    // k-means only fails on inputs ruled out above; one group is the safe answer regardless.
    let Some(labels) = labels else {
        return vec![0; latency.len()];
    };
    let mut dense: BTreeMap<usize, usize> = BTreeMap::new();
    for &l in &labels {
        let next = dense.len();
        dense.entry(l).or_insert(next);
    }
    labels.iter().map(|l| dense[l]).collect()
}

/// Connections of the last plan for one service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    pub upstreams: usize,
    pub downstreams: usize,
    pub groups: usize,
    pub connections: usize,
    pub cap: usize,
    /// True when the rendezvous fallback was used (no table data yet).
    pub fallback: bool,
}

/// The `imbres-connect` planner.
pub struct ImbresConnect {
    params: ConnectParams,
    shifters: Shifters,
    table: PerfTable,
    stats: BTreeMap<String, ConnectionStats>,
}

impl std::fmt::Debug for ImbresConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImbresConnect")
            .field("params", &self.params)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ImbresConnect {
    /// With an in-memory table.
    pub fn new(params: ConnectParams) -> Self {
        Self {
            params,
            shifters: Shifters::new(params.shift),
            table: PerfTable::new(params.table),
            stats: BTreeMap::new(),
        }
    }

    /// The performance hash table (shared with scalers that read it).
    pub fn table(&self) -> &PerfTable {
        &self.table
    }

    /// Connections of the last plan, per service.
    pub fn stats(&self) -> &BTreeMap<String, ConnectionStats> {
        &self.stats
    }
}

impl Planner for ImbresConnect {
    fn name(&self) -> &str {
        "imbres-connect"
    }

    fn interval(&self) -> Duration {
        self.params.shift.interval()
    }

    fn perf_table(&mut self) -> Option<&mut PerfTable> {
        Some(&mut self.table)
    }

    fn plan(&mut self, snap: &Snapshot) -> PlanUpdate {
        self.table.observe(snap);
        self.shifters.step_all(snap);
        self.stats.clear();
        let mut up = PlanUpdate::default();
        for (name, svc) in &snap.services {
            let Some(sh) = self.shifters.get(name).filter(|s| !s.shares().is_empty()) else {
                continue;
            };
            let weights = ServicePlan {
                host_weights: sh.shares().clone(),
                ..Default::default()
            };
            if svc.callers.is_empty() {
                up.services.insert(name.clone(), weights);
                continue;
            }
            let (nu, nd) = (svc.callers.len(), svc.containers.len());
            let cap = self.params.cap_per_downstream as usize * nd;
            let (shares, latency) = self.upstreams(snap, &svc.callers);
            let Some(latency) = latency else {
                let k = (cap / nu).clamp(1, nd);
                let plan = ServicePlan {
                    subset_size: Some(k as u32),
                    ..Default::default()
                };
                up.services.insert(name.clone(), plan);
                let stats = ConnectionStats {
                    upstreams: nu,
                    downstreams: nd,
                    groups: 0,
                    connections: nu * k,
                    cap,
                    fallback: true,
                };
                self.stats.insert(name.clone(), stats);
                continue;
            };
            up.services.insert(name.clone(), weights);
            let down: Vec<f64> = svc
                .containers
                .iter()
                .map(|c| sh.container_share(&c.endpoint.host).unwrap_or(0.0))
                .collect();
            let cp = plan_connections(&shares, &latency, &down, cap, self.params.seed);
            for (caller, subset) in svc.callers.iter().zip(&cp.per_upstream) {
                let subset = subset
                    .iter()
                    .map(|&(d, share)| SubsetEntry {
                        endpoint: svc.containers[d].endpoint.key().to_string(),
                        share,
                    })
                    .collect();
                let plan = ServicePlan {
                    subset,
                    ..Default::default()
                };
                up.per_proxy
                    .entry(caller.clone())
                    .or_default()
                    .insert(name.clone(), plan);
            }
            let stats = ConnectionStats {
                upstreams: nu,
                downstreams: nd,
                groups: cp.groups.iter().copied().max().map_or(0, |g| g + 1),
                connections: cp.connections,
                cap,
                fallback: false,
            };
            self.stats.insert(name.clone(), stats);
        }
        up
    }
}

impl ImbresConnect {
    /// Per caller: its Alg. 1 share within its own service (mean of the known ones where its
    /// service is unknown) and its predicted latency (`None` while the table is empty; the median
    /// of the known ones fills gaps, and 0 for all when none is known: one group).
    fn upstreams(&self, snap: &Snapshot, callers: &[String]) -> (Vec<f64>, Option<Vec<f64>>) {
        let mut shares = Vec::with_capacity(callers.len());
        let mut latency = Vec::with_capacity(callers.len());
        for caller in callers {
            let info = snap.proxies.get(caller);
            let service = info.and_then(|i| Some((i, i.service.as_deref()?)));
            let share = service.and_then(|(i, s)| self.shifters.get(s)?.container_share(&i.host));
            let lat = service.zip(share).and_then(|((i, s), share)| {
                let rps = snap.services.get(s).map_or(0.0, |st| st.offered_rps) * share;
                let interference = snap
                    .hosts
                    .get(&i.host)
                    .map(Interference::from_pressure)
                    .unwrap_or_default();
                self.table.lookup(s, interference, rps)
            });
            shares.push(share);
            latency.push(lat);
        }
        let known: Vec<f64> = shares.iter().flatten().copied().collect();
        let fill = if known.is_empty() {
            1.0
        } else {
            known.iter().sum::<f64>() / known.len() as f64
        };
        let shares = shares.into_iter().map(|s| s.unwrap_or(fill)).collect();
        if self.table.is_empty() {
            return (shares, None);
        }
        let mut known: Vec<f64> = latency.iter().flatten().copied().collect();
        known.sort_by(f64::total_cmp);
        let median = known.get(known.len() / 2).copied().unwrap_or(0.0);
        (
            shares,
            Some(latency.into_iter().map(|l| l.unwrap_or(median)).collect()),
        )
    }
}

#[cfg(test)]
pub(crate) mod tests;
