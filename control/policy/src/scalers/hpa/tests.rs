use loadshift_core::{endpoint::Endpoint, telemetry::WindowSnapshot};

use super::*;
use crate::ServiceState;

/// A container whose inbound sidecar saw `rps` requests per second taking `mean_ms` each, over a
/// 10 s window; `None` for one that has not reported yet.
fn container(i: usize, load: Option<(f64, f64)>) -> ContainerState {
    let addr = format!("127.0.0.1:{}", 1000 + i).parse().expect("addr");
    ContainerState {
        endpoint: Endpoint::new(addr, "h", "z", format!("c{i}")),
        inbound: load.map(|(rps, mean_ms)| WindowSnapshot {
            count: (rps * 10.0) as u64,
            mean_ms,
            window_s: 10.0,
            ..Default::default()
        }),
        outbound: WindowSnapshot::default(),
        outbound_by_zone: Default::default(),
        in_flight: 0,
        ewma_ms: 0.0,
        usage: Default::default(),
    }
}

fn snap(now_s: u64, loads: &[Option<(f64, f64)>]) -> Snapshot {
    let svc = ServiceState {
        name: "api".into(),
        containers: loads
            .iter()
            .enumerate()
            .map(|(i, &l)| container(i, l))
            .collect(),
        ..Default::default()
    };
    Snapshot {
        now: Duration::from_secs(now_s),
        services: [("api".to_string(), std::sync::Arc::new(svc))].into(),
        ..Default::default()
    }
}

fn target(d: &[ScaleDecision]) -> Option<u32> {
    assert!(d.len() <= 1, "{d:?}");
    d.first().map(|d| d.to)
}

fn immediate() -> HpaParams {
    HpaParams {
        scale_down_stabilization_ms: 0,
        ..HpaParams::default()
    }
}

#[test]
fn hand_computed_scale_up() {
    // Each of 2 containers: 30 req/s x 30 ms = 0.9 requests inside (Little), capacity 1 -> 0.9.
    // 0.9 / 0.6 = 1.5 -> ceil(2 x 1.5) = 3.
    let mut h = Hpa::new(HpaParams::default());
    let d = h.scale(&snap(0, &[Some((30.0, 30.0)), Some((30.0, 30.0))]));
    assert_eq!(target(&d), Some(3));
    assert_eq!(d[0].from, 2);
    assert!(d[0].reason.contains("0.90"), "{}", d[0].reason);
    // Capacity 3 (a 3-slot app): utilisation 0.3 -> ratio 0.5 -> ceil(2 x 0.5) = 1.
    let mut h = Hpa::new(HpaParams {
        capacity: 3.0,
        ..immediate()
    });
    let d = h.scale(&snap(0, &[Some((30.0, 30.0)), Some((30.0, 30.0))]));
    assert_eq!(target(&d), Some(1));
}

#[test]
fn capacity_zero_reads_the_reported_cpu_limit() {
    // The same load; the sidecars report a 3-core limit: capacity 3 as above, unless set.
    let mut s = snap(0, &[Some((30.0, 30.0)), Some((30.0, 30.0))]);
    let svc = std::sync::Arc::make_mut(s.services.get_mut("api").unwrap());
    for c in &mut svc.containers {
        c.usage.cpu_limit_cores = Some(3.0);
    }
    assert_eq!(target(&Hpa::new(immediate()).scale(&s)), Some(1));
    let set = HpaParams {
        capacity: 1.0,
        ..immediate()
    };
    assert_eq!(target(&Hpa::new(set).scale(&s)), Some(3));
    // A limit that is no number counts as none: capacity 1.
    let svc = std::sync::Arc::make_mut(s.services.get_mut("api").unwrap());
    svc.containers[0].usage.cpu_limit_cores = Some(f64::NAN);
    svc.containers[1].usage.cpu_limit_cores = None;
    assert_eq!(target(&Hpa::new(immediate()).scale(&s)), Some(3));
}

#[test]
fn tolerance_band_holds() {
    let mut h = Hpa::new(immediate());
    // 0.64 / 0.6 = 1.067: inside the 10 % band.
    assert_eq!(target(&h.scale(&snap(0, &[Some((32.0, 20.0)); 2]))), None);
    // 0.56 / 0.6 = 0.933: inside.
    assert_eq!(target(&h.scale(&snap(15, &[Some((28.0, 20.0)); 2]))), None);
    // 0.68 / 0.6 = 1.133: outside -> ceil(2.267) = 3.
    assert_eq!(
        target(&h.scale(&snap(30, &[Some((34.0, 20.0)); 2]))),
        Some(3)
    );
    // 0.5 / 0.6 = 0.833 over 4 -> ceil(3.33) = 4: outside the band but no change.
    assert_eq!(target(&h.scale(&snap(45, &[Some((25.0, 20.0)); 4]))), None);
}

