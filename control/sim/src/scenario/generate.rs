//! Synthesised large scenarios: an Alibaba-like microservice call graph (Luo et al., "Characterizing
//! Microservice Dependency and Performance: Alibaba Trace Analysis", SoCC '21): a few entry
//! services, call trees a handful of levels deep, heavy-tailed fan-out, and hotspot services shared
//! by many callers (preferential attachment: a service is picked as a child with weight
//! `1 + callers so far`).
//!
//! Every service's replicas are sized from the load that reaches it, so no container starts above
//! `target_util`, with at least `replicas[0]` and a random extra up to `replicas[1]`; containers
//! land on random hosts. A fraction `noisy_hosts` of the hosts carries `noisy_cpu` background CPU
//! (the interference the load shifters should route around). Everything is drawn from the
//! scenario seed, so a seed names one graph.

use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::{Deserialize, Serialize};

use super::{
    Arrival, Call, CallMode, Dist, Flow, Host, HostInterference, Scenario, ScenarioError, Schedule,
    Service, ServiceTime, Sla,
};

/// What to synthesise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    /// Services to add, >= 2.
    pub services: u32,
    /// Hosts to add, >= 1 (in the first zone).
    pub hosts: u32,
    /// Cores per generated host. Default 32.
    #[serde(default = "d_cores")]
    pub cores: u32,
    /// Entry services, each with one Poisson flow. Default 10.
    #[serde(default = "d_entries")]
    pub entries: u32,
    /// Total requests per second over all flows. Default 1000.
    #[serde(default = "d_rate")]
    pub rate: f64,
    /// Levels of the call graph below the entries. Default 4.
    #[serde(default = "d_depth")]
    pub depth: u32,
    /// Mean children per non-leaf service (geometric). Default 2.
    #[serde(default = "d_fanout")]
    pub mean_fanout: f64,
    /// Minimum and maximum random replicas per service before load sizing. Default [8, 24].
    #[serde(default = "d_replicas")]
    pub replicas: [u32; 2],
    /// Concurrency of every generated container. Default 4.
    #[serde(default = "d_conc")]
    pub concurrency: u32,
    /// Range of mean service times, ms (log-uniform). Default [0.5, 8].
    #[serde(default = "d_mean")]
    pub mean_ms: [f64; 2],
    /// Highest utilisation a container starts at. Default 0.5.
    #[serde(default = "d_util")]
    pub target_util: f64,
    /// Fraction of hosts with background CPU interference. Default 0.2.
    #[serde(default = "d_noisy")]
    pub noisy_hosts: f64,
    /// Background CPU utilisation of a noisy host. Default 0.7.
    #[serde(default = "d_noisy_cpu")]
    pub noisy_cpu: f64,
    /// End-to-end SLA of every generated flow, ms. Default 200.
    #[serde(default = "d_sla")]
    pub sla_ms: f64,
}

fn d_cores() -> u32 {
    32
}
fn d_entries() -> u32 {
    10
}
fn d_rate() -> f64 {
    1000.0
}
fn d_depth() -> u32 {
    4
}
fn d_fanout() -> f64 {
    2.0
}
fn d_replicas() -> [u32; 2] {
    [8, 24]
}
fn d_conc() -> u32 {
    4
}
fn d_mean() -> [f64; 2] {
    [0.5, 8.0]
}
fn d_util() -> f64 {
    0.5
}
fn d_noisy() -> f64 {
    0.2
}
fn d_noisy_cpu() -> f64 {
    0.7
}
fn d_sla() -> f64 {
    200.0
}

impl Generate {
    pub(super) fn check(&self) -> Result<(), ScenarioError> {
        let bad = |f: &str, v: &dyn std::fmt::Debug, r: &str| {
            Err(ScenarioError::invalid(format!("generate.{f}"), v, r))
        };
        if self.services < 2 || self.services <= self.entries {
            return bad(
                "services",
                &self.services,
                "must be >= 2 and more than generate.entries",
            );
        }
        if self.services > 100_000 || self.hosts > 100_000 || self.replicas[1] > 10_000 {
            return bad(
                "services/hosts/replicas",
                &(self.services, self.hosts, self.replicas),
                "are above 100000 / 100000 / 10000",
            );
        }
        if self.hosts == 0 || self.entries == 0 || self.cores == 0 || self.concurrency == 0 {
            return bad(
                "hosts/entries/cores/concurrency",
                &(self.hosts, self.entries),
                "must be >= 1",
            );
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return bad("rate", &self.rate, "must be > 0");
        }
        if self.replicas[0] == 0 || self.replicas[1] < self.replicas[0] {
            return bad(
                "replicas",
                &self.replicas,
                "must be [min, max] with 1 <= min <= max",
            );
        }
        if !(self.mean_ms[0] > 0.0 && self.mean_ms[1] >= self.mean_ms[0]) {
            return bad(
                "mean_ms",
                &self.mean_ms,
                "must be [min, max] with 0 < min <= max",
            );
        }
        if !(self.target_util > 0.0 && self.target_util < 1.0) {
            return bad("target_util", &self.target_util, "must be in (0, 1)");
        }
        if !(0.0..=1.0).contains(&self.noisy_hosts) || !(0.0..=1.0).contains(&self.noisy_cpu) {
            return bad(
                "noisy_hosts",
                &(self.noisy_hosts, self.noisy_cpu),
                "must be in [0, 1]",
            );
        }
        let fanout_ok = self.mean_fanout.is_finite() && self.mean_fanout >= 0.0;
        if self.depth == 0 || !fanout_ok || self.sla_ms.is_nan() || self.sla_ms <= 0.0 {
            return bad(
                "depth/mean_fanout/sla_ms",
                &(self.depth, self.mean_fanout),
                "must be positive",
            );
        }
        Ok(())
    }

