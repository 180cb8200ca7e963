//! `hpa`: the Kubernetes Horizontal Pod Autoscaler algorithm, the baseline scaler of SPEC §5.10.
//!
//! Per service, every round (Kubernetes docs, "Horizontal Pod Autoscaling", algorithm details):
//! `desired = ceil(current * utilisation / target)` with `target` = 0.6, left unchanged while
//! `|utilisation / target - 1| <= tolerance` (0.1). Containers without telemetry yet (just
//! started) count as idle when scaling up and as exactly on target when scaling down, and the
//! round keeps the current size if that flips the direction or lands in the tolerance band, as
//! the HPA does for pods with missing metrics. Recommendations are then stabilised (scale-down:
//! the highest recommendation of the last 300 s, the first round counting the current size as
//! one; scale-up: the lowest of the last 0 s, i.e. the latest), the scale-up rate is limited to the HPA default of `max(+4, x2)` per round, and the
//! result is clamped to `[min_replicas, max_replicas]`.
//!
//! Utilisation. The HPA divides a pod's CPU usage by its CPU request. A [`ContainerState`]
//! carries no per-container CPU, so the busy fraction comes from what the container's inbound
//! sidecar measures: by Little's law the mean number of requests inside the container over the
//! report window is `L = count / window_s * mean_ms / 1000`, and utilisation is `L / capacity`,
//! where `capacity` is the requests the container serves at once at 100 % (the analogue of the
//! CPU request; a `loadshift app` with `--concurrency c` has capacity `c`): the setting when > 0,
//! else (default 0) the CPU limit in cores the container's sidecar reports (the simulator reports
//! each container's `concurrency`), else 1.
//! Without an inbound report the callers' merged outbound window stands in (it includes the
//! network, so it reads slightly high). Queued requests count too, so a saturated container
//! reads above 1, which scales up faster than CPU (capped at 100 % of a limit) would. For a
//! service that waits on its children inside the request, time spent waiting counts as busy:
//! the occupancy of a thread-per-request server, not its CPU.

use std::{
    collections::{BTreeMap, VecDeque},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{ContainerState, ScaleDecision, Scaler, ServiceState, Snapshot};

/// Tunables, defaults from Kubernetes' HPA.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HpaParams {
    /// Target mean utilisation (busy fraction of `capacity`). Default 0.6.
    pub target_utilization: f64,
    /// Relative band around the target where nothing changes. Default 0.1 (the HPA's).
    pub tolerance: f64,
    /// Fewest containers. Default 1.
    pub min_replicas: u32,
    /// Most containers. Default 10.
    pub max_replicas: u32,
    /// Scale-down stabilisation window: the highest recommendation of this long is used.
    /// Milliseconds; default 300000 (the HPA's 5 minutes).
    pub scale_down_stabilization_ms: u64,
    /// Scale-up stabilisation window: the lowest recommendation of this long is used.
    /// Milliseconds; default 0 (scale up at once, as the HPA).
    pub scale_up_stabilization_ms: u64,
    /// Requests one container serves at once at 100 % utilisation; 0 (default): the CPU limit
    /// in cores its sidecar reports, else 1.
    pub capacity: f64,
    /// Round period, milliseconds (the simulator's tick; the control plane's scale loop has its
    /// own `scale_interval_ms`). Default 15000 (the HPA's sync period).
    pub interval_ms: u64,
}

impl Default for HpaParams {
    fn default() -> Self {
        Self {
            target_utilization: 0.6,
            tolerance: 0.1,
            min_replicas: 1,
            max_replicas: 10,
            scale_down_stabilization_ms: 300_000,
            scale_up_stabilization_ms: 0,
            capacity: 0.0,
            interval_ms: 15_000,
        }
    }
}

impl HpaParams {
    /// The first field that cannot work, as `(field, value, reason)`.
    pub fn check(&self) -> Result<(), (&'static str, String, &'static str)> {
        let pos = |v: f64| v.is_finite() && v > 0.0;
        if !pos(self.target_utilization) {
            return Err((
                "target_utilization",
                self.target_utilization.to_string(),
                "must be finite and > 0",
            ));
        }
        if !(self.tolerance.is_finite() && (0.0..1.0).contains(&self.tolerance)) {
            return Err(("tolerance", self.tolerance.to_string(), "must be in [0, 1)"));
        }
        if self.min_replicas == 0 {
            return Err((
                "min_replicas",
                "0".into(),
                "must be >= 1 (scaling to zero needs a request buffer this scaler has not)",
            ));
        }
        if self.max_replicas < self.min_replicas {
            return Err((
                "max_replicas",
                self.max_replicas.to_string(),
                "must be >= min_replicas",
            ));
        }
        if !(self.capacity.is_finite() && self.capacity >= 0.0) {
            return Err((
                "capacity",
                self.capacity.to_string(),
                "must be finite and >= 0 (0: the container's reported CPU limit, else 1)",
            ));
        }
        if self.interval_ms == 0 {
            return Err(("interval_ms", "0".into(), "must be > 0"));
        }
        Ok(())
    }
}

/// The HPA over every service it is given.
#[derive(Clone, Debug, Default)]
pub struct Hpa {
    params: HpaParams,
    /// Per service: raw recommendations with their time, oldest first.
    history: BTreeMap<String, VecDeque<(Duration, u32)>>,
}

/// What one round measured for a service.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Usage {
    /// Mean utilisation of the containers with telemetry.
    mean: f64,
    with_metrics: u32,
    missing: u32,
}

