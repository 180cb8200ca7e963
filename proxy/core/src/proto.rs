//! Conversions between the `loadshift.v1` wire types and the core's own types ([`ServicePlan`],
//! [`Endpoint`], [`WindowSnapshot`], [`HostPressure`]) as `From` / `TryFrom` impls. The data
//! plane, the control plane and `loadshift ctl` all convert through these, so every end agrees
//! on the mapping by construction.
//!
//! Mapping notes: proto3 has no `Option` for scalars, so `subset_size = 0` on the wire means "no
//! subset size" (the plan's `None`), and an absent `Window` message means "no window". An
//! unknown `algorithm` value (from a newer control plane) means the default, `weighted`.

use std::net::SocketAddr;

use loadshift_proto::v1 as pb;

use crate::{
    endpoint::Endpoint,
    plan::{Algorithm, Blocking, ServicePlan, SubsetEntry},
    telemetry::{WindowSnapshot, pressure::HostPressure, usage::ContainerUsage},
};

/// A wire message the core cannot represent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConvertError {
    #[error("endpoint address {addr:?} is not an ip:port")]
    BadAddr { addr: String },
}

impl From<&Endpoint> for pb::Endpoint {
    fn from(e: &Endpoint) -> Self {
        pb::Endpoint {
            addr: e.key().to_string(),
            host: e.host.clone(),
            zone: e.zone.clone(),
            container: e.container.clone(),
        }
    }
}

impl TryFrom<&pb::Endpoint> for Endpoint {
    type Error = ConvertError;

    fn try_from(e: &pb::Endpoint) -> Result<Self, ConvertError> {
        let addr: SocketAddr = e.addr.parse().map_err(|_| ConvertError::BadAddr {
            addr: e.addr.clone(),
        })?;
        Ok(Endpoint::new(
            addr,
            e.host.clone(),
            e.zone.clone(),
            e.container.clone(),
        ))
    }
}

impl From<&WindowSnapshot> for pb::Window {
    fn from(w: &WindowSnapshot) -> Self {
        pb::Window {
            count: w.count,
            errors: w.errors,
            mean_ms: w.mean_ms,
            p50_ms: w.p50_ms,
            p95_ms: w.p95_ms,
            p99_ms: w.p99_ms,
            window_s: w.window_s,
        }
    }
}

impl From<&pb::Window> for WindowSnapshot {
    fn from(w: &pb::Window) -> Self {
        WindowSnapshot {
            count: w.count,
            errors: w.errors,
            mean_ms: w.mean_ms,
            p50_ms: w.p50_ms,
            p95_ms: w.p95_ms,
            p99_ms: w.p99_ms,
            window_s: w.window_s,
        }
    }
}

impl From<&HostPressure> for pb::HostPressure {
    fn from(p: &HostPressure) -> Self {
        pb::HostPressure {
            cpu_util: p.cpu_util,
            psi_cpu: p.psi_cpu,
            psi_memory: p.psi_memory,
            psi_io: p.psi_io,
        }
    }
}

impl From<&pb::HostPressure> for HostPressure {
    fn from(p: &pb::HostPressure) -> Self {
        HostPressure {
            cpu_util: p.cpu_util,
            psi_cpu: p.psi_cpu,
            psi_memory: p.psi_memory,
            psi_io: p.psi_io,
        }
    }
}

impl From<&ContainerUsage> for pb::ContainerUsage {
    fn from(u: &ContainerUsage) -> Self {
        pb::ContainerUsage {
            cpu_cores: u.cpu_cores,
            memory_mib: u.memory_mib,
            cpu_limit_cores: u.cpu_limit_cores,
            memory_limit_mib: u.memory_limit_mib,
        }
    }
}

/// Non-finite or negative values from the wire are unknown, not numbers planners would use.
impl From<&pb::ContainerUsage> for ContainerUsage {
    fn from(u: &pb::ContainerUsage) -> Self {
        let ok = |v: Option<f64>| v.filter(|x| x.is_finite() && *x >= 0.0);
        ContainerUsage {
            cpu_cores: ok(u.cpu_cores),
            memory_mib: ok(u.memory_mib),
            cpu_limit_cores: ok(u.cpu_limit_cores),
            memory_limit_mib: ok(u.memory_limit_mib),
        }
    }
}

impl From<&ServicePlan> for pb::ServicePlan {
    fn from(p: &ServicePlan) -> Self {
        pb::ServicePlan {
            endpoint_weights: p.endpoint_weights.clone().into_iter().collect(),
            host_weights: p.host_weights.clone().into_iter().collect(),
            zone_weights: p.zone_weights.clone().into_iter().collect(),
            subset: p
                .subset
                .iter()
                .map(|s| pb::SubsetEntry {
                    endpoint: s.endpoint.clone(),
                    share: s.share,
                })
                .collect(),
            subset_size: p.subset_size.unwrap_or(0),
            weighted_p2c: p.weighted_p2c,
            algorithm: pb::Algorithm::from(p.algorithm) as i32,
            blocking: p
                .blocking
                .iter()
                .map(|(class, b)| {
                    (
                        class.clone(),
                        pb::Blocking {
                            fraction: b.fraction,
                            max_in_flight: b.max_in_flight,
                        },
                    )
                })
                .collect(),
            revision: p.revision,
        }
    }
}

