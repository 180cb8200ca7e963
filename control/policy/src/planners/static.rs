//! `static`: fixed endpoint weights from the config file (the operator's hand-tuned baseline).
//! Built per service with [`Static::new`]; the registry's `static` without weights plans nothing,
//! which leaves the data plane on its own balancing.

use std::collections::BTreeMap;

use loadshift_core::plan::ServicePlan;

use crate::{PlanUpdate, Planner, Snapshot};

/// Plans the same weights for one service on every call.
#[derive(Clone, Debug, Default)]
pub struct Static {
    service: String,
    /// Weights by endpoint address (`ip:port`).
    weights: BTreeMap<String, f64>,
}

impl Static {
    pub fn new(service: impl Into<String>, weights: BTreeMap<String, f64>) -> Self {
        Self {
            service: service.into(),
            weights,
        }
    }
}

impl Planner for Static {
    fn name(&self) -> &str {
        "static"
    }

    fn plan(&mut self, snap: &Snapshot) -> PlanUpdate {
        let mut up = PlanUpdate::default();
        let Some(svc) = snap.services.get(&self.service) else {
            return up;
        };
        // Only endpoints the service still has; a plan naming a gone endpoint would be refused.
        let endpoint_weights: BTreeMap<String, f64> = svc
            .containers
            .iter()
            .filter_map(|c| {
                let k = c.endpoint.key();
                self.weights.get(k).map(|&w| (k.to_string(), w))
            })
            .collect();
        if endpoint_weights.values().any(|&w| w > 0.0) {
            up.services.insert(
                self.service.clone(),
                ServicePlan {
                    endpoint_weights,
                    ..Default::default()
                },
            );
        }
        up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContainerState, ServiceState};
    use loadshift_core::endpoint::Endpoint;

    #[test]
    fn plans_configured_weights_for_present_endpoints() {
        let c = |port: u16| ContainerState {
            endpoint: Endpoint::new(([127, 0, 0, 1], port).into(), "h", "z", "c"),
            inbound: None,
            outbound: Default::default(),
            outbound_by_zone: Default::default(),
            in_flight: 0,
            ewma_ms: 0.0,
            usage: Default::default(),
        };
        let svc = ServiceState {
            name: "a".into(),
            containers: vec![c(1), c(2)],
            ..Default::default()
        };
        let snap = Snapshot {
            services: [("a".into(), std::sync::Arc::new(svc))].into(),
            ..Default::default()
        };
        let weights = [("127.0.0.1:1".into(), 3.0), ("127.0.0.1:9".into(), 1.0)].into();
        let up = Static::new("a", weights).plan(&snap);
        let w = &up.services["a"].endpoint_weights;
        assert_eq!(w.len(), 1);
        assert_eq!(w["127.0.0.1:1"], 3.0);
        assert!(Static::default().plan(&snap).services.is_empty());
    }
}
