use super::*;
use crate::ServiceState;
use crate::testing::{container, snapshot};

fn cpu(u: f64) -> Interference {
    Interference {
        cpu: u,
        membw: 0.0,
        net: 0.0,
    }
}

/// `w_max` = 100 rps: load buckets of 25 rps, centres 12.5, 37.5, 62.5, 87.5.
fn table() -> PerfTable {
    PerfTable::new(TableParams {
        max_load_rps: Some(100.0),
        ..Default::default()
    })
}

#[test]
fn buckets_cover_zero_to_eighty_percent() {
    let t = table();
    let got: Vec<u8> = [0.0, 0.19, 0.2, 0.41, 0.79, 0.8, 0.95, -1.0, f64::NAN]
        .map(|u| t.interference_bucket(u))
        .to_vec();
    assert_eq!(got, [0, 0, 1, 2, 3, 3, 3, 0, 0]);
}

#[test]
fn missing_load_key_interpolates_with_the_base_term() {
    let mut t = table();
    t.record("s", cpu(0.1), 10.0, 10.0, 50); // bucket 0
    t.record("s", cpu(0.1), 90.0, 40.0, 50); // bucket 3
    // w = 40 is bucket 1, absent. Between centres 12.5 (10 ms) and 87.5 (40 ms):
    // 10 + (40 - 10) * (40 - 12.5) / (87.5 - 12.5) = 10 + 30 * 27.5 / 75 = 21 ms.
    // Eq. 4 as printed (no phi(w_m) term) would say 11 ms.
    let got = t.lookup("s", cpu(0.1), 40.0).unwrap();
    assert!((got - 21.0).abs() < 1e-9, "{got}");
    // A present load key answers with its own value.
    assert_eq!(t.lookup("s", cpu(0.1), 99.0), Some(40.0));
    assert_eq!(
        t.lookup("s", cpu(0.1), 500.0),
        Some(40.0),
        "above w_max is the top bucket"
    );
}

#[test]
fn outside_the_present_buckets_the_closest_line_extends() {
    let mut t = table();
    t.record("s", cpu(0.1), 12.5, 10.0, 5);
    t.record("s", cpu(0.1), 37.5, 20.0, 5);
    // Bucket 3 absent; the two closest below are 0 and 1: 10 + 10 * (87.5 - 12.5) / 25 = 40.
    let got = t.lookup("s", cpu(0.1), 87.5).unwrap();
    assert!((got - 40.0).abs() < 1e-9, "{got}");
    let mut one = table();
    one.record("s", cpu(0.1), 12.5, 7.0, 5);
    assert_eq!(
        one.lookup("s", cpu(0.1), 80.0),
        Some(7.0),
        "one bucket: its value"
    );
    assert_eq!(one.lookup("other", cpu(0.1), 80.0), None);
}

#[test]
fn linear_lookup_moves_within_a_bucket_and_extends_the_nearest_segment() {
    let mut t = table();
    t.record("s", cpu(0.1), 12.5, 10.0, 5); // bucket 0, centre 12.5
    t.record("s", cpu(0.1), 37.5, 20.0, 5); // bucket 1, centre 37.5
    t.record("s", cpu(0.1), 87.5, 60.0, 5); // bucket 3, centre 87.5
    let at = |w: f64| t.lookup_linear("s", cpu(0.1), w).unwrap();
    // 30 and 35 rps share bucket 1: `lookup` cannot tell them apart, the line can.
    assert_eq!(t.lookup("s", cpu(0.1), 30.0), t.lookup("s", cpu(0.1), 35.0));
    assert!((at(30.0) - 17.0).abs() < 1e-9, "10 + 10 * 17.5 / 25");
    assert!((at(35.0) - 19.0).abs() < 1e-9, "10 + 10 * 22.5 / 25");
    // Between 37.5 and 87.5 (bucket 2 absent): 20 + 40 * 25 / 50.
    assert!((at(62.5) - 40.0).abs() < 1e-9);
    // Above the last centre the last segment goes on; below the first, the first, clamped at 0.
    assert!((at(100.0) - 70.0).abs() < 1e-9, "60 + 40 * 12.5 / 50");
    assert!((at(5.0) - 7.0).abs() < 1e-9, "10 - 10 * 7.5 / 25");
    let mut falling = table();
    falling.record("s", cpu(0.1), 12.5, 10.0, 5);
    falling.record("s", cpu(0.1), 37.5, 1.0, 5);
    assert_eq!(falling.lookup_linear("s", cpu(0.1), 80.0), Some(0.0));
    assert_eq!(t.load_cells("s", cpu(0.1)), 3);
    // One cell: its value everywhere; no data: nothing.
    let mut one = table();
    one.record("s", cpu(0.1), 12.5, 7.0, 5);
    assert_eq!(one.lookup_linear("s", cpu(0.1), 80.0), Some(7.0));
    assert_eq!(one.load_cells("s", cpu(0.1)), 1);
    assert_eq!(one.lookup_linear("other", cpu(0.1), 80.0), None);
    assert_eq!(one.load_cells("other", cpu(0.1)), 0);
    assert_eq!(one.lookup_linear("s", cpu(0.1), f64::NAN), None);
}

