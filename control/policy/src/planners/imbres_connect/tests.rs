use super::*;
use crate::testing::{container, snapshot};
use crate::{ProxyInfo, ServiceState};
use loadshift_core::telemetry::pressure::HostPressure;
use proptest::prelude::*;

/// Per downstream, the traffic it receives when upstream `u` sends `s[u]` (normalised).
fn received(cp: &ConnectionPlan, up_share: &[f64], n_down: usize) -> Vec<f64> {
    let s = normalised(up_share);
    let mut got = vec![0.0; n_down];
    for (u, subset) in cp.per_upstream.iter().enumerate() {
        for &(d, frac) in subset {
            got[d] += s[u] * frac;
        }
    }
    got
}

#[test]
fn greedy_matching_follows_the_papers_order_and_meets_every_share() {
    // Upstreams by share, highest first: 0 (0.5), 1 (0.3), 2 (0.2).
    // Downstreams by share, lowest first: 0 (0.1), 1 (0.2), 2 (0.3), 3 (0.4).
    // u0 -> d0 0.1, d1 0.2, d2 0.2 (u0 spent; d2 still needs 0.1)
    // u1 -> d2 0.1, d3 0.2 (u1 spent; d3 needs 0.2)
    // u2 -> d3 0.2.
    let flows = greedy_match(&[0.5, 0.3, 0.2], &[0.1, 0.2, 0.3, 0.4]);
    let want = [
        (0, 0, 0.1),
        (0, 1, 0.2),
        (0, 2, 0.2),
        (1, 2, 0.1),
        (1, 3, 0.2),
        (2, 3, 0.2),
    ];
    assert_eq!(flows.len(), want.len(), "{flows:?}");
    for (got, want) in flows.iter().zip(want) {
        assert_eq!((got.0, got.1), (want.0, want.1), "{flows:?}");
        assert!((got.2 - want.2).abs() < 1e-12, "{flows:?}");
    }
    // Shares need not be normalised on the way in.
    let flows = greedy_match(&[5.0, 3.0, 2.0], &[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(flows.len(), 6);
    assert!(greedy_match(&[], &[1.0]).is_empty());
    assert!(greedy_match(&[0.0, f64::NAN], &[1.0]).is_empty());
}

proptest! {
    #[test]
    fn greedy_matching_is_exact_for_any_shares(
        up in prop::collection::vec(0.001f64..10.0, 1..30),
        down in prop::collection::vec(0.001f64..10.0, 1..60),
    ) {
        let flows = greedy_match(&up, &down);
        let (a, t) = (normalised(&up), normalised(&down));
        let mut per_up = vec![0.0; up.len()];
        let mut per_down = vec![0.0; down.len()];
        for &(u, d, x) in &flows {
            prop_assert!(x > 0.0);
            per_up[u] += x;
            per_down[d] += x;
        }
        for d in 0..down.len() {
            prop_assert!((per_down[d] - t[d]).abs() < 1e-9, "downstream {}: {} vs {}", d, per_down[d], t[d]);
        }
        for u in 0..up.len() {
            prop_assert!((per_up[u] - a[u]).abs() < 1e-9, "upstream {}: {} vs {}", u, per_up[u], a[u]);
        }
        prop_assert!(flows.len() < up.len() + down.len());
    }

    #[test]
    fn grouped_plans_meet_shares_and_never_exceed_the_cap(
        up in prop::collection::vec((0.001f64..10.0, 0.1f64..500.0), 1..40),
        down in prop::collection::vec(0.001f64..10.0, 2..60),
        seed in 0u64..1000,
    ) {
        let shares: Vec<f64> = up.iter().map(|u| u.0).collect();
        let latency: Vec<f64> = up.iter().map(|u| u.1).collect();
        let cap = 10 * down.len();
        let cp = plan_connections(&shares, &latency, &down, cap, seed);
        // The cap can only hold when one group fits: every upstream needs a connection and a
        // group needs `upstreams + downstreams - 1` in general.
        let minimal = up.len() + down.len() - 1;
        if minimal <= cap {
            prop_assert!(cp.within_cap(), "{} > {}", cp.connections, cap);
        } else {
            prop_assert!(cp.connections <= minimal, "{} > {}", cp.connections, minimal);
        }
        let t = normalised(&down);
        for (d, got) in received(&cp, &shares, down.len()).into_iter().enumerate() {
            prop_assert!((got - t[d]).abs() < 1e-9, "downstream {}: {} vs {}", d, got, t[d]);
        }
        for subset in &cp.per_upstream {
            let total: f64 = subset.iter().map(|s| s.1).sum();
            prop_assert!((total - 1.0).abs() < 1e-9, "upstream sends {}", total);
        }
    }
}

#[test]
fn two_hundred_downstreams_fit_the_cap_with_groups_by_latency() {
    // 50 upstreams on two kinds of hosts, 200 downstreams: cap 2000; the paper's 10 groups would
    // need up to 50 + 10 * 199 connections, so 9 groups: 50 + 9 * 199 = 1841 <= 2000.
    let latency: Vec<f64> = (0..50)
        .map(|i| {
            if i % 5 == 0 {
                80.0 + i as f64
            } else {
                10.0 + i as f64 * 0.1
            }
        })
        .collect();
    let shares: Vec<f64> = (0..50).map(|i| 1.0 + (i % 7) as f64).collect();
    let down: Vec<f64> = (0..200).map(|d| 1.0 + (d % 3) as f64).collect();
    assert_eq!(max_groups(50, 200, 2000), 9);
    let cp = plan_connections(&shares, &latency, &down, 2000, 1);
    let groups = cp.groups.iter().max().unwrap() + 1;
    assert_eq!(groups, 9);
    assert!(cp.connections <= 1841, "{}", cp.connections);
    // The slow upstreams (every fifth) share groups only with each other.
    for u in 0..50 {
        for v in 0..50 {
            if cp.groups[u] == cp.groups[v] {
                assert_eq!(
                    u % 5 == 0,
                    v % 5 == 0,
                    "{u} and {v} grouped together: {:?}",
                    cp.groups
                );
            }
        }
    }
    let t = normalised(&down);
    for (d, got) in received(&cp, &shares, 200).into_iter().enumerate() {
        assert!((got - t[d]).abs() < 1e-9);
    }
    // One downstream, too many upstreams: the cap cannot hold, and the plan says so.
    let cp = plan_connections(&[1.0; 12], &[1.0; 12], &[1.0], 10, 0);
    assert_eq!(cp.connections, 12);
    assert!(!cp.within_cap());
}

/// `front` (4 containers on two hosts) calls `back` (20 containers on four hosts, one slow).
pub(crate) fn scene(window_s: f64) -> Snapshot {
    let with_window = |mut c: crate::ContainerState| {
        if let Some(w) = c.inbound.as_mut() {
            w.window_s = window_s;
        }
        c
    };
    let front = ServiceState {
        name: "front".into(),
        containers: (0..4)
            .map(|i| {
                with_window(container(
                    100 + i,
                    &format!("f{}", i % 2),
                    5.0 + f64::from(i % 2) * 20.0,
                    200,
                ))
            })
            .collect(),
        callers: vec!["loadgen".into()],
        offered_rps: 80.0,
        ..Default::default()
    };
    let back = ServiceState {
        name: "back".into(),
        containers: (0..20)
            .map(|i| {
                let host = format!("b{}", i % 4);
                let ms = if i % 4 == 0 { 30.0 } else { 10.0 };
                with_window(container(200 + i, &host, ms, 100))
            })
            .collect(),
        callers: (0..4).map(|i| format!("p{i}")).collect(),
        offered_rps: 80.0,
        ..Default::default()
    };
    let mut snap = snapshot(vec![front, back]);
    for i in 0..4 {
        let info = ProxyInfo {
            host: format!("f{}", i % 2),
            zone: "z1".into(),
            service: Some("front".into()),
        };
        std::sync::Arc::make_mut(&mut snap.proxies).insert(format!("p{i}"), info);
    }
    std::sync::Arc::make_mut(&mut snap.hosts).insert(
        "f0".into(),
        HostPressure {
            cpu_util: 0.1,
            ..Default::default()
        },
    );
    std::sync::Arc::make_mut(&mut snap.hosts).insert(
        "f1".into(),
        HostPressure {
            cpu_util: 0.7,
            ..Default::default()
        },
    );
    snap
}

#[test]
fn planner_falls_back_then_pushes_subsets_that_deliver_the_shifted_shares() {
    let mut p = ImbresConnect::new(ConnectParams::default());
    // Reports without a window length teach the table nothing: rendezvous fallback.
    let up = p.plan(&scene(0.0));
    assert_eq!(
        up.services["back"].subset_size,
        Some(20),
        "cap 200 / 4 callers, at most 20"
    );
    assert!(up.per_proxy.is_empty());
    assert!(p.stats()["back"].fallback);

    let snap = scene(10.0);
    p.plan(&snap);
    let up = p.plan(&snap);
    // The load generator fronts no service: one group, all four front containers, exact shares.
    let front = &up.per_proxy["loadgen"]["front"].subset;
    assert_eq!(front.len(), 4);
    assert!(!p.stats()["front"].fallback);
    let stats = p.stats()["back"];
    assert!(!stats.fallback);
    assert!(
        stats.connections <= stats.cap && stats.cap == 200,
        "{stats:?}"
    );
    assert_eq!(stats.groups, 2, "two kinds of front hosts");
    let back = &snap.services["back"];
    let host_w = &up.services["back"].host_weights;
    assert!(
        host_w["b0"] < 0.25,
        "slow host shifted away from: {host_w:?}"
    );
    // What each back container receives, summed over callers weighted by their own shares.
    let front_w = &up.services["front"].host_weights;
    assert!(front_w["f0"] > front_w["f1"], "{front_w:?}");
    let mut got: BTreeMap<String, f64> = BTreeMap::new();
    for i in 0..4 {
        let caller_share = front_w[&format!("f{}", i % 2)] / 2.0;
        let subset = &up.per_proxy[&format!("p{i}")]["back"].subset;
        let total: f64 = subset.iter().map(|e| e.share).sum();
        assert!((total - 1.0).abs() < 1e-9);
        for e in subset {
            *got.entry(e.endpoint.clone()).or_default() += caller_share * e.share;
        }
    }
    for c in &back.containers {
        let want = host_w[&c.endpoint.host] / 5.0;
        let have = got.get(c.endpoint.key()).copied().unwrap_or(0.0);
        assert!(
            (have - want).abs() < 1e-9,
            "{}: {have} vs {want}",
            c.endpoint.key()
        );
    }
}

/// A store that keeps the rows in memory, as a file or Redis would between two processes.
#[derive(Default)]
struct Rows(std::collections::BTreeMap<String, crate::planners::perf_table::StoredTable>);

impl crate::store::TableStore for Rows {
    fn load_all(
        &mut self,
    ) -> Result<
        std::collections::BTreeMap<String, crate::planners::perf_table::StoredTable>,
        crate::store::StoreError,
    > {
        Ok(self.0.clone())
    }

    fn save(
        &mut self,
        tables: &[(String, crate::planners::perf_table::StoredTable)],
    ) -> Result<(), crate::store::StoreError> {
        self.0.extend(tables.iter().cloned());
        Ok(())
    }
}

#[test]
fn table_survives_a_restart_through_the_store() {
    let mut rows = Rows::default();
    let snap = scene(10.0);
    {
        let mut p = ImbresConnect::new(ConnectParams::default());
        p.plan(&snap);
        let table = p.perf_table().unwrap();
        assert!(crate::store::persist(table, &mut rows).unwrap() > 0);
    }
    let mut p = ImbresConnect::new(ConnectParams::default());
    crate::store::restore(p.perf_table().unwrap(), &mut rows).unwrap();
    assert!(p.table().service("back").is_some_and(|t| !t.is_empty()));
    assert!(p.table().service("front").is_some());
}
