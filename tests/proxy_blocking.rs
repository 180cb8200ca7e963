//! Request blocking per service and priority class: the drop fraction is honoured, blocked
//! requests get 503 + `retry-after` + a header naming the reason, the in-flight cap holds, and
//! every block is counted in `/metrics`.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;
use http_body_util::BodyExt;
use loadshift_core::plan::{Blocking, Plan, ServicePlan};

fn blocking_plan(entries: &[(&str, f64, Option<u32>)]) -> Plan {
    let blocking = entries
        .iter()
        .map(|&(class, fraction, max_in_flight)| {
            (
                class.to_string(),
                Blocking {
                    fraction,
                    max_in_flight,
                },
            )
        })
        .collect();
    Plan {
        version: 1,
        services: BTreeMap::from([(
            "web".to_string(),
            ServicePlan {
                blocking,
                ..Default::default()
            },
        )]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fraction_per_class_is_honoured_with_503_and_reason() {
    let up = Upstream::start("a").await;
    let proxy = start_proxy(&standalone_yaml(&[&up], ""));
    proxy
        .shared
        .apply_plan(blocking_plan(&[("bronze", 0.3, None), ("gold", 0.0, None)]))
        .unwrap();
    let c = h1_client();
    let (mut blocked, n) = (0, 1000);
    for _ in 0..n {
        let got = send(
            &c,
            proxy.outbound,
            "web",
            &[("x-loadshift-priority", "bronze")],
            b"",
        )
        .await;
        if got.status == 503 {
            blocked += 1;
            assert_eq!(got.header("loadshift-blocked"), Some("fraction"));
            assert_eq!(got.header("retry-after"), Some("1"));
        } else {
            assert_eq!(got.status, 200);
        }
    }
    // Error diffusion blocks exactly round(0.3 * n), give or take one.
    assert!((blocked as i64 - 300).abs() <= 1, "{blocked}");
    for _ in 0..100 {
        assert_eq!(
            send(
                &c,
                proxy.outbound,
                "web",
                &[("x-loadshift-priority", "gold")],
                b""
            )
            .await
            .status,
            200
        );
    }
    // No class header and no "*" entry: not blocked.
    assert_eq!(send(&c, proxy.outbound, "web", &[], b"").await.status, 200);
    assert_eq!(up.count(), (n - blocked) as u64 + 101);

    let metrics = h1_client()
        .get(format!("http://{}/metrics", proxy.admin).parse().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        metrics
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("loadshift_proxy_blocked_total") && l.contains("bronze"))
        .unwrap();
    assert!(line.ends_with(&format!(" {blocked}")), "{line}");
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_cap_blocks_the_excess() {
    let up = Upstream::start("slow").await;
    up.set(Behaviour::Delay(Duration::from_millis(300)));
    let proxy = start_proxy(&standalone_yaml(&[&up], ""));
    proxy
        .shared
        .apply_plan(blocking_plan(&[("*", 0.0, Some(3))]))
        .unwrap();
    let c = h1_client();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            let addr = proxy.outbound;
            tokio::spawn(async move { send(&c, addr, "web", &[], b"").await })
        })
        .collect();
    let mut statuses = Vec::new();
    for h in handles {
        let got = h.await.unwrap();
        if got.status == 503 {
            assert_eq!(got.header("loadshift-blocked"), Some("in-flight-cap"));
        }
        statuses.push(got.status.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 503).count(),
        5,
        "{statuses:?}"
    );
    proxy.shutdown();
}
