//! Snapshot builders for tests of policies and of the hosts that run them (feature `test-util`).

use loadshift_core::{endpoint::Endpoint, telemetry::WindowSnapshot};

use crate::{ContainerState, ServiceState, Snapshot};

/// A container on `host` whose inbound sidecar saw `n` requests at `mean_ms`.
pub fn container(port: u16, host: &str, mean_ms: f64, n: u64) -> ContainerState {
    let w = WindowSnapshot {
        count: n,
        mean_ms,
        p95_ms: mean_ms * 2.0,
        ..Default::default()
    };
    ContainerState {
        endpoint: Endpoint::new(
            ([127, 0, 0, 1], port).into(),
            host,
            "z1",
            format!("c{port}"),
        ),
        inbound: Some(w),
        outbound: WindowSnapshot::default(),
        outbound_by_zone: Default::default(),
        in_flight: 0,
        ewma_ms: mean_ms,
        usage: Default::default(),
    }
}

pub fn snapshot(services: Vec<ServiceState>) -> Snapshot {
    Snapshot {
        services: services
            .into_iter()
            .map(|s| (s.name.clone(), std::sync::Arc::new(s)))
            .collect(),
        ..Default::default()
    }
}
