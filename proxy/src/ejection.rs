//! The latency-outlier detector's periodic task (`ejection.latency`, off by default): every
//! `interval_ms`, per outbound service, each endpoint's calls since the last round (their count
//! and mean latency, tallied by `EndpointState::record`) go through
//! [`loadshift_core::outlier::latency_outliers`], the sans-IO rule the twin runs at the same
//! interval; the endpoints it names are ejected with the latency backoff. It runs on the admin
//! thread, off the request path: one short lock per endpoint per interval.

use std::{sync::Arc, time::Duration};

use crate::{routes::ServiceRoute, state::Shared};
use loadshift_core::outlier::{LatencyEjection, LatencySample, OutlierParams, latency_outliers};

/// Judges every outbound service each interval; runs until the task is dropped.
pub async fn run(shared: Arc<Shared>, p: LatencyEjection) {
    let mut tick = tokio::time::interval(p.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: nothing has been tallied yet.
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = shared.clock.now();
        let routes = shared.routes.load_full();
        for svc in &routes.services {
            judge(svc, &shared.outlier, &p, now);
        }
    }
}

/// One round over one service: reads (and restarts) every endpoint's tally, then judges the
/// endpoints this proxy balances over.
pub fn judge(svc: &ServiceRoute, o: &OutlierParams, p: &LatencyEjection, now: Duration) {
    // Every tally is restarted, so an endpoint outside this proxy's subset carries no stale calls
    // into a later plan that makes it eligible.
    let samples: Vec<LatencySample> = svc
        .endpoints
        .iter()
        .map(|e| e.telemetry.lock().tally.take(e.is_ejected(now)))
        .collect();
    let eligible = svc.balancer.eligible();
    let judged: Vec<LatencySample> = eligible.iter().map(|&i| samples[i]).collect();
    let verdict = latency_outliers(&judged, p);
    for k in verdict.normal {
        svc.endpoints[eligible[k]]
            .telemetry
            .lock()
            .outlier
            .judged_normal();
    }
    for k in verdict.eject {
        svc.endpoints[eligible[k]].eject_slow(o, now, judged[k].mean);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Protocol,
        routes::{RouteSpec, build_service},
    };
    use loadshift_core::{endpoint::Endpoint, telemetry::TelemetryParams};

    #[test]
    fn a_slow_endpoint_is_ejected_and_judged_afresh_after() {
        let eps: Vec<Endpoint> = (1..=4)
            .map(|port| {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                Endpoint::new(addr, "h", "z", format!("c{port}"))
            })
            .collect();
        let svc = build_service(
            RouteSpec {
                name: "s",
                protocol: Protocol::Auto,
                endpoints: eps,
                plan: None,
            },
            None,
            "me",
            &TelemetryParams::default(),
            Duration::ZERO,
        );
        let o = OutlierParams::default();
        let p = LatencyEjection {
            enabled: true,
            ..Default::default()
        };
        let ms = Duration::from_millis;
        let t = Duration::from_secs(10);
        for (i, e) in svc.endpoints.iter().enumerate() {
            let latency = if i == 2 { ms(100) } else { ms(10) };
            for _ in 0..30 {
                e.record(&o, t, latency, true);
            }
        }
        judge(&svc, &o, &p, t);
        let ejected: Vec<bool> = svc.endpoints.iter().map(|e| e.is_ejected(t)).collect();
        assert_eq!(ejected, [false, false, true, false]);
        // The next round: its tally was restarted and it got no calls; nobody else is slow.
        judge(&svc, &o, &p, t + ms(500));
        assert!(svc.endpoints[2].is_ejected(t + ms(500)));
        assert!(!svc.endpoints[2].is_ejected(t + Duration::from_secs(1)));
        assert_eq!(
            svc.endpoints[2].telemetry.lock().outlier.slow_ejections(),
            1
        );
    }
}
