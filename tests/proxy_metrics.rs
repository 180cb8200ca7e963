//! The proxy's `/metrics` follows Prometheus conventions: every family has `# HELP` and
//! `# TYPE`, and counters whose label values are known start at 0 before their first event.
// Test set-up: a failed step should fail the test on the spot.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use http_body_util::BodyExt;

async fn scrape(admin: std::net::SocketAddr) -> String {
    let resp = h1_client()
        .get(format!("http://{admin}/metrics").parse().unwrap())
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_has_help_and_known_counters_start_at_zero() {
    let up = Upstream::start("a").await;
    let proxy = start_proxy(&standalone_yaml(&[&up], ""));
    let fresh = scrape(proxy.admin).await;
    for want in [
        "loadshift_proxy_unrouted_total 0",
        "loadshift_proxy_shed_total{reason=\"memory\"} 0",
        "loadshift_proxy_client_timeouts_total{kind=\"header\"} 0",
        "loadshift_proxy_plan_updates_total{result=\"rejected\"} 0",
        "# HELP loadshift_proxy_unrouted_total ",
    ] {
        assert!(
            fresh.contains(want),
            "{want} missing before any request:\n{fresh}"
        );
    }
    send(&h1_client(), proxy.outbound, "web", &[], b"").await;
    send(&h1_client(), proxy.outbound, "nowhere", &[], b"").await;
    let text = scrape(proxy.admin).await;
    let mut families = 0;
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let family = line.split(' ').next().unwrap();
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP:\n{text}"
        );
        families += 1;
    }
    assert!(families >= 10, "{text}");
    assert!(text.contains("loadshift_proxy_unrouted_total 1"), "{text}");
    proxy.shutdown();
}
