//! `imbres`: Imbres' dynamic resource scaling (seed 002 §4.3), per-application scaling (Alg. 2)
//! feeding per-microservice scaling (Alg. 3, `per_service`). Application-scoped: one instance
//! per application, budgeting the containers of the services it owns.
//!
//! **Alg. 2, every round (default 60 s).** The load-resource ratio `P_t = W_t / R_t`, with `W`
//! the application's entry load (its flows' offered requests per second; without flows, the entry
//! edges into its services) and `R` its owned containers. The paper's feedback is one flow's tail
//! latency `L` against its `SLA`; an application with several flows is read through the
//! normalised tail `l = max over flows (tail at the flow objective's percentile / its sla_ms)`
//! (p50, p95 or p99, whichever is nearest), with the SLA 1. For one flow the step is the paper's
//! exactly: `dP` is scale-free in `L` (`(SLA - L) / (L - L')` and `(SLA - L) / L` are unchanged
//! when `L`, `L'` and `SLA` are divided by `sla_ms`). Then
//! - Newton (`eta1` 0.5) when `(l_t - l_{t-1})(P_t - P_{t-1}) > 0` and
//!   `|l_t - l_{t-1}| / l_t >= beta` (0.1): `dP = eta1 (P_t - P_{t-1})(1 - l_t) / (l_t - l_{t-1})`;
//! - otherwise first order (`eta2` 0.2): `dP = eta2 (1 - l_t) P_t / l_t`;
//!
//! and `R* = W / (P_t + dP)`, `dR = round(R* - R)`. A tail above the SLA lowers `P` and adds
//! containers; below, it removes them. A Newton step can overshoot to `P_t + dP <= 0` (no
//! container count serves that); it is taken as the largest step up.
//!
//! **Operator guards** (not in the paper; the paper's scaler acts every round on whatever
//! latency it reads): `dR` is capped at `max_step` containers per round (default half the
//! application, at least 1) and to what `[min_replicas, max_replicas]` per service allow; no
//! scale-down within `cooldown_ms` of a scale-up (the new containers' latency is not measured yet);
//! and no scale-down while Alg. 1 load shifting has not converged: each snapshot the scaler sees
//! (every planner round, through [`Scaler::observe`]) records each owned service's host shares
//! `D_j / sum D`, and while any service's shares moved by more than `converged_shift` (half the L1
//! distance) between its last two observations, a lower latency may be the shift's doing, not
//! spare capacity (for at most `max_hold_rounds`, 2, rounds in a row: in the lab, shares read
//! from 10 s windows under `imbres-connect`'s regrouping moved by 0.1-0.6 every report and held
//! every scale-down of a 180 s run). Scale-up is never held. And no removal takes a service below the containers
//! that keep each one's busy fraction (load x service time / `servers_per_container`) at or
//! under `max_busy` (0.7): the table cannot predict past its top load bucket, and without this
//! guard Alg. 3 took `url-shorten` on `imbalance` from 6 containers to 1 in one round (p95 17 s).
//!
//! **Capacity floor on the way up** (not in the paper either). While the tail misses the SLA
//! (`l > 1`), every owned service is brought at least to that same busy floor, measured against
//! its demand rather than its throughput, and `dR` is at least the sum of the shortfalls (not
//! capped by `max_step`; Alg. 3 hands out what Alg. 2 asks beyond them). From far below the
//! containers needed (a cold start, a load step) Alg. 2 alone grows `R` by at most `1 / (1 -
//! eta2)` = 1.25x a round, while a backlog builds that keeps the tail high after capacity has
//! caught up; on `imbalance-cold` it never met the SLA in 600 s. Both inputs are read so that
//! they survive overload:
//! - demand: what the service is offered (the calls its callers sent, queued and blocked ones
//!   included; the flows' offered load at an entry), not what it completed, and at least its
//!   callers' demand carried down the call graph by visit ratios (`app::demand`), so a service
//!   behind a saturated one is sized in the same round;
//! - service time: the lowest over its containers of `min(mean inbound latency, k / completion
//!   rate)`, with `k` the requests a container serves at once: a saturated container completes
//!   `k / s` per second however long its queue, while an idle one's mean latency is `s`.
//!
//! `k` is `servers_per_container` when set, else (default 0) each container's reported CPU limit
//! in cores (the simulator reports its `concurrency`), else 1.
//!
//! **`phi` for Alg. 3** is the scaler's own performance hash table
//! ([`crate::planners::perf_table`], default shape), fed from every snapshot it sees and read
//! with [`PerfTable::lookup_linear`] (the table's 4 load buckets would make the gain of one
//! container 0 whenever both loads share a bucket). While a service's table has fewer than two
//! load points, a queueing model stands in (`per_service::queueing_p95_ms`).
//!
//! A service without containers is not scaled (bringing a service back from zero is brownout's
//! job); a service outside `[min_replicas, max_replicas]` is left where it is, only moved towards
//! the range.

