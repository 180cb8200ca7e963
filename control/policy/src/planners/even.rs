//! `even`: equal weight on every container of every service (the "Even" / round-robin baseline
//! of the papers).

use crate::{PlanUpdate, Planner, Snapshot};
use loadshift_core::plan::ServicePlan;

/// Equal weights for every container.
#[derive(Clone, Copy, Debug, Default)]
pub struct Even;

impl Planner for Even {
    fn name(&self) -> &str {
        "even"
    }

    fn plan(&mut self, snap: &Snapshot) -> PlanUpdate {
        let services = snap
            .services
            .iter()
            .filter(|(_, s)| !s.containers.is_empty())
            .map(|(name, s)| {
                let endpoint_weights = s
                    .containers
                    .iter()
                    .map(|c| (c.endpoint.key().to_string(), 1.0))
                    .collect();
                (
                    name.clone(),
                    ServicePlan {
                        endpoint_weights,
                        ..Default::default()
                    },
                )
            })
            .collect();
        PlanUpdate {
            services,
            per_proxy: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContainerState, ServiceState};
    use loadshift_core::endpoint::Endpoint;

    #[test]
    fn gives_every_container_the_same_weight() {
        let c = |port: u16, host: &str| ContainerState {
            endpoint: Endpoint::new(([127, 0, 0, 1], port).into(), host, "z", format!("c{port}")),
            inbound: None,
            outbound: Default::default(),
            outbound_by_zone: Default::default(),
            in_flight: 0,
            ewma_ms: 0.0,
            usage: Default::default(),
        };
        let svc = ServiceState {
            name: "a".into(),
            containers: vec![c(1, "h1"), c(2, "h1"), c(3, "h2")],
            ..Default::default()
        };
        let snap = Snapshot {
            services: [("a".into(), std::sync::Arc::new(svc))].into(),
            ..Default::default()
        };
        let up = Even.plan(&snap);
        let w = &up.services["a"].endpoint_weights;
        assert_eq!(w.len(), 3);
        assert!(w.values().all(|&x| x == 1.0));
    }
}
