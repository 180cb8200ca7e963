//! How a scenario is scaled down to real processes on one 2-core machine.
//!
//! - Containers: every (service, host) pair with at least one replica keeps exactly one container,
//!   so each host (and so the noisy one) still serves every service it served; a scenario needing
//!   more than `max_containers` containers that way is refused (run it in `loadshift sim`).
//! - Load: every flow's arrival rate is multiplied by one factor, the smallest of 1, the
//!   container ratio of the most reduced service (so no service is driven harder than in the
//!   scenario) and `hop_budget / hops_per_second` (so the machine carries the service calls: each
//!   call crosses two proxies and an app on the same two cores).
//!
//! Expected hops per request follow the call graph: `hops(s) = 1 + sum over calls of
//! probability * hops(child)`, cut at depth 32 (scenarios are validated acyclic).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use loadshift_sim::scenario::Scenario;

/// One container the lab starts: a `loadshift app` and its sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Service it belongs to.
    pub service: String,
    /// Host label (its interference schedule applies).
    pub host: String,
    /// Zone label of the host.
    pub zone: String,
    /// Unique name, `<service>-<host>`.
    pub name: String,
    /// The address callers use instead of the sidecar's inbound listener: its zone relay, when
    /// the scenario has inter-zone RTT (`super::relay`).
    pub front: Option<SocketAddr>,
}

/// The scaled-down deployment.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Containers to start.
    pub containers: Vec<ContainerSpec>,
    /// Factor applied to every flow's arrival rate.
    pub rate_scale: f64,
    /// Scenario containers per service.
    pub original: BTreeMap<String, u32>,
    /// Lab containers per service.
    pub kept: BTreeMap<String, u32>,
    /// Service calls per second at scenario scale (mean arrival rates).
    pub hops_per_second: f64,
}

impl Layout {
    /// A sentence for the report's notes.
    pub fn describe(&self) -> String {
        let orig: u32 = self.original.values().sum();
        format!(
            "lab scale: {} of {} containers (one per service per host), arrival rates x{:.3} \
             ({:.0} of {:.0} service calls/s)",
            self.containers.len(),
            orig,
            self.rate_scale,
            self.hops_per_second * self.rate_scale,
            self.hops_per_second
        )
    }
}

/// Expected service calls (hops) of one request entering at `service`.
pub fn hops(s: &Scenario, service: &str) -> f64 {
    fn go(s: &Scenario, service: &str, depth: u32) -> f64 {
        if depth > 32 {
            return 0.0;
        }
        let Some(svc) = s.services.iter().find(|x| x.name == service) else {
            return 0.0;
        };
        1.0 + svc
            .calls
            .iter()
            .map(|c| c.probability * go(s, &c.service, depth + 1))
            .sum::<f64>()
    }
    go(s, service, 0)
}

/// Scales `s` down (see the module documentation).
pub fn layout(s: &Scenario, hop_budget: f64, max_containers: usize) -> Result<Layout, String> {
    let zone_of = |host: &str| {
        s.hosts
            .iter()
            .find(|h| h.name == host)
            .map(|h| h.zone.clone())
            .unwrap_or_default()
    };
    let mut containers = Vec::new();
    let mut original = BTreeMap::new();
    let mut kept = BTreeMap::new();
    for svc in &s.services {
        let mut n = 0;
        for (host, &r) in &svc.replicas {
            if r == 0 {
                continue;
            }
            *original.entry(svc.name.clone()).or_insert(0) += r;
            containers.push(ContainerSpec {
                service: svc.name.clone(),
                host: host.clone(),
                zone: zone_of(host),
                name: format!("{}-{}", svc.name, host),
                front: None,
            });
            n += 1;
        }
        kept.insert(svc.name.clone(), n);
    }
    if containers.len() > max_containers {
        return Err(format!(
            "the lab needs {} containers (one per service per host) but runs at most {max_containers} \
             on this machine; run this scenario with `loadshift sim`",
            containers.len()
        ));
    }
    let horizon = s.duration_s.max(1.0);
    let hops_per_second: f64 = s
        .flows
        .iter()
        .map(|f| f.arrival.mean_rate(horizon) * hops(s, &f.entry))
        .sum();
    let container_ratio = kept
        .iter()
        .filter_map(|(svc, &k)| {
            original
                .get(svc)
                .map(|&o| f64::from(k) / f64::from(o.max(1)))
        })
        .fold(1.0, f64::min);
    let budget_ratio = if hops_per_second > 0.0 {
        hop_budget / hops_per_second
    } else {
        1.0
    };
    let rate_scale = 1.0_f64.min(container_ratio).min(budget_ratio);
    Ok(Layout {
        containers,
        rate_scale,
        original,
        kept,
        hops_per_second,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"
name: t
seed: 1
duration_s: 10
warmup_s: 1
report_interval_s: 1
hosts:
  - { name: h1, cores: 4 }
  - { name: h2, cores: 4 }
services:
  - name: front
    service_time: { dist: constant, mean_ms: 1 }
    replicas: { h1: 2, h2: 2 }
    calls: [ { service: back, probability: 0.5 } ]
  - name: back
    service_time: { dist: exponential, mean_ms: 2 }
    replicas: { h1: 1 }
flows:
  - name: f
    entry: front
    arrival: { process: constant, rate: 1000 }
    sla: { latency_ms: 50, percentile: 95 }
"#;

    #[test]
    fn one_container_per_service_per_host_and_rates_scaled_to_fit() {
        let s = Scenario::parse(SCENARIO, None).expect("valid scenario");
        assert!((hops(&s, "front") - 1.5).abs() < 1e-9);
        let l = layout(&s, 600.0, 40).expect("fits");
        let names: Vec<_> = l.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["front-h1", "front-h2", "back-h1"]);
        // front keeps 2 of 4 containers (0.5); 1500 hops/s against a budget of 600 (0.4).
        assert!((l.rate_scale - 0.4).abs() < 1e-9, "{}", l.rate_scale);
        let l = layout(&s, 1e9, 40).expect("fits");
        assert!((l.rate_scale - 0.5).abs() < 1e-9, "{}", l.rate_scale);
        assert!(layout(&s, 600.0, 2).is_err());
    }
}