mod per_service;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use self::per_service::{Candidate, busy_floor, distribute, imbalance, queueing_p95_ms};
use super::app::{self, Group};
use crate::{
    ScaleDecision, Scaler, Snapshot,
    planners::perf_table::{Interference, PerfTable, TableParams},
};

/// Tunables: the paper's Alg. 2 values and the operator guards described in the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImbresParams {
    /// Newton learning rate `eta1` (paper: 0.5).
    pub eta1: f64,
    /// First-order learning rate `eta2` (paper: 0.2).
    pub eta2: f64,
    /// Relative latency change that allows a Newton step, `beta` (paper: 0.1).
    pub beta: f64,
    /// Fewest containers per service. Default 1.
    pub min_replicas: u32,
    /// Most containers per service. Default 20.
    pub max_replicas: u32,
    /// Most containers added or removed per round over the application; 0 (default): half the
    /// application's containers, at least 1.
    pub max_step: u32,
    /// No scale-down within this long after a scale-up, milliseconds. Default 120000.
    pub cooldown_ms: u64,
    /// Largest movement of a service's host shares (half the L1 distance between two
    /// observations) at which load shifting counts as converged; above it no scale-down.
    /// Default 0.05.
    pub converged_shift: f64,
    /// Rounds in a row moving shares may hold a scale-down; then it goes ahead (shares that
    /// never settle, from noisy windows or connection plans regrouped every round, would
    /// otherwise hold it for ever). Default 2.
    pub max_hold_rounds: u32,
    /// Busy fraction per container a removal may not pass, and a scale-up that misses the SLA
    /// reaches: a service keeps at least `ceil(demand * service time / (servers_per_container *
    /// max_busy))` containers. Default 0.7.
    pub max_busy: f64,
    /// Requests a container serves at once, for that guard and the queueing model (the analogue
    /// of the HPA's `capacity`); 0 (default): each container's reported CPU limit in cores, else 1.
    pub servers_per_container: f64,
    /// Round period, milliseconds (paper: 60000).
    pub interval_ms: u64,
}

impl Default for ImbresParams {
    fn default() -> Self {
        Self {
            eta1: 0.5,
            eta2: 0.2,
            beta: 0.1,
            min_replicas: 1,
            max_replicas: 20,
            max_step: 0,
            cooldown_ms: 120_000,
            converged_shift: 0.05,
            max_hold_rounds: 2,
            max_busy: 0.7,
            servers_per_container: 0.0,
            interval_ms: 60_000,
        }
    }
}

impl ImbresParams {
    /// The first field that cannot work, as `(field, value, reason)`.
    pub fn check(&self) -> Result<(), (&'static str, String, &'static str)> {
        let pos = |v: f64| v.is_finite() && v > 0.0;
        for (field, v) in [("eta1", self.eta1), ("eta2", self.eta2)] {
            if !pos(v) {
                return Err((field, v.to_string(), "must be finite and > 0"));
            }
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(("beta", self.beta.to_string(), "must be finite and >= 0"));
        }
        if self.min_replicas == 0 {
            return Err((
                "min_replicas",
                "0".into(),
                "must be >= 1 (a service without containers cannot serve)",
            ));
        }
        if !(self.max_busy.is_finite() && self.max_busy > 0.0 && self.max_busy <= 1.0) {
            return Err(("max_busy", self.max_busy.to_string(), "must be in (0, 1]"));
        }
        if !(self.servers_per_container.is_finite() && self.servers_per_container >= 0.0) {
            return Err((
                "servers_per_container",
                self.servers_per_container.to_string(),
                "must be finite and >= 0 (0: each container's reported CPU limit, else 1)",
            ));
        }
        if self.max_replicas < self.min_replicas {
            return Err((
                "max_replicas",
                self.max_replicas.to_string(),
                "must be >= min_replicas",
            ));
        }
        if !(self.converged_shift.is_finite() && (0.0..=1.0).contains(&self.converged_shift)) {
            return Err((
                "converged_shift",
                self.converged_shift.to_string(),
                "must be in [0, 1]",
            ));
        }
        if self.interval_ms == 0 {
            return Err(("interval_ms", "0".into(), "must be > 0"));
        }
        Ok(())
    }
}

