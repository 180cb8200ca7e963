//! Forwarding, request-id and trace fields on requests reaching the upstream, over HTTP/1.1 and
//! HTTP/2, at the edge (the client's values dropped) and inside the mesh (kept and extended).
// Test set-up: a failed step should fail the test on the spot.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn seen(up: &Upstream) -> http::HeaderMap {
    up.last_headers.lock().unwrap().clone()
}

fn field<'a>(h: &'a http::HeaderMap, name: &str) -> &'a str {
    h.get(name).map_or("", |v| v.to_str().unwrap())
}

fn forged() -> Vec<(&'static str, String)> {
    vec![
        ("x-forwarded-for", "6.6.6.6".into()),
        ("forwarded", "for=6.6.6.6;proto=https".into()),
        ("x-request-id", "chosen-by-the-client".into()),
        ("traceparent", format!("00-{TRACE}-b7ad6b7169203331-01")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_proxy_replaces_what_its_clients_claim() {
    let up = Upstream::start("a").await;
    let proxy = start_proxy(&standalone_yaml(&[&up], ""));
    let sent = forged();
    let headers: Vec<(&str, &str)> = sent.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let got = send(&h1_client(), proxy.outbound, "web", &headers, b"").await;
    assert_eq!(got.status, 200);
    let h = seen(&up);
    assert_eq!(field(&h, "x-forwarded-for"), "127.0.0.1");
    assert_eq!(field(&h, "forwarded"), "for=127.0.0.1;proto=http");
    assert_eq!(field(&h, "x-forwarded-proto"), "http");
    let id = field(&h, "x-request-id");
    assert!(
        id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    let tp = field(&h, "traceparent");
    assert!(tp.starts_with("00-") && !tp.contains(TRACE), "{tp}");
    // Each request its own id and trace.
    send(&h1_client(), proxy.outbound, "web", &[], b"").await;
    let h2 = seen(&up);
    assert_ne!(field(&h2, "x-request-id"), id);
    assert_ne!(field(&h2, "traceparent"), tp);
    // Over HTTP/2 too.
    let got = send_h2(proxy.outbound, "web", b"").await;
    assert_eq!(got.status, 200);
    let h = seen(&up);
    assert_eq!(field(&h, "x-forwarded-for"), "127.0.0.1");
    assert_eq!(field(&h, "x-request-id").len(), 32);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusting_proxy_keeps_and_extends_them_and_off_adds_nothing() {
    let up = Upstream::start("a").await;
    let proxy = start_proxy(&standalone_yaml(
        &[&up],
        "forwarding: { trust_incoming: true }\n",
    ));
    let sent = forged();
    let headers: Vec<(&str, &str)> = sent.iter().map(|(k, v)| (*k, v.as_str())).collect();
    send(&h1_client(), proxy.outbound, "web", &headers, b"").await;
    let h = seen(&up);
    assert_eq!(field(&h, "x-forwarded-for"), "6.6.6.6, 127.0.0.1");
    assert_eq!(
        field(&h, "forwarded"),
        "for=6.6.6.6;proto=https, for=127.0.0.1;proto=http"
    );
    assert_eq!(field(&h, "x-request-id"), "chosen-by-the-client");
    let tp = field(&h, "traceparent");
    assert!(
        tp.starts_with(&format!("00-{TRACE}-")) && tp.ends_with("-01"),
        "{tp}"
    );
    assert!(!tp.contains("b7ad6b7169203331"), "a span of its own: {tp}");
    proxy.shutdown();

    let up = Upstream::start("b").await;
    let proxy = start_proxy(&standalone_yaml(&[&up], "forwarding: { enabled: false }\n"));
    send(&h1_client(), proxy.outbound, "web", &headers, b"").await;
    let h = seen(&up);
    assert_eq!(field(&h, "x-forwarded-for"), "6.6.6.6");
    assert_eq!(field(&h, "x-request-id"), "chosen-by-the-client");
    assert!(h.get("x-forwarded-proto").is_none());
    proxy.shutdown();
}