    /// Adds the synthesised hosts, services and flows to `s`.
    pub(super) fn expand(&self, s: &mut Scenario) {
        let mut rng = SmallRng::seed_from_u64(s.seed ^ 0x5eed_a11b_aba0_0001);
        let zone = s.zone_names().into_iter().next().unwrap_or_default();
        let host0 = s.hosts.len();
        for h in 0..self.hosts {
            let noisy = rng.random::<f64>() < self.noisy_hosts;
            s.hosts.push(Host {
                name: format!("gh{h:03}"),
                zone: zone.clone(),
                cores: self.cores,
                interference: HostInterference {
                    cpu: Schedule::Constant(if noisy { self.noisy_cpu } else { 0.0 }),
                    ..Default::default()
                },
            });
        }

        // Levels: entries at 0, the rest spread over 1..=depth with more services deeper down.
        let n = self.services as usize;
        let e = self.entries as usize;
        let depth = self.depth as usize;
        let mut level = vec![0usize; n];
        let weights: Vec<usize> = (1..=depth).collect();
        let wsum: usize = weights.iter().sum();
        for (i, l) in level.iter_mut().enumerate().skip(e) {
            let mut r = (i * 7919 + rng.random_range(0..wsum)) % wsum;
            *l = weights
                .iter()
                .position(|&w| {
                    if r < w {
                        true
                    } else {
                        r -= w;
                        false
                    }
                })
                .map_or(depth, |p| p + 1);
        }
        let by_level: Vec<Vec<usize>> = (0..=depth)
            .map(|l| (0..n).filter(|&i| level[i] == l).collect())
            .collect();
        let mut callers = vec![0u32; n];
        let mut children: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
        for i in 0..n {
            let l = level[i];
            let below: Vec<usize> = by_level.iter().skip(l + 1).flatten().copied().collect();
            if below.is_empty() {
                continue;
            }
            // Geometric fan-out with the given mean (heavy enough tail for Alibaba's shape);
            // entries always call at least one service.
            let p = 1.0 / (1.0 + self.mean_fanout);
            let mut k = 0;
            while rng.random::<f64>() > p && k < 12 {
                k += 1;
            }
            if l == 0 {
                k = k.max(1);
            }
            for _ in 0..k.min(below.len()) {
                let total: u32 = below.iter().map(|&j| 1 + callers[j]).sum();
                let mut r = rng.random_range(0..total);
                let pick = below
                    .iter()
                    .copied()
                    .find(|&j| {
                        if r < 1 + callers[j] {
                            true
                        } else {
                            r -= 1 + callers[j];
                            false
                        }
                    })
                    .unwrap_or(below[0]);
                if children[i].iter().any(|&(c, _)| c == pick) {
                    continue;
                }
                callers[pick] += 1;
                let prob = if rng.random::<f64>() < 0.5 {
                    1.0
                } else {
                    rng.random_range(0.3..1.0)
                };
                children[i].push((pick, (prob * 100.0f64).round() / 100.0));
            }
        }

        // Load reaching each service, in level order (the graph only points deeper).
        let per_entry = self.rate / e as f64;
        let mut lambda = vec![0.0; n];
        for l in by_level.iter() {
            for &i in l {
                if level[i] == 0 {
                    lambda[i] = per_entry;
                }
                for &(c, p) in &children[i] {
                    lambda[c] += lambda[i] * p;
                }
            }
        }
        let ln = (self.mean_ms[0].ln(), self.mean_ms[1].ln());
        let base = s.services.len();
        let name = |i: usize| format!("s{:03}", base + i);
        for i in 0..n {
            let mean_ms = if ln.1 > ln.0 {
                rng.random_range(ln.0..ln.1).exp()
            } else {
                self.mean_ms[0]
            };
            let mean_ms = (mean_ms * 100.0).round() / 100.0;
            let need =
                lambda[i] * mean_ms / 1000.0 / (f64::from(self.concurrency) * self.target_util);
            let random = rng.random_range(self.replicas[0]..=self.replicas[1]);
            let count = random.max(need.ceil() as u32);
            let mut replicas = std::collections::BTreeMap::new();
            for _ in 0..count {
                let h = host0 + rng.random_range(0..self.hosts as usize);
                *replicas.entry(s.hosts[h].name.clone()).or_insert(0) += 1;
            }
            s.services.push(Service {
                name: name(i),
                service_time: ServiceTime {
                    dist: Dist::Lognormal,
                    mean_ms,
                    sigma: 0.6,
                },
                concurrency: self.concurrency,
                replicas,
                mode: if rng.random::<f64>() < 0.5 {
                    CallMode::Parallel
                } else {
                    CallMode::Sequence
                },
                calls: children[i]
                    .iter()
                    .map(|&(c, p)| Call {
                        service: name(c),
                        probability: p,
                    })
                    .collect(),
                error_rate: 0.0,
                optional: false,
                objective: None,
            });
        }
        for (k, &i) in by_level[0].iter().enumerate() {
            s.flows.push(Flow {
                name: format!("gen-{k}"),
                entry: name(i),
                zone: None,
                arrival: Arrival::Poisson { rate: per_entry },
                sla: Sla {
                    latency_ms: self.sla_ms,
                    percentile: 95.0,
                },
                timeout_ms: 10_000.0,
            });
        }
    }
}
