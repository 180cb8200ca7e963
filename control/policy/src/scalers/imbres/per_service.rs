//! Imbres Alg. 3, per-microservice scaling (seed 002 §4.3.2): hands the application's `dR` out one
//! container at a time to the most critical service.
//!
//! `G_i = alpha_i * g_i`, with the load imbalance index `alpha_i = 1 + sigma_i N_i / sum_j D_j^i`
//! (`D_j^i` service `i`'s load on host `j`, `sigma_i` their population standard deviation over the
//! `N_i` hosts holding its containers; 1 without load) and the gain of eq. 5 (adding, `f = +1`) or
//! eq. 6 (removing, `f = -1`): `g_i = phi_i(I_i, rho_i / C_i) - phi_i(I_i, rho_i / (C_i + f))`. A
//! removal's gain is the (negative) latency change, so the largest `G` is the service that loses
//! least. As the paper suggests, the scores sit in a priority queue and only the picked service's
//! is recomputed and pushed back: `O(dR log m)` for `m` services. A service at its maximum
//! (adding) or minimum (removing) leaves the queue; equal scores go to the service whose name
//! sorts first, so the result does not depend on the input order.

use std::{cmp::Ordering, collections::BinaryHeap};

use crate::planners::perf_table::Interference;

/// What Alg. 3 knows of one service.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Candidate<'a> {
    pub name: &'a str,
    /// `C_i`.
    pub containers: u32,
    /// `rho_i`, requests per second over the whole service.
    pub load_rps: f64,
    /// `alpha_i`.
    pub alpha: f64,
    /// `I_i`.
    pub interference: Interference,
    /// Service-time estimate for the queueing fallback of `phi`, milliseconds.
    pub service_time_ms: Option<f64>,
    /// Requests one container serves at once (the queueing model's servers).
    pub servers: f64,
    /// Containers that keep each one's busy fraction at `max_busy` under the service's demand
    /// ([`busy_floor`]): removals stop there, and a scale-up while the tail misses the SLA
    /// brings the service at least up to it; 0: no estimate.
    pub floor: u32,
}

/// The fewest containers that keep each one's busy fraction, `load s / 1000 / (C servers)`, at
/// or below `max_busy`; 0 without a service-time estimate. Removals stop there: the paper's table
/// has no key past its top load bucket and its linear lookup does not see the queueing cliff, so
/// without this guard Alg. 3 takes one service with a flat prediction down to one container.
pub(crate) fn busy_floor(
    load_rps: f64,
    service_time_ms: Option<f64>,
    servers: f64,
    max_busy: f64,
) -> u32 {
    let Some(s) = service_time_ms else {
        return 0;
    };
    let need = load_rps * s / 1000.0 / (servers * max_busy);
    if need.is_finite() && need > 0.0 {
        need.ceil().min(f64::from(u32::MAX)) as u32
    } else {
        0
    }
}

/// `alpha = 1 + sigma N / sum D` over the per-host loads `d` (1 without load).
pub(crate) fn imbalance(d: &[f64]) -> f64 {
    let n = d.len() as f64;
    let sum: f64 = d.iter().sum();
    if !(sum.is_finite() && sum > 0.0) {
        return 1.0;
    }
    let mean = sum / n;
    let sigma = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    1.0 + sigma * n / sum
}

/// One container handed out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Pick {
    /// Index into the candidates.
    pub service: usize,
    /// `G` when it was picked.
    pub g: f64,
}

/// A queue entry: the highest `g` first, then the name that sorts first.
struct Entry<'a> {
    g: f64,
    name: &'a str,
    service: usize,
}

impl PartialEq for Entry<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry<'_> {}

impl PartialOrd for Entry<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.g
            .total_cmp(&other.g)
            .then_with(|| other.name.cmp(self.name))
    }
}