/// `(l, P)` of one round.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    l: f64,
    p: f64,
}

/// The ratio change Alg. 2 asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Step {
    dp: f64,
    newton: bool,
}

/// Alg. 2 lines 5-8: the change of `P` from this round's `now` and the last round's `prev`.
fn alg2(params: &ImbresParams, prev: Option<Point>, now: Point) -> Step {
    if let Some(prev) = prev {
        let (dl, dp) = (now.l - prev.l, now.p - prev.p);
        if dl * dp > 0.0 && dl.abs() / now.l >= params.beta {
            return Step {
                dp: params.eta1 * dp * (1.0 - now.l) / dl,
                newton: true,
            };
        }
    }
    Step {
        dp: params.eta2 * (1.0 - now.l) * now.p / now.l,
        newton: false,
    }
}

/// A service's host shares `D_j / sum D`.
type Shares = BTreeMap<String, f64>;

/// Half the L1 distance between two share vectors (0: the same split, 1: disjoint hosts).
fn moved(a: &Shares, b: &Shares) -> f64 {
    let hosts: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    hosts
        .into_iter()
        .map(|h| (a.get(h).unwrap_or(&0.0) - b.get(h).unwrap_or(&0.0)).abs())
        .sum::<f64>()
        / 2.0
}

/// Imbres' scaler over the applications of the services it owns.
#[derive(Clone, Debug)]
pub struct Imbres {
    params: ImbresParams,
    /// `None` until the schedule says: every service of the view.
    owned: Option<BTreeSet<String>>,
    table: PerfTable,
    /// Per application: the last round's `(l, P)`.
    last: BTreeMap<String, Point>,
    /// Per application: when it was last scaled up.
    last_up: BTreeMap<String, Duration>,
    /// Per service: host shares of its last two observations with load, older first.
    shares: BTreeMap<String, (Option<Shares>, Shares)>,
    /// Per application: rounds in a row whose scale-down moving shares held.
    held: BTreeMap<String, u32>,
}

impl Imbres {
    pub fn new(params: ImbresParams) -> Self {
        Self {
            params,
            owned: None,
            table: PerfTable::new(TableParams::default()),
            last: BTreeMap::new(),
            last_up: BTreeMap::new(),
            shares: BTreeMap::new(),
            held: BTreeMap::new(),
        }
    }

    pub fn params(&self) -> &ImbresParams {
        &self.params
    }

    /// The performance hash table Alg. 3 reads.
    pub fn table(&self) -> &PerfTable {
        &self.table
    }

    /// Folds a snapshot into the table and the share history.
    fn learn(&mut self, snap: &Snapshot) {
        self.table.observe(snap);
        for (name, svc) in &snap.services {
            if self.owned.as_ref().is_some_and(|o| !o.contains(name)) {
                continue;
            }
            let d = app::host_loads(svc);
            let total: f64 = d.values().sum();
            if !(total.is_finite() && total > 0.0) {
                continue;
            }
            let now: Shares = d
                .into_iter()
                .map(|(h, v)| (h.to_string(), v / total))
                .collect();
            match self.shares.get_mut(name) {
                Some((older, newer)) => *older = Some(std::mem::replace(newer, now)),
                None => {
                    self.shares.insert(name.clone(), (None, now));
                }
            }
        }
    }

    /// The first owned service of `g` whose shares still move, with how far.
    fn shifting(&self, g: &Group<'_>) -> Option<(String, f64)> {
        g.owned.iter().find_map(|(name, _)| {
            let (Some(older), newer) = self.shares.get(*name)? else {
                return None;
            };
            let m = moved(older, newer);
            (m > self.params.converged_shift).then(|| (name.to_string(), m))
        })
    }

    /// `phi_i(I, w)`: the table's line through its load points, or the queueing model while it
    /// has fewer than two.
    fn phi(&self, c: &Candidate<'_>, w: f64) -> Option<f64> {
        if self.table.load_cells(c.name, c.interference) >= 2 {
            self.table.lookup_linear(c.name, c.interference, w)
        } else {
            queueing_p95_ms(c.service_time_ms?, w, c.servers)
        }
    }