#[test]
fn missing_interference_key_uses_the_nearest() {
    let mut t = table();
    t.record("s", cpu(0.05), 10.0, 5.0, 10); // cpu bucket 0
    t.record("s", cpu(0.7), 10.0, 50.0, 10); // cpu bucket 3
    // cpu 0.5 is bucket 2: distance 1 to bucket 3, 4 to bucket 0.
    assert_eq!(t.lookup("s", cpu(0.5), 10.0), Some(50.0));
    assert_eq!(t.lookup("s", cpu(0.25), 10.0), Some(5.0));
    // Tie (bucket 1 and 3 both at distance 1 from 2): the key with more requests wins.
    let mut tie = table();
    tie.record("s", cpu(0.3), 10.0, 15.0, 10);
    tie.record("s", cpu(0.7), 10.0, 50.0, 500);
    assert_eq!(tie.lookup("s", cpu(0.5), 10.0), Some(50.0));
    // Distance counts every dimension.
    let mut multi = table();
    multi.record(
        "s",
        Interference {
            cpu: 0.5,
            membw: 0.7,
            net: 0.7,
        },
        10.0,
        99.0,
        10,
    );
    multi.record("s", cpu(0.05), 10.0, 1.0, 10);
    assert_eq!(
        multi.lookup("s", cpu(0.5), 10.0),
        Some(1.0),
        "(2,0,0): 4 away from (0,0,0), 18 from (2,3,3)"
    );
}

#[test]
fn cells_average_first_then_track_with_alpha() {
    let mut t = table();
    for (p95, want) in [(10.0, 10.0), (20.0, 15.0), (30.0, 20.0)] {
        t.record("s", cpu(0.0), 1.0, p95, 1);
        assert!((t.lookup("s", cpu(0.0), 1.0).unwrap() - want).abs() < 1e-12);
    }
    // Fourth and later: weight max(1/n, 0.2) = 0.25, then 0.2.
    t.record("s", cpu(0.0), 1.0, 40.0, 1);
    assert!((t.lookup("s", cpu(0.0), 1.0).unwrap() - 25.0).abs() < 1e-12);
    t.record("s", cpu(0.0), 1.0, 125.0, 1);
    assert!((t.lookup("s", cpu(0.0), 1.0).unwrap() - 45.0).abs() < 1e-12);
    let cells = t.service("s").unwrap().to_stored().cells;
    assert_eq!((cells[0].cell.observations, cells[0].cell.requests), (5, 5));
    // Bad values are ignored.
    t.record("s", cpu(0.0), 1.0, f64::NAN, 1);
    t.record("s", cpu(0.0), 1.0, 5.0, 0);
    assert!((t.lookup("s", cpu(0.0), 1.0).unwrap() - 45.0).abs() < 1e-12);
}

#[test]
fn observes_snapshots_and_estimates_w_max_once() {
    let mut t = PerfTable::new(TableParams::default());
    let mut slow = container(2, "busy", 20.0, 100);
    if let Some(w) = slow.inbound.as_mut() {
        w.window_s = 10.0;
    }
    let mut fast = container(1, "idle", 5.0, 400);
    if let Some(w) = fast.inbound.as_mut() {
        w.window_s = 10.0;
    }
    let svc = ServiceState {
        name: "s".into(),
        containers: vec![fast, slow],
        ..Default::default()
    };
    let mut snap = snapshot(vec![svc]);
    std::sync::Arc::make_mut(&mut snap.hosts).insert(
        "busy".into(),
        HostPressure {
            cpu_util: 0.7,
            ..Default::default()
        },
    );
    std::sync::Arc::make_mut(&mut snap.hosts).insert(
        "idle".into(),
        HostPressure {
            cpu_util: 0.1,
            ..Default::default()
        },
    );
    t.observe(&snap);
    // Lowest mean 5 ms: one core is 50% busy at 0.5 / 0.005 = 100 rps.
    assert_eq!(t.service("s").unwrap().max_load_rps, Some(100.0));
    // The idle host's container: 40 rps (bucket 1), p95 = 2 x mean = 10 ms.
    assert_eq!(t.lookup("s", cpu(0.1), 40.0), Some(10.0));
    assert_eq!(t.lookup("s", cpu(0.7), 10.0), Some(40.0));
    assert_eq!(t.service("s").unwrap().len(), 2);
    let dirty = t.take_dirty();
    assert_eq!(dirty.len(), 1);
    assert!(t.take_dirty().is_empty());
    // The estimate is kept even when the service gets faster.
    std::sync::Arc::make_mut(snap.services.get_mut("s").unwrap()).containers[0]
        .inbound
        .as_mut()
        .unwrap()
        .mean_ms = 1.0;
    t.observe(&snap);
    assert_eq!(t.service("s").unwrap().max_load_rps, Some(100.0));
}

#[test]
fn stored_form_round_trips() {
    let mut t = table();
    t.record("s", cpu(0.1), 10.0, 10.0, 50);
    t.record(
        "s",
        Interference {
            cpu: 0.5,
            membw: 0.3,
            net: 0.9,
        },
        90.0,
        40.0,
        7,
    );
    let stored = t.service("s").unwrap().to_stored();
    let json = serde_json::to_string(&stored).unwrap();
    let back: StoredTable = serde_json::from_str(&json).unwrap();
    assert_eq!(ServiceTable::from_stored(&back), *t.service("s").unwrap());
}

#[test]
fn pressure_maps_to_interference() {
    let p = HostPressure {
        cpu_util: 0.4,
        psi_cpu: Some(3.0),
        psi_memory: Some(25.0),
        psi_io: None,
    };
    assert_eq!(
        Interference::from_pressure(&p),
        Interference {
            cpu: 0.4,
            membw: 0.25,
            net: 0.0
        }
    );
}