fn utilisation(c: &ContainerState, capacity: f64) -> Option<f64> {
    let w = match c.inbound {
        Some(w) => w,
        None if c.outbound.count > 0 => c.outbound,
        None => return None,
    };
    if w.window_s.is_nan() || w.window_s <= 0.0 {
        return None;
    }
    let in_container = w.count as f64 / w.window_s * w.mean_ms.max(0.0) / 1000.0;
    Some(in_container / super::servers(c, capacity))
}

fn usage(svc: &ServiceState, capacity: f64) -> Usage {
    let (mut sum, mut with_metrics, mut missing) = (0.0, 0u32, 0u32);
    for c in &svc.containers {
        match utilisation(c, capacity) {
            Some(u) => {
                sum += u;
                with_metrics += 1;
            }
            None => missing += 1,
        }
    }
    Usage {
        mean: if with_metrics == 0 {
            0.0
        } else {
            sum / f64::from(with_metrics)
        },
        with_metrics,
        missing,
    }
}

impl Hpa {
    pub fn new(params: HpaParams) -> Self {
        Self {
            params,
            history: BTreeMap::new(),
        }
    }

    pub fn params(&self) -> &HpaParams {
        &self.params
    }

    /// The replica count the metric asks for (before stabilisation and limits), `None` without
    /// any telemetry.
    fn recommend(&self, current: u32, u: Usage) -> Option<u32> {
        if u.with_metrics == 0 {
            return None;
        }
        let p = &self.params;
        let ratio = u.mean / p.target_utilization;
        let within = |r: f64| (r - 1.0).abs() <= p.tolerance;
        if u.missing == 0 {
            if within(ratio) {
                return Some(current);
            }
            return Some(ceil_count(ratio * f64::from(u.with_metrics)));
        }
        // Missing containers: idle when the others ask for more, on target when they ask for
        // fewer; if that reverses the direction or lands in the band, hold.
        let assumed = if ratio > 1.0 {
            0.0
        } else {
            p.target_utilization
        };
        let all = u.with_metrics + u.missing;
        let mean_all =
            (u.mean * f64::from(u.with_metrics) + assumed * f64::from(u.missing)) / f64::from(all);
        let new_ratio = mean_all / p.target_utilization;
        if within(new_ratio) || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0)
        {
            return Some(current);
        }
        Some(ceil_count(new_ratio * f64::from(all)))
    }

    /// Stabilises `raw` against the service's recent recommendations, then rate-limits and
    /// clamps it.
    fn settle(&mut self, service: &str, now: Duration, current: u32, raw: u32) -> u32 {
        let p = self.params;
        // A service seen for the first time starts with its current size as the only past
        // recommendation, as the HPA controller does: a new scaler does not shrink a service
        // before one stabilisation window has passed.
        let hist = self
            .history
            .entry(service.to_string())
            .or_insert_with(|| VecDeque::from([(now, current)]));
        let longest = p
            .scale_down_stabilization_ms
            .max(p.scale_up_stabilization_ms);
        while hist
            .front()
            .is_some_and(|&(t, _)| now.saturating_sub(t) > Duration::from_millis(longest))
        {
            hist.pop_front();
        }
        let within = |ms: u64| {
            let w = Duration::from_millis(ms);
            hist.iter()
                .filter(move |&&(t, _)| now.saturating_sub(t) < w)
                .map(|&(_, r)| r)
        };
        let up = within(p.scale_up_stabilization_ms).fold(raw, u32::min);
        let down = within(p.scale_down_stabilization_ms).fold(raw, u32::max);
        hist.push_back((now, raw));
        let mut want = if current < up {
            up
        } else if current > down {
            down
        } else {
            current
        };
        if want > current {
            let limit = current.saturating_add(4).max(current.saturating_mul(2));
            want = want.min(limit);
        }
        want.clamp(p.min_replicas, p.max_replicas)
    }
}

/// `ceil` of a finite, non-negative count, saturated to `u32`.
fn ceil_count(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        // In (0, u32::MAX): the cast is exact after ceil. A ratio a hair above an integer from
        // float noise (3.0000000001) would ask for one container too many, so round first at
        // 1e-9.
        ((x * 1e9).round() / 1e9).ceil() as u32
    }
}

impl Scaler for Hpa {
    fn name(&self) -> &str {
        "hpa"
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.params.interval_ms)
    }

    fn scale(&mut self, snap: &Snapshot) -> Vec<ScaleDecision> {
        let mut out = Vec::new();
        for (name, svc) in &snap.services {
            let current = u32::try_from(svc.containers.len()).unwrap_or(u32::MAX);
            if current == 0 {
                // Nothing to measure and nothing to copy; scaling from zero is not the HPA's job.
                continue;
            }
            let u = usage(svc, self.params.capacity);
            let Some(raw) = self.recommend(current, u) else {
                let clamped = current.clamp(self.params.min_replicas, self.params.max_replicas);
                if clamped != current {
                    out.push(ScaleDecision {
                        service: name.clone(),
                        from: current,
                        to: clamped,
                        reason: format!(
                            "hpa: no telemetry yet; {current} containers outside [{}, {}]",
                            self.params.min_replicas, self.params.max_replicas
                        ),
                        ..Default::default()
                    });
                }
                continue;
            };
            let to = self.settle(name, snap.now, current, raw);
            if to != current {
                out.push(ScaleDecision {
                    service: name.clone(),
                    from: current,
                    to,
                    reason: format!(
                        "hpa: utilisation {:.2} vs target {:.2} over {} containers ({} without telemetry); recommended {raw}, stabilised and clamped to {to}",
                        u.mean, self.params.target_utilization, u.with_metrics, u.missing
                    ),
                    ..Default::default()
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