/// Hands out `dr` containers (`> 0` adds, `< 0` removes) among `cands` within `[min, max]`
/// containers each (and no removal below a candidate's `floor`); returns the picks in order (fewer than `|dr|` when every service reached its
/// bound). `phi(candidate, load per container)` predicts its latency; a prediction it cannot make
/// counts as no gain.
pub(crate) fn distribute(
    dr: i64,
    cands: &[Candidate<'_>],
    min: u32,
    max: u32,
    phi: impl Fn(&Candidate<'_>, f64) -> Option<f64>,
) -> Vec<Pick> {
    let f: i64 = if dr > 0 { 1 } else { -1 };
    let mut counts: Vec<u32> = cands.iter().map(|c| c.containers).collect();
    let open = |i: usize, c: u32| {
        if f > 0 {
            c < max
        } else {
            c > min.max(1).max(cands[i].floor)
        }
    };
    let score = |i: usize, c: u32| {
        let cand = &cands[i];
        let per = |n: i64| cand.load_rps / n as f64;
        let g = match (
            phi(cand, per(i64::from(c))),
            phi(cand, per(i64::from(c) + f)),
        ) {
            (Some(now), Some(then)) => now - then,
            _ => 0.0,
        };
        let g = cand.alpha * g;
        // A NaN would sort above every number in `total_cmp`; it is no evidence of a gain.
        if g.is_nan() { f64::NEG_INFINITY } else { g }
    };
    let mut queue: BinaryHeap<Entry<'_>> = (0..cands.len())
        .filter(|&i| open(i, counts[i]))
        .map(|i| Entry {
            g: score(i, counts[i]),
            name: cands[i].name,
            service: i,
        })
        .collect();
    let mut picks = Vec::new();
    let mut left = dr.unsigned_abs();
    while left > 0 {
        let Some(e) = queue.pop() else {
            break;
        };
        picks.push(Pick {
            service: e.service,
            g: e.g,
        });
        left -= 1;
        let c = &mut counts[e.service];
        *c = if f > 0 { *c + 1 } else { *c - 1 };
        if open(e.service, *c) {
            queue.push(Entry {
                g: score(e.service, *c),
                ..e
            });
        }
    }
    picks
}

/// `phi` when the performance table has fewer than two load points for a service: the p95
/// response time of an M/M/1 queue at the container's per-server load,
/// `ln(20) s / (1 - min(w s / 1000 / k, 0.95))`, with `s` the service time in milliseconds (the
/// service's overload-robust estimate, see `candidate` in the parent module), `w` the load per
/// container in requests per second and `k` the requests a container serves at once (an M/M/1
/// curve at the M/M/k's utilisation: it overstates the tail of `k > 1` servers at moderate load,
/// alike for every service). The `ln(20)` turns the M/M/1 mean into its 95th percentile (response
/// times are exponential with rate `(1 - rho) / s`), so services predicted this way compare with
/// those the table predicts (p95 too); past 95 % utilisation, where the model says 20x the
/// service time, the prediction follows the curve's tangent there (finite, and still rising with
/// the load, so Alg. 3 sees what a container more is worth to a saturated service).
pub(crate) fn queueing_p95_ms(service_time_ms: f64, load_rps: f64, servers: f64) -> Option<f64> {
    const KNEE: f64 = 0.95;
    let s = service_time_ms;
    if !(s.is_finite() && s > 0.0 && load_rps.is_finite() && load_rps >= 0.0) {
        return None;
    }
    if !(servers.is_finite() && servers > 0.0) {
        return None;
    }
    let rho = load_rps * s / 1000.0 / servers;
    let factor = if rho < KNEE {
        1.0 / (1.0 - rho)
    } else {
        // The tangent at the knee: still rising, so a container more for a saturated service
        // is a gain (a flat cap made every overloaded service look gainless, and Alg. 3 then
        // fed the services that were not the bottleneck).
        let at = 1.0 / (1.0 - KNEE);
        at + at * at * (rho - KNEE)
    };
    Some(20f64.ln() * s * factor)
}
