//! The step log: at every control round, per service, what it was offered and carried since the
//! last round, how fast its calls were answered (at the callers), and the routing and blocking
//! of the plan in force meanwhile. Kept for scenarios with a management objective: it is the
//! trace the objective planner's system model is trained on (`loadshift model collect`) and
//! what its ANR is computed from (Samani & Stadler, seed 004 eq. 6).

use std::collections::BTreeMap;

use loadshift_policy::planners::objective::{
    model::{StepService, TraceStep},
    space::{ManagedService, ServiceAction},
};
use serde::{Deserialize, Serialize};

/// One service in one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceStep {
    /// Calls offered per second (blocked ones included).
    pub offered_rps: f64,
    /// Calls let through per second.
    pub carried_rps: f64,
    /// Mean latency of the calls answered in the step, at the callers; `None` when none was.
    pub mean_ms: Option<f64>,
    /// The plan's host weights, normalised to shares; empty when the plan sets none.
    pub host_shares: BTreeMap<String, f64>,
    /// The plan's blocking fraction for every class (`blocking["*"]`), 0 without one.
    pub block: f64,
}

/// One step: the time between two control rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// End of the step, seconds since the start.
    pub t_s: f64,
    /// Length of the step, seconds.
    pub len_s: f64,
    pub services: BTreeMap<String, ServiceStep>,
}

/// Counters at the previous round, and the log so far (filled by the engine's control rounds).
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) last_ns: u64,
    /// Per service: offered, blocked, answered, answered latency (ns).
    pub(crate) prev: Vec<[u64; 4]>,
    pub(crate) log: Vec<StepLog>,
}

/// The steps from `from_s` on as the objective planner's trace over `services` (in their
/// order, shares in the order of their hosts); steps missing a service are left out.
pub fn trace(steps: &[StepLog], services: &[ManagedService], from_s: f64) -> Vec<TraceStep> {
    steps
        .iter()
        .filter(|s| s.t_s - s.len_s >= from_s - 1e-9)
        .filter_map(|s| {
            let per = services
                .iter()
                .map(|m| {
                    let x = s.services.get(&m.name)?;
                    Some(StepService {
                        offered_rps: x.offered_rps,
                        carried_rps: x.carried_rps,
                        mean_ms: x.mean_ms,
                        action: ServiceAction {
                            shares: m
                                .hosts
                                .iter()
                                .map(|h| x.host_shares.get(h).copied().unwrap_or(0.0))
                                .collect(),
                            block: x.block,
                        },
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Some(TraceStep {
                t_s: s.t_s,
                services: per,
            })
        })
        .collect()
}
