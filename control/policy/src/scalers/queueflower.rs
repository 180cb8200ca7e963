//! `queueflower`: QueueFlower's queue balancing (seed 003 §IV, Alg. 1). Application-scoped: a
//! fixed budget of `X` pods is split over the application's services in proportion to their
//! virtual queues, every round (default 60 s).
//!
//! **Queue estimation.** `q_n = w1 l_n / l_mean + w2 sum_{f in F_n} c_f + w3 sum_{f in F_n} g_f`,
//! weights 1 each by default. `l_n` is service `n`'s mean latency (its containers' inbound means
//! weighted by their requests; outbound where a container has no inbound report; 0 without
//! requests: no queue) and `l_mean` the mean of `l_n` over the application's services with
//! requests. The paper leaves the weights and units open; dividing by `l_mean` makes the first
//! term dimensionless like the other two (a service at the application's mean latency counts 1,
//! as does a flow at twice its SLA), so the defaults weigh the three alike whatever the
//! application's latency scale. `c_f = max(0, mean_f / sla_f - 1)` and
//! `g_f = max(0, tail_f / sla_f - 1)` are flow `f`'s mean and tail (at its objective's
//! percentile: the nearest of p50, p95, p99) end-to-end SLA violations, over the flows `F_n` whose
//! route reaches `n` (services reachable from the flow's entry along the observed call edges).
//! The first round uses `q_n = 1` (Alg. 1's initialisation: an even split).
//!
//! **Allocation.** The paper's `x_n = floor(q_n / sum q * X)` can give a service 0 pods, and a
//! service with none cannot serve (nor be measured again); so every service first gets 1 pod,
//! and the remaining `X - N` are split as the paper splits `X`: `floor(q_n / sum q * (X - N))`
//! each, then the pods left over drawn one at a time from the distribution `q / sum q` with a
//! seeded RNG (`seed`, default 0). With `X < N`, every service gets 1 (over budget; the reason
//! says so). Queues that are all 0 or not finite give the even split.
//!
//! `X` is `budget`, or when 0 (default) the application's container count the first time the
//! scaler runs, fixed from then on (the paper's 24 pods is its testbed's, not a rule).

use std::{collections::BTreeSet, time::Duration};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use super::app::{self, Budgets, Group};
use crate::{ScaleDecision, Scaler, Snapshot};

/// Tunables; the paper leaves the weights open.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueFlowerParams {
    /// Weight of the normalised mean latency of the service. Default 1.
    pub w1: f64,
    /// Weight of the summed mean-latency SLA violations of its flows. Default 1.
    pub w2: f64,
    /// Weight of the summed tail-latency SLA violations of its flows. Default 1.
    pub w3: f64,
    /// Pods of the application, `X`; 0 (default): its container count at the first round.
    pub budget: u32,
    /// Seed of the remainder draw. Default 0.
    pub seed: u64,
    /// Round period, milliseconds. Default 60000.
    pub interval_ms: u64,
}

impl Default for QueueFlowerParams {
    fn default() -> Self {
        Self {
            w1: 1.0,
            w2: 1.0,
            w3: 1.0,
            budget: 0,
            seed: 0,
            interval_ms: 60_000,
        }
    }
}

impl QueueFlowerParams {
    /// The first field that cannot work, as `(field, value, reason)`.
    pub fn check(&self) -> Result<(), (&'static str, String, &'static str)> {
        for (field, v) in [("w1", self.w1), ("w2", self.w2), ("w3", self.w3)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err((field, v.to_string(), "must be finite and >= 0"));
            }
        }
        if self.interval_ms == 0 {
            return Err(("interval_ms", "0".into(), "must be > 0"));
        }
        Ok(())
    }
}

/// Pods per service for queues `q` and budget `x`: 1 each, then the rest in proportion to `q`
/// (floors, then the remainder drawn from `q / sum q`). Negative or non-finite queues count as 0;
/// all 0: an even split. With `x < q.len()`, 1 each.
pub(crate) fn allocate(q: &[f64], x: u32, rng: &mut impl Rng) -> Vec<u32> {
    let n = u32::try_from(q.len()).unwrap_or(u32::MAX);
    let mut out = vec![1u32; q.len()];
    if x <= n || q.is_empty() {
        return out;
    }
    let clean: Vec<f64> = q
        .iter()
        .map(|&v| if v.is_finite() && v > 0.0 { v } else { 0.0 })
        .collect();
    let sum: f64 = clean.iter().sum();
    let weights = if sum.is_finite() && sum > 0.0 {
        clean
    } else {
        vec![1.0; q.len()]
    };
    let sum: f64 = weights.iter().sum();
    let rest = x - n;
    let mut given = 0u32;
    for (o, w) in out.iter_mut().zip(&weights) {
        // In [0, rest]: the share is in [0, 1] up to rounding, and the sum of floors stays
        // within `rest` (checked below all the same).
        let k = (w / sum * f64::from(rest))
            .floor()
            .clamp(0.0, f64::from(rest)) as u32;
        let k = k.min(rest - given);
        *o += k;
        given += k;
    }
    for _ in given..rest {
        let mut u = rng.random::<f64>() * sum;
        // The last service with weight takes what rounding leaves of `u`.
        let last = weights.iter().rposition(|&w| w > 0.0).unwrap_or(0);
        let pick = weights
            .iter()
            .position(|&w| {
                u -= w;
                w > 0.0 && u < 0.0
            })
            .unwrap_or(last);
        out[pick] += 1;
    }
    out
}