    /// Alg. 2 and Alg. 3 for one application.
    fn scale_group(&mut self, snap: &Snapshot, g: &Group<'_>) -> Vec<ScaleDecision> {
        let p = self.params;
        let owned: Vec<_> = g
            .owned
            .iter()
            .filter(|(_, s)| !s.containers.is_empty())
            .collect();
        let r: u32 = owned.iter().map(|(_, s)| app::count(s)).sum();
        let from_flows: f64 = g.flows(snap).map(|(_, f)| f.offered_rps).sum();
        let w = if from_flows > 0.0 {
            from_flows
        } else {
            snap.edges
                .iter()
                .filter(|e| e.caller.is_none() && g.members.contains(e.callee.as_str()))
                .map(|e| e.rps)
                .sum()
        };
        // The normalised tail and the flow that sets it.
        let worst = g
            .flows(snap)
            .filter_map(|(n, f)| Some((n, app::flow_ratios(f)?.1, f.sla.as_ref()?.percentile)))
            .filter(|(_, l, _)| l.is_finite() && *l > 0.0)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let (Some((flow, l, pct)), true) = (worst, r > 0 && w.is_finite() && w > 0.0) else {
            // Nothing to steer by; the next round with data starts afresh (first order).
            self.last.remove(g.name);
            return Vec::new();
        };
        let now = Point {
            l,
            p: w / f64::from(r),
        };
        let step = alg2(&p, self.last.insert(g.name.to_string(), now), now);
        let target = now.p + step.dp;
        let max_step = i64::from(if p.max_step == 0 {
            (r / 2).max(1)
        } else {
            p.max_step
        });
        // `round(R* - R)`, saturated to i64; `None` for the largest step up.
        let asked = (target.is_finite() && target > 0.0)
            .then(|| (w / target - f64::from(r)).round() as i64);
        let capped = asked.map_or(max_step, |a| a.clamp(-max_step, max_step));
        let room_up: i64 = owned
            .iter()
            .map(|(_, s)| i64::from(p.max_replicas.saturating_sub(app::count(s))))
            .sum();
        let room_down: i64 = owned
            .iter()
            .map(|(_, s)| i64::from(app::count(s).saturating_sub(p.min_replicas)))
            .sum();
        let demand = app::demand(snap, g);
        let cands: Vec<Candidate<'_>> = owned
            .iter()
            .map(|(n, s)| candidate(snap, &p, n, s, demand.get(n).copied()))
            .collect();
        // The capacity floor: what each service lacks while the tail misses the SLA.
        let lift: Vec<u32> = cands
            .iter()
            .map(|c| {
                if l > 1.0 {
                    c.floor.min(p.max_replicas).saturating_sub(c.containers)
                } else {
                    0
                }
            })
            .collect();
        let lifted: i64 = lift.iter().map(|&k| i64::from(k)).sum();
        let dr = if lifted > 0 {
            capped.max(lifted)
        } else {
            capped
        }
        .clamp(-room_down, room_up);
        if dr == 0 {
            return Vec::new();
        }
        if dr < 0 {
            let cooling = self.last_up.get(g.name).is_some_and(|&t| {
                snap.now.saturating_sub(t) < Duration::from_millis(p.cooldown_ms)
            });
            if cooling {
                return Vec::new();
            }
            if self.shifting(g).is_some() {
                let held = self.held.entry(g.name.to_string()).or_default();
                if *held < p.max_hold_rounds {
                    *held += 1;
                    return Vec::new();
                }
            }
        }
        self.held.remove(g.name);

        // The floor first, then Alg. 3 hands out the rest from there.
        let raised: Vec<Candidate<'_>> = cands
            .iter()
            .zip(&lift)
            .map(|(c, &k)| Candidate {
                containers: c.containers + k,
                ..c.clone()
            })
            .collect();
        let picks = distribute(
            dr - lifted,
            &raised,
            p.min_replicas,
            p.max_replicas,
            |c, w| self.phi(c, w),
        );
        if picks.is_empty() && lifted == 0 {
            return Vec::new();
        }
        if dr > 0 {
            self.last_up.insert(g.name.to_string(), snap.now);
        }
        let f: i64 = if dr > 0 { 1 } else { -1 };
        // Per candidate: containers wanted and `G` of its first pick (NaN: none).
        let mut to: Vec<(i64, f64)> = raised
            .iter()
            .map(|c| (i64::from(c.containers), f64::NAN))
            .collect();
        for pick in &picks {
            let t = &mut to[pick.service];
            t.0 += f;
            if t.1.is_nan() {
                t.1 = pick.g;
            }
        }
        let how = match (asked, step.newton) {
            (None, _) => "P* <= 0, largest step up".to_string(),
            (Some(_), true) => format!("{target:.1} req/s per container, newton"),
            (Some(_), false) => format!("{target:.1} req/s per container, first order"),
        };
        let done = (i64::try_from(picks.len()).unwrap_or(i64::MAX) + lifted) * f;
        let note = match asked {
            _ if lifted > 0 => format!(
                " ({lifted} to the capacity floor{})",
                asked.map_or(String::new(), |a| format!("; R* - R = {a:+}"))
            ),
            Some(a) if a != done => format!(" (R* - R = {a:+}, capped)"),
            _ => String::new(),
        };
        cands
            .iter()
            .zip(&to)
            .zip(&lift)
            .filter(|((c, t), _)| t.0 != i64::from(c.containers))
            .map(|((c, &(n, g_first)), &k)| {
                let why = match (k, g_first.is_nan()) {
                    (0, _) => format!("G {g_first:.2}"),
                    (k, true) => format!("floor +{k}"),
                    (k, false) => format!("floor +{k}, G {g_first:.2}"),
                };
                ScaleDecision {
                    service: c.name.to_string(),
                    from: c.containers,
                    to: u32::try_from(n).unwrap_or(0),
                    reason: format!(
                        "imbres: tail/SLA {l:.2} (flow {flow} at p{pct}; P {:.1} -> {how}), dR {done:+}{note}, {why}",
                        now.p,
                    ),
                    ..Default::default()
                }
            })
            .collect()
    }
}

