//! Both APIs refuse calls without the bearer token, with UNAUTHENTICATED and a message that says
//! what is wrong; a proxy with the wrong token never receives a plan.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_support;

use std::time::Duration;

use control_support::*;
use loadshift_proto::v1::{self as pb, proxy_control_client::ProxyControlClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_calls_are_refused_on_both_apis() {
    let token = token_file(TOKEN);
    let mut cfg = config(
        addr(0),
        &token,
        vec![("b", service("even", &[(addr(1), "b-1", 1.0)]))],
    );
    cfg.operator_listen = Some(addr(0));
    let control = Control::start(cfg).await;
    assert_ne!(
        control.addrs.proxy, control.addrs.operator,
        "operator API on its own listener"
    );

    for (tok, needle) in [(None, "missing"), (Some("wrong"), "does not match")] {
        let mut op = operator(control.addrs.operator, tok).await;
        let err = op
            .list_services(pb::ListServicesRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains(needle), "{}", err.message());

        let mut pc =
            ProxyControlClient::with_interceptor(channel(control.addrs.proxy).await, auth(tok));
        let hello = pb::ProxyMessage {
            msg: Some(pb::proxy_message::Msg::Hello(pb::Hello {
                pod: "x".into(),
                ..Default::default()
            })),
        };
        let err = pc
            .connect(tonic::codegen::tokio_stream::iter(vec![hello]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }

    // The right token works on the operator listener only for the operator API.
    let mut op = operator(control.addrs.operator, Some(TOKEN)).await;
    assert_eq!(
        op.list_services(pb::ListServicesRequest {})
            .await
            .unwrap()
            .into_inner()
            .services
            .len(),
        1
    );

    // A real proxy client with a wrong token keeps retrying and never gets anything.
    let wrong = token_file("not-the-token");
    let dp = RecordingPlane::new(None);
    let _p = spawn_proxy(
        &control.url(),
        &wrong,
        identity("a-1", None, &["b"]),
        dp.clone(),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let seen = dp.seen();
    assert!(
        seen.current.is_none() && seen.endpoints.is_empty(),
        "{seen:?}"
    );
    control.stop().await;
}
