//! Conversions between the `loadshift.v1` wire types and the data plane's own types ([`Plan`],
//! [`Endpoint`], [`WindowSnapshot`], [`HostPressure`]). The control plane uses the same functions,
//! so both ends agree on the mapping by construction.
//!
//! Mapping notes: proto3 has no `Option` for scalars, so `subset_size = 0` on the wire means "no
//! subset size" (the plan's `None`), and an absent `Window` message means "no window".

use std::net::SocketAddr;

use loadshift_proto::v1 as pb;

use crate::{
    endpoint::Endpoint,
    plan::{Algorithm, Blocking, ServicePlan, SubsetEntry},
    telemetry::{WindowSnapshot, pressure::HostPressure},
};

/// A wire message the data plane cannot represent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConvertError {
    #[error("endpoint address {addr:?} is not an ip:port")]
    BadAddr { addr: String },
}

pub fn endpoint_to_proto(e: &Endpoint) -> pb::Endpoint {
    pb::Endpoint {
        addr: e.key().to_string(),
        host: e.host.clone(),
        zone: e.zone.clone(),
        container: e.container.clone(),
    }
}

pub fn endpoint_from_proto(e: &pb::Endpoint) -> Result<Endpoint, ConvertError> {
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

pub fn window_to_proto(w: &WindowSnapshot) -> pb::Window {
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

pub fn window_from_proto(w: &pb::Window) -> WindowSnapshot {
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

pub fn pressure_to_proto(p: &HostPressure) -> pb::HostPressure {
    pb::HostPressure {
        cpu_util: p.cpu_util,
        psi_cpu: p.psi_cpu,
        psi_memory: p.psi_memory,
        psi_io: p.psi_io,
    }
}

pub fn pressure_from_proto(p: &pb::HostPressure) -> HostPressure {
    HostPressure {
        cpu_util: p.cpu_util,
        psi_cpu: p.psi_cpu,
        psi_memory: p.psi_memory,
        psi_io: p.psi_io,
    }
}

pub fn service_plan_to_proto(p: &ServicePlan) -> pb::ServicePlan {
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
        algorithm: algorithm_to_proto(p.algorithm) as i32,
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
    }
}

fn algorithm_to_proto(a: Algorithm) -> pb::Algorithm {
    match a {
        Algorithm::Weighted => pb::Algorithm::Weighted,
        Algorithm::RoundRobin => pb::Algorithm::RoundRobin,
        Algorithm::LeastRequest => pb::Algorithm::LeastRequest,
        Algorithm::P2cEwma => pb::Algorithm::P2cEwma,
    }
}

/// Unknown values (from a newer control plane) and `UNSPECIFIED` mean the default, `weighted`.
fn algorithm_from_proto(v: i32) -> Algorithm {
    match pb::Algorithm::try_from(v) {
        Ok(pb::Algorithm::RoundRobin) => Algorithm::RoundRobin,
        Ok(pb::Algorithm::LeastRequest) => Algorithm::LeastRequest,
        Ok(pb::Algorithm::P2cEwma) => Algorithm::P2cEwma,
        Ok(pb::Algorithm::Weighted | pb::Algorithm::Unspecified) | Err(_) => Algorithm::Weighted,
    }
}

/// Structural conversion only; the data plane validates values against its endpoints.
pub fn service_plan_from_proto(p: &pb::ServicePlan) -> ServicePlan {
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
        algorithm: algorithm_from_proto(p.algorithm),
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
    }
}

/// A report as it goes on the wire; `seq` and the send time are the session's.
pub fn report_to_proto(seq: u64, sent_unix_ms: i64, r: &super::ProxyReport) -> pb::Report {
    let mut offered_window_s = 0.0f64;
    let endpoints = r
        .endpoints
        .iter()
        .map(|e| {
            offered_window_s = offered_window_s.max(e.window.window_s);
            pb::EndpointReport {
                service: e.service.clone(),
                endpoint: Some(endpoint_to_proto(&e.endpoint)),
                window: Some(window_to_proto(&e.window)),
                in_flight: e.in_flight,
                ewma_ms: e.ewma_ms,
            }
        })
        .collect();
    pb::Report {
        seq,
        sent_unix_ms,
        endpoints,
        inbound: r.inbound.as_ref().map(window_to_proto),
        host: Some(pressure_to_proto(&r.host)),
        blocked: r
            .blocked
            .iter()
            .map(|(service, class, count)| pb::BlockedCount {
                service: service.clone(),
                class: class.clone(),
                count: *count,
            })
            .collect(),
        offered: r
            .offered
            .iter()
            .map(|(service, count)| pb::OfferedCount {
                service: service.clone(),
                count: *count,
                // Offered counts cover the same window as the endpoint windows.
                window_s: if offered_window_s > 0.0 {
                    offered_window_s
                } else {
                    r.inbound.map_or(0.0, |w| w.window_s)
                },
            })
            .collect(),
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
        };
        assert_eq!(service_plan_from_proto(&service_plan_to_proto(&p)), p);
        let none = ServicePlan::default();
        assert_eq!(service_plan_from_proto(&service_plan_to_proto(&none)), none);
    }

    #[test]
    fn endpoint_round_trips_and_rejects_bad_addr() {
        let e = Endpoint::new("10.0.0.1:8080".parse().unwrap(), "h", "z", "c");
        assert_eq!(endpoint_from_proto(&endpoint_to_proto(&e)).unwrap(), e);
        let bad = pb::Endpoint {
            addr: "nope".into(),
            ..Default::default()
        };
        assert_eq!(
            endpoint_from_proto(&bad).unwrap_err(),
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
        assert_eq!(window_from_proto(&window_to_proto(&w)), w);
        let p = HostPressure {
            cpu_util: 0.5,
            psi_cpu: Some(1.0),
            psi_memory: None,
            psi_io: None,
        };
        assert_eq!(pressure_from_proto(&pressure_to_proto(&p)), p);
    }
}