impl From<Algorithm> for pb::Algorithm {
    fn from(a: Algorithm) -> Self {
        match a {
            Algorithm::Weighted => pb::Algorithm::Weighted,
            Algorithm::RoundRobin => pb::Algorithm::RoundRobin,
            Algorithm::LeastRequest => pb::Algorithm::LeastRequest,
            Algorithm::P2cEwma => pb::Algorithm::P2cEwma,
            Algorithm::Prequal => pb::Algorithm::Prequal,
        }
    }
}

/// Unknown values (from a newer control plane) and `UNSPECIFIED` mean the default, `weighted`.
fn algorithm_from_wire(v: i32) -> Algorithm {
    match pb::Algorithm::try_from(v) {
        Ok(pb::Algorithm::RoundRobin) => Algorithm::RoundRobin,
        Ok(pb::Algorithm::LeastRequest) => Algorithm::LeastRequest,
        Ok(pb::Algorithm::P2cEwma) => Algorithm::P2cEwma,
        Ok(pb::Algorithm::Prequal) => Algorithm::Prequal,
        Ok(pb::Algorithm::Weighted | pb::Algorithm::Unspecified) | Err(_) => Algorithm::Weighted,
    }
}

/// Structural conversion only; the data plane validates values against its endpoints
/// ([`ServicePlan::validate`]).
impl From<&pb::ServicePlan> for ServicePlan {
    fn from(p: &pb::ServicePlan) -> Self {
        ServicePlan {
            endpoint_weights: p.endpoint_weights.clone().into_iter().collect(),
            host_weights: p.host_weights.clone().into_iter().collect(),
            zone_weights: p.zone_weights.clone().into_iter().collect(),
            subset: p
                .subset
                .iter()
                .map(|s| SubsetEntry {
                    endpoint: s.endpoint.clone(),
                    share: s.share,
                })
                .collect(),
            subset_size: (p.subset_size > 0).then_some(p.subset_size),
            weighted_p2c: p.weighted_p2c,
            algorithm: algorithm_from_wire(p.algorithm),
            blocking: p
                .blocking
                .iter()
                .map(|(class, b)| {
                    (
                        class.clone(),
                        Blocking {
                            fraction: b.fraction,
                            max_in_flight: b.max_in_flight,
                        },
                    )
                })
                .collect(),
            revision: p.revision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_plan_round_trips() {
        let p = ServicePlan {
            endpoint_weights: [("127.0.0.1:1".into(), 0.25)].into(),
            host_weights: [("h1".into(), 2.0)].into(),
            zone_weights: [("z".into(), 1.0)].into(),
            subset: vec![SubsetEntry {
                endpoint: "127.0.0.1:1".into(),
                share: 3.0,
            }],
            subset_size: Some(4),
            weighted_p2c: true,
            algorithm: Algorithm::LeastRequest,
            blocking: [(
                "gold".into(),
                Blocking {
                    fraction: 0.5,
                    max_in_flight: Some(7),
                },
            )]
            .into(),
            revision: 12,
        };
        assert_eq!(ServicePlan::from(&pb::ServicePlan::from(&p)), p);
        let none = ServicePlan::default();
        assert_eq!(ServicePlan::from(&pb::ServicePlan::from(&none)), none);
        let future = pb::ServicePlan {
            algorithm: 99,
            ..Default::default()
        };
        assert_eq!(ServicePlan::from(&future).algorithm, Algorithm::Weighted);
        for algorithm in [
            Algorithm::Weighted,
            Algorithm::RoundRobin,
            Algorithm::LeastRequest,
            Algorithm::P2cEwma,
            Algorithm::Prequal,
        ] {
            let p = ServicePlan {
                algorithm,
                ..Default::default()
            };
            assert_eq!(ServicePlan::from(&pb::ServicePlan::from(&p)), p);
        }
    }

    #[test]
    fn endpoint_round_trips_and_rejects_bad_addr() {
        let e = Endpoint::new("10.0.0.1:8080".parse().unwrap(), "h", "z", "c");
        assert_eq!(Endpoint::try_from(&pb::Endpoint::from(&e)).unwrap(), e);
        let bad = pb::Endpoint {
            addr: "nope".into(),
            ..Default::default()
        };
        assert_eq!(
            Endpoint::try_from(&bad).unwrap_err(),
            ConvertError::BadAddr {
                addr: "nope".into()
            }
        );
    }

    #[test]
    fn window_and_pressure_round_trip() {
        let w = WindowSnapshot {
            count: 9,
            errors: 1,
            mean_ms: 1.5,
            p50_ms: 1.0,
            p95_ms: 3.0,
            p99_ms: 4.0,
            window_s: 10.0,
        };
        assert_eq!(WindowSnapshot::from(&pb::Window::from(&w)), w);
        let p = HostPressure {
            cpu_util: 0.5,
            psi_cpu: Some(1.0),
            psi_memory: None,
            psi_io: None,
        };
        assert_eq!(HostPressure::from(&pb::HostPressure::from(&p)), p);
        let u = ContainerUsage {
            cpu_cores: Some(0.5),
            memory_mib: Some(64.0),
            cpu_limit_cores: None,
            memory_limit_mib: Some(128.0),
        };
        assert_eq!(ContainerUsage::from(&pb::ContainerUsage::from(&u)), u);
        let bad = pb::ContainerUsage {
            cpu_cores: Some(f64::NAN),
            memory_mib: Some(-1.0),
            ..Default::default()
        };
        assert_eq!(ContainerUsage::from(&bad), ContainerUsage::default());
    }
}