/// QueueFlower over the applications of the services it owns.
#[derive(Clone, Debug)]
pub struct QueueFlower {
    params: QueueFlowerParams,
    /// `None` until the schedule says: every service of the view.
    owned: Option<BTreeSet<String>>,
    budgets: Budgets,
    /// Applications past their first round.
    started: BTreeSet<String>,
    rng: StdRng,
}

impl QueueFlower {
    pub fn new(params: QueueFlowerParams) -> Self {
        Self {
            params,
            owned: None,
            budgets: Budgets::new(params.budget),
            started: BTreeSet::new(),
            rng: StdRng::seed_from_u64(params.seed),
        }
    }

    pub fn params(&self) -> &QueueFlowerParams {
        &self.params
    }

    /// `q_n` per owned service of `g`, in its order.
    fn queues(&self, snap: &Snapshot, g: &Group<'_>) -> Vec<f64> {
        let p = &self.params;
        let latency: Vec<Option<f64>> = g
            .members
            .iter()
            .filter_map(|m| snap.services.get(*m))
            .map(|s| app::mean_latency_ms(s))
            .collect();
        let known: Vec<f64> = latency.into_iter().flatten().collect();
        let l_mean = known.iter().sum::<f64>() / known.len().max(1) as f64;
        // Per flow: (services its route reaches, c_f, g_f).
        let flows: Vec<(BTreeSet<&str>, f64, f64)> = g
            .flows(snap)
            .filter_map(|(_, f)| {
                let (mean, tail) = app::flow_ratios(f)?;
                Some((
                    app::reach(snap, &f.entry),
                    (mean - 1.0).max(0.0),
                    (tail - 1.0).max(0.0),
                ))
            })
            .collect();
        g.owned
            .iter()
            .map(|(name, svc)| {
                let l = match app::mean_latency_ms(svc) {
                    Some(l) if l_mean > 0.0 => l / l_mean,
                    _ => 0.0,
                };
                let through = flows.iter().filter(|(r, _, _)| r.contains(name));
                let (c, gv) = through.fold((0.0, 0.0), |(c, gv), (_, cf, gf)| (c + cf, gv + gf));
                p.w1 * l + p.w2 * c + p.w3 * gv
            })
            .collect()
    }

    fn scale_group(&mut self, snap: &Snapshot, g: &Group<'_>) -> Vec<ScaleDecision> {
        let n = g.owned.len();
        let x = self.budgets.get(g.name, g.containers());
        let first = self.started.insert(g.name.to_string());
        let q = if first {
            vec![1.0; n]
        } else {
            self.queues(snap, g)
        };
        let to = allocate(&q, x, &mut self.rng);
        let sum: f64 = q.iter().filter(|v| v.is_finite() && **v > 0.0).sum();
        app::changes(g, &to, |i| {
            let how = if x < u32::try_from(n).unwrap_or(u32::MAX) {
                format!("budget {x} pods < {n} services: 1 each")
            } else if first {
                format!("first round: {x} pods split evenly over {n} services")
            } else {
                format!(
                    "queue {:.2} of {sum:.2}: 1 + its share of {} pods (budget {x}, {n} services)",
                    q[i],
                    x - u32::try_from(n).unwrap_or(0),
                )
            };
            format!("queueflower: {how}")
        })
    }
}

impl Scaler for QueueFlower {
    fn name(&self) -> &str {
        "queueflower"
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.params.interval_ms)
    }

    fn set_owned(&mut self, services: &BTreeSet<String>) {
        self.owned = Some(services.clone());
    }

    fn scale(&mut self, snap: &Snapshot) -> Vec<ScaleDecision> {
        let groups = app::groups(snap, self.owned.as_ref());
        groups
            .iter()
            .flat_map(|g| self.scale_group(snap, g))
            .collect()
    }
}

#[cfg(test)]
mod tests;
