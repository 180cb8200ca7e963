//! A plan the proxy refuses comes back as a NACK with the proxy's reason; the proxy keeps its last
//! good plan, and the control plane does not send the refused plan again until it changes (while
//! other services' changes still flow).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_support;

use std::time::Duration;

use control_support::*;
use loadshift_core::plan::Plan;
use loadshift_proto::v1 as pb;

/// The proxy's own limit in this test: it refuses to block more than half of any class.
fn refuse_heavy_blocking(p: &Plan) -> Option<String> {
    p.services.iter().find_map(|(svc, sp)| {
        sp.blocking.values().find(|b| b.fraction > 0.5).map(|b| {
            format!(
                "service {svc:?}: blocking fraction {} above this proxy's limit 0.5",
                b.fraction
            )
        })
    })
}

fn block(fraction: f64) -> pb::ServicePlan {
    pb::ServicePlan {
        endpoint_weights: [("127.0.0.1:1".to_string(), 1.0)].into(),
        blocking: [(
            "*".to_string(),
            pb::Blocking {
                fraction,
                max_in_flight: None,
            },
        )]
        .into(),
        ..Default::default()
    }
}

fn fraction(p: &Plan, svc: &str) -> Option<f64> {
    p.services.get(svc)?.blocking.get("*").map(|b| b.fraction)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_plan_is_nacked_kept_back_and_the_last_good_plan_stays() {
    let token = token_file(TOKEN);
    let cfg = config(
        addr(0),
        &token,
        vec![
            (
                "b",
                service("even", &[(addr(1), "b-1", 1.0), (addr(2), "b-2", 1.0)]),
            ),
            ("c", service("even", &[(addr(3), "c-1", 1.0)])),
        ],
    );
    let control = Control::start(cfg).await;
    let dp = RecordingPlane::new(Some(Box::new(refuse_heavy_blocking)));
    let _p = spawn_proxy(
        &control.url(),
        &token,
        identity("a-1", None, &["b", "c"]),
        dp.clone(),
    );
    dp.wait_for(10, "first plan", |s| {
        s.current.as_ref().is_some_and(|p| p.services.len() == 2)
    })
    .await;
    let mut op = control.operator(TOKEN).await;

    // Accepted pin first: this is the last good plan for b.
    op.pin_plan(pb::PinPlanRequest {
        service: "b".into(),
        plan: Some(block(0.2)),
    })
    .await
    .unwrap();
    dp.wait_for(5, "good pin applied", |s| {
        s.current.as_ref().and_then(|p| fraction(p, "b")) == Some(0.2)
    })
    .await;

    // Refused pin: the NACK carries the proxy's reason; b stays at 0.2.
    op.pin_plan(pb::PinPlanRequest {
        service: "b".into(),
        plan: Some(block(0.9)),
    })
    .await
    .unwrap();
    let seen = dp
        .wait_for(5, "heavy pin refused", |s| !s.rejected.is_empty())
        .await;
    assert!(
        seen.rejected[0].1.contains("above this proxy's limit"),
        "{:?}",
        seen.rejected
    );
    assert_eq!(fraction(seen.current.as_ref().unwrap(), "b"), Some(0.2));
    let offered_after_nack = seen.offered.len();

    // Several planner rounds later nothing was re-sent.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        dp.seen().offered.len(),
        offered_after_nack,
        "refused plan must not be re-sent unchanged"
    );

    // Another service's change still flows, without the refused plan riding along.
    op.pin_plan(pb::PinPlanRequest {
        service: "c".into(),
        plan: Some(pb::ServicePlan {
            endpoint_weights: [("127.0.0.1:3".to_string(), 5.0)].into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    let seen = dp
        .wait_for(5, "pin on c applied", |s| {
            s.current
                .as_ref()
                .is_some_and(|p| p.services["c"].endpoint_weights.get("127.0.0.1:3") == Some(&5.0))
        })
        .await;
    assert_eq!(seen.rejected.len(), 1);
    assert_eq!(
        fraction(seen.current.as_ref().unwrap(), "b"),
        Some(0.2),
        "b keeps its last good plan"
    );
    assert!(
        seen.offered[offered_after_nack..]
            .iter()
            .all(|p| fraction(p, "b") != Some(0.9))
    );

    // Pinning the same refused plan again is no change; a changed plan goes out and applies.
    op.pin_plan(pb::PinPlanRequest {
        service: "b".into(),
        plan: Some(block(0.9)),
    })
    .await
    .unwrap();
    op.pin_plan(pb::PinPlanRequest {
        service: "b".into(),
        plan: Some(block(0.4)),
    })
    .await
    .unwrap();
    let seen = dp
        .wait_for(5, "changed plan applied", |s| {
            s.current.as_ref().and_then(|p| fraction(p, "b")) == Some(0.4)
        })
        .await;
    assert_eq!(seen.rejected.len(), 1);

    control.stop().await;
}
