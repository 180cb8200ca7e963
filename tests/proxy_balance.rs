//! P2C over Peak-EWMA as a first-time user meets it: one request at a time to two idle upstreams.
//! An endpoint that gets no traffic has its estimate decay (tower's rule), so it is tried again
//! rather than left at its default for ever.
// Test set-up: a failed step should fail the test on the spot.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Upstream, h1_client, send, standalone_yaml, start_proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_at_a_time_reaches_both_idle_upstreams() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    // A short decay constant stands in for the default 10 s, so the test takes a second.
    let proxy = start_proxy(&standalone_yaml(
        &[&a, &b],
        "telemetry: { ewma_tau_ms: 100 }\n",
    ));
    let client = h1_client();
    for _ in 0..40 {
        let got = send(&client, proxy.outbound, "web", &[], b"").await;
        assert_eq!(got.status, 200);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (na, nb) = (a.count(), b.count());
    assert_eq!(na + nb, 40);
    assert!(na >= 5 && nb >= 5, "a {na}, b {nb}");
    proxy.shutdown();
}