#[test]
fn scale_down_waits_for_the_stabilisation_window() {
    // A fresh scaler counts the current size as a past recommendation: no shrinking during its
    // first window.
    let mut fresh = Hpa::new(HpaParams::default());
    assert_eq!(
        target(&fresh.scale(&snap(0, &[Some((15.0, 20.0)); 4]))),
        None
    );
    assert_eq!(
        target(&fresh.scale(&snap(300, &[Some((15.0, 20.0)); 4]))),
        Some(2)
    );
    let mut h = Hpa::new(HpaParams::default());
    // t = 0: on target with 4 containers.
    assert_eq!(target(&h.scale(&snap(0, &[Some((30.0, 20.0)); 4]))), None);
    // t = 60: load halves (0.3 -> 2 wanted), but 4 was recommended within 300 s.
    assert_eq!(target(&h.scale(&snap(60, &[Some((15.0, 20.0)); 4]))), None);
    assert_eq!(target(&h.scale(&snap(299, &[Some((15.0, 20.0)); 4]))), None);
    // t = 301: the t = 0 recommendation left the window; the highest left is 2.
    let d = h.scale(&snap(301, &[Some((15.0, 20.0)); 4]));
    assert_eq!(target(&d), Some(2));
    // Scale-up is not stabilised: a spike acts at once.
    assert_eq!(
        target(&h.scale(&snap(302, &[Some((60.0, 20.0)); 2]))),
        Some(4)
    );
}

#[test]
fn clamps_and_rate_limit() {
    let p = HpaParams {
        min_replicas: 2,
        max_replicas: 10,
        ..immediate()
    };
    // Idle: 0 wanted, clamped to 2.
    let mut h = Hpa::new(p);
    assert_eq!(target(&h.scale(&snap(0, &[Some((0.0, 0.0)); 3]))), Some(2));
    // Saturated single container: 10 req/s x 1000 ms = 10 inside -> ratio 16.7 -> 17 wanted;
    // the scale-up limit allows max(1 + 4, 2 x 1) = 5 in one round.
    let mut h = Hpa::new(p);
    assert_eq!(target(&h.scale(&snap(0, &[Some((10.0, 1000.0))]))), Some(5));
    // From 8: the limit is 16, max_replicas 10 wins.
    let mut h = Hpa::new(p);
    assert_eq!(
        target(&h.scale(&snap(0, &[Some((10.0, 1000.0)); 8]))),
        Some(10)
    );
    // Below the minimum with no telemetry at all: raised to the minimum.
    let mut h = Hpa::new(p);
    assert_eq!(target(&h.scale(&snap(0, &[None]))), Some(2));
    // Within bounds and no telemetry: nothing to decide.
    let mut h = Hpa::new(p);
    assert_eq!(target(&h.scale(&snap(0, &[None, None]))), None);
}

#[test]
fn containers_without_telemetry_damp_decisions() {
    let mut h = Hpa::new(immediate());
    // Two at 0.9 and one new: counted idle for a scale-up -> mean 0.6 -> on target, hold.
    assert_eq!(
        target(&h.scale(&snap(0, &[Some((30.0, 30.0)), Some((30.0, 30.0)), None]))),
        None
    );
    // Two at 1.2 and one new: mean (2.4 + 0) / 3 = 0.8 -> ratio 1.33 -> ceil(4) = 4.
    assert_eq!(
        target(&h.scale(&snap(15, &[Some((40.0, 30.0)), Some((40.0, 30.0)), None]))),
        Some(4)
    );
    // One at 0.15 and one new (counted on target): (0.15 + 0.6) / 2 = 0.375 -> ratio 0.625 ->
    // ceil(1.25) = 2: hold.
    assert_eq!(
        target(&h.scale(&snap(30, &[Some((5.0, 30.0)), None]))),
        None
    );
    // Without an inbound report the callers' view stands in.
    let mut s = snap(45, &[None, None]);
    for c in &mut std::sync::Arc::make_mut(s.services.get_mut("api").expect("api")).containers {
        c.outbound = WindowSnapshot {
            count: 300,
            mean_ms: 60.0,
            window_s: 10.0,
            ..Default::default()
        };
    }
    // 30 x 0.06 = 1.8 -> ratio 3 -> 6.
    assert_eq!(target(&h.scale(&s)), Some(6));
}

#[test]
fn params_are_checked() {
    assert!(HpaParams::default().check().is_ok());
    let bad = [
        HpaParams {
            target_utilization: 0.0,
            ..HpaParams::default()
        },
        HpaParams {
            tolerance: 1.0,
            ..HpaParams::default()
        },
        HpaParams {
            min_replicas: 0,
            ..HpaParams::default()
        },
        HpaParams {
            min_replicas: 3,
            max_replicas: 2,
            ..HpaParams::default()
        },
        HpaParams {
            capacity: f64::NAN,
            ..HpaParams::default()
        },
        HpaParams {
            capacity: -1.0,
            ..HpaParams::default()
        },
    ];
    for p in bad {
        assert!(p.check().is_err(), "{p:?}");
    }
}
