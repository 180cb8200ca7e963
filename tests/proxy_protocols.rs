//! HTTP/1.1, h2c and gRPC (unary and server streaming, with trailers) through the real proxy to
//! real upstream servers; bodies streamed; hop-by-hop headers removed both ways.

mod common;

use common::*;
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_request_and_body_reach_upstream_without_hop_by_hop_headers() {
    let up = Upstream::start("a").await;
    let proxy = start_proxy(&standalone_yaml(&[&up], ""));
    let c = h1_client();
    let got = send(
        &c,
        proxy.outbound,
        "web",
        &[
            ("connection", "x-private"),
            ("x-private", "1"),
            ("x-kept", "2"),
        ],
        b"hello body",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(&got.body[..], b"hello body");
    assert_eq!(got.header("x-upstream"), Some("a"));
    // Response hop-by-hop fields named by the upstream's Connection header are gone.
    assert_eq!(got.header("x-hop"), None);
    let seen = up.last_headers.lock().unwrap().clone();
    assert!(seen.get("x-private").is_none(), "{seen:?}");
    assert_eq!(seen.get("x-kept").unwrap(), "2");
    assert_eq!(seen.get("host").unwrap(), "web");

    // A large body is streamed through (not limited by any buffer).
    let big: &'static [u8] = Box::leak(vec![b'x'; 4 << 20].into_boxed_slice());
    let got = send(&c, proxy.outbound, "web", &[], big).await;
    assert_eq!(got.body.len(), 4 << 20);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_goes_upstream_as_h2_when_auto() {
    let up = Upstream::start("a").await;
    let proxy = start_proxy(&standalone_yaml(&[&up], ""));
    let got = send_h2(proxy.outbound, "web", b"over h2").await;
    assert_eq!(got.status, 200);
    assert_eq!(&got.body[..], b"over h2");
    assert_eq!(got.header("x-upstream-version"), Some("HTTP/2.0"));
    // And HTTP/1.1 in stays HTTP/1.1 out.
    let got = send(&h1_client(), proxy.outbound, "web", &[], b"").await;
    assert_eq!(got.header("x-upstream-version"), Some("HTTP/1.1"));
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_authority_is_404_with_reason() {
    let up = Upstream::start("a").await;
    let proxy = start_proxy(&standalone_yaml(&[&up], ""));
    let got = send(&h1_client(), proxy.outbound, "nope.example", &[], b"").await;
    assert_eq!(got.status, 404);
    assert_eq!(got.header("loadshift-error"), Some("no-route"));
    assert_eq!(up.count(), 0);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_and_streaming_with_trailers() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = listener.local_addr().unwrap();
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("orders", tonic_health::ServingStatus::Serving)
        .await;
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let yaml = format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\ndefault_service: grpc\nservices:\n  - name: grpc\n    protocol: http2\n    endpoints: [{{ addr: \"{grpc_addr}\" }}]\n"
    );
    let proxy = start_proxy(&yaml);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", proxy.outbound))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);

    let ok = client
        .check(HealthCheckRequest {
            service: "orders".into(),
        })
        .await
        .unwrap();
    assert_eq!(ok.into_inner().status, ServingStatus::Serving as i32);
    // An error status travels in trailers (or trailers-only headers) and arrives intact.
    let err = client
        .check(HealthCheckRequest {
            service: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let mut stream = client
        .watch(HealthCheckRequest {
            service: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    reporter
        .set_service_status("orders", tonic_health::ServingStatus::NotServing)
        .await;
    let second = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.status, ServingStatus::NotServing as i32);
    // Close the client's connection so the drain has nothing to wait for.
    drop((stream, client));
    proxy.shutdown();
    server.abort();
}
