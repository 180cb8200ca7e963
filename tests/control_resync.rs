//! Control plane stopped: proxies keep their last good plan and keep trying; control plane back on
//! the same address: proxies reconnect and get a full snapshot that replaces the plan whole.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_support;

use std::time::Duration;

use control_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_keep_the_last_plan_while_control_is_down_and_resync_on_return() {
    let token = token_file(TOKEN);
    let b = |w1, w2| service("static", &[(addr(1), "b-1", w1), (addr(2), "b-2", w2)]);
    let c = service("even", &[(addr(3), "c-1", 1.0)]);
    let control = Control::start(config(addr(0), &token, vec![("b", b(5.0, 1.0)), ("c", c)])).await;
    let listen = control.addrs.proxy;

    let dp = RecordingPlane::new(None);
    let _p = spawn_proxy(
        &control.url(),
        &token,
        identity("a-1", None, &["b", "c"]),
        dp.clone(),
    );
    let before = dp
        .wait_for(10, "first plan", |s| {
            s.current.as_ref().is_some_and(|p| p.services.len() == 2)
        })
        .await;
    let plan_before = before.current.clone().unwrap();
    assert_eq!(
        plan_before.services["b"].endpoint_weights["127.0.0.1:1"],
        5.0
    );

    control.stop().await;
    // Down for a while: several reconnect attempts fail, nothing changes in the data plane.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let during = dp.seen();
    assert_eq!(
        during.current.as_ref(),
        Some(&plan_before),
        "last good plan stays"
    );
    assert_eq!(during.offered.len(), before.offered.len());

    // Back on the same address with a different config: only b, with other weights.
    let restarted = Control::start(config(listen, &token, vec![("b", b(1.0, 7.0))])).await;
    let after = dp
        .wait_for(10, "resync after reconnect", |s| {
            s.current.as_ref().is_some_and(|p| {
                p.services
                    .get("b")
                    .is_some_and(|sp| sp.endpoint_weights["127.0.0.1:2"] == 7.0)
            })
        })
        .await;
    let plan_after = after.current.unwrap();
    assert!(
        !plan_after.services.contains_key("c"),
        "a full snapshot replaces the plan whole: {plan_after:?}"
    );
    assert!(
        plan_after.version > plan_before.version,
        "versions keep growing across restarts"
    );
    restarted.stop().await;
}
