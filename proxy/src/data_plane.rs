//! The proxy as the control client sees it: reports built from the live telemetry windows, plans
//! and discovery results applied to the route table. Also the in-path local shifting loop.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use crate::{
    control_client::{DataPlane, EndpointReport, Identity, ProxyReport},
    state::Shared,
};
use loadshift_core::{
    endpoint::Endpoint,
    plan::Plan,
    shift::{LocalShifter, ShiftParams},
    telemetry::Aggregate,
};

/// `DataPlane` over the shared proxy state.
pub struct ProxyDataPlane(pub Arc<Shared>);

impl DataPlane for ProxyDataPlane {
    fn report(&self) -> ProxyReport {
        let s = &self.0;
        let now = s.clock.now();
        let routes = s.routes.load_full();
        let mut endpoints = Vec::new();
        let mut offered: HashMap<&str, u64> = HashMap::new();
        for svc in &routes.services {
            for e in &svc.endpoints {
                let t = e.telemetry.lock();
                let window = t.window.snapshot(now);
                *offered.entry(svc.name.as_str()).or_default() += window.count;
                endpoints.push(EndpointReport {
                    service: svc.name.clone(),
                    endpoint: e.endpoint.clone(),
                    window,
                    in_flight: e.in_flight.load(Ordering::Relaxed),
                    ewma_ms: t.ewma.estimate_ns() / 1e6,
                });
            }
        }
        let blocked: Vec<(String, String, u64)> = s
            .blocked
            .lock()
            .iter()
            .map(|((svc, class), w)| (svc.clone(), class.clone(), w.total(now)))
            .filter(|b| b.2 > 0)
            .collect();
        let mut offered: Vec<(String, u64)> = offered
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        for (svc, _, n) in &blocked {
            if let Some(o) = offered.iter_mut().find(|o| &o.0 == svc) {
                o.1 += n;
            }
        }
        let inbound = routes
            .inbound
            .as_ref()
            .and_then(|i| i.endpoints.first())
            .map(|e| e.telemetry.lock().window.snapshot(now));
        ProxyReport {
            endpoints,
            inbound,
            host: *s.host.lock(),
            usage: *s.usage.lock(),
            blocked,
            offered,
        }
    }

    fn apply_plan(&self, plan: Plan) -> Result<(), String> {
        self.0.apply_plan(plan).map_err(|e| e.to_string())
    }

    fn set_endpoints(&self, service: &str, endpoints: Vec<Endpoint>) -> Result<(), String> {
        self.0.set_endpoints(service, endpoints)
    }
}

/// The identity the control client announces.
pub fn identity(s: &Shared) -> Identity {
    let c = &s.config;
    Identity {
        pod: c.identity.pod.clone(),
        container: c.identity.container.clone(),
        host: c.identity.host.clone(),
        zone: c.identity.zone.clone(),
        inbound_service: c.inbound_service(),
        outbound_services: c.services.iter().map(|s| s.name.clone()).collect(),
    }
}

/// Runs Alg. 1 per outbound service on this proxy's own per-host mean RTTs, installing host
/// weights when the shifter says so. Runs until the task is dropped.
pub async fn local_shift(shared: Arc<Shared>, params: ShiftParams) {
    let mut shifters: BTreeMap<String, LocalShifter> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = shared.clock.now();
        let routes = shared.routes.load_full();
        for svc in &routes.services {
            let mut hosts: BTreeMap<String, (Aggregate, u32)> = BTreeMap::new();
            for e in &svc.endpoints {
                let entry = hosts.entry(e.endpoint.host.clone()).or_default();
                entry.0.add(&e.telemetry.lock().window, now);
                entry.1 += 1;
            }
            let per_host: BTreeMap<String, (f64, u64, u32)> = hosts
                .into_iter()
                .map(|(h, (agg, n))| {
                    let snap = agg.snapshot();
                    (h, (snap.mean_ms, snap.count, n))
                })
                .collect();
            let shifter = shifters
                .entry(svc.name.clone())
                .or_insert_with(|| LocalShifter::new(params));
            if let Some(weights) = shifter.step(now, &per_host) {
                match shared.apply_local_weights(&svc.name, weights) {
                    Ok(true) => {
                        tracing::debug!(service = %svc.name, shares = ?shifter.shares(), "local shift applied")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(service = %svc.name, error = %e, "local shift refused")
                    }
                }
            }
        }
    }
}