/// What Alg. 3 reads of service `name`: its containers, its load `rho` and imbalance `alpha`
/// from its per-host loads, the mean interference `I` over the hosts holding it (hosts without a
/// pressure report left out), the overload-robust service time and its servers per container
/// (see the module doc), and the busy floor under its `demand` (its load when unknown).
fn candidate<'a>(
    snap: &Snapshot,
    p: &ImbresParams,
    name: &'a str,
    svc: &crate::ServiceState,
    demand: Option<f64>,
) -> Candidate<'a> {
    let d = app::host_loads(svc);
    let loads: Vec<f64> = d.values().copied().collect();
    let pressures: Vec<Interference> = d
        .keys()
        .filter_map(|h| snap.hosts.get(*h))
        .map(Interference::from_pressure)
        .collect();
    let n = pressures.len().max(1) as f64;
    let interference = Interference {
        cpu: pressures.iter().map(|i| i.cpu).sum::<f64>() / n,
        membw: pressures.iter().map(|i| i.membw).sum::<f64>() / n,
        net: pressures.iter().map(|i| i.net).sum::<f64>() / n,
    };
    let service_time_ms = svc
        .containers
        .iter()
        .filter_map(|c| {
            let w = c.inbound.filter(|w| w.count > 0)?;
            let rate = w.count as f64 / w.window_s;
            let saturated = super::servers(c, p.servers_per_container) * 1000.0 / rate;
            Some(if saturated.is_finite() && saturated > 0.0 {
                w.mean_ms.min(saturated)
            } else {
                w.mean_ms
            })
        })
        .filter(|m| m.is_finite() && *m > 0.0)
        .min_by(f64::total_cmp);
    let servers = if svc.containers.is_empty() {
        1.0
    } else {
        svc.containers
            .iter()
            .map(|c| super::servers(c, p.servers_per_container))
            .sum::<f64>()
            / svc.containers.len() as f64
    };
    let load_rps: f64 = loads.iter().sum();
    Candidate {
        name,
        containers: app::count(svc),
        load_rps,
        alpha: imbalance(&loads),
        interference,
        service_time_ms,
        servers,
        floor: busy_floor(
            demand.unwrap_or(load_rps).max(load_rps),
            service_time_ms,
            servers,
            p.max_busy,
        ),
    }
}

impl Scaler for Imbres {
    fn name(&self) -> &str {
        "imbres"
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.params.interval_ms)
    }

    fn set_owned(&mut self, services: &BTreeSet<String>) {
        self.owned = Some(services.clone());
    }

    fn observes(&self) -> bool {
        true
    }

    fn observe(&mut self, snap: &Snapshot) {
        self.learn(snap);
    }

    fn scale(&mut self, snap: &Snapshot) -> Vec<ScaleDecision> {
        self.learn(snap);
        let groups = app::groups(snap, self.owned.as_ref());
        groups
            .iter()
            .flat_map(|g| self.scale_group(snap, g))
            .collect()
    }
}

#[cfg(test)]
mod tests;
