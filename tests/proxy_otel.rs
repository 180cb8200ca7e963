//! OpenTelemetry spans from a real proxy to a real OTLP/gRPC receiver (a tonic server of the
//! collector's `TraceService`, from the OpenTelemetry project's own generated types): one span per
//! sampled request, carrying the trace id and span id the upstream saw in `traceparent` and the
//! client's span as parent; errors marked; unsampled traces exported by nobody; a collector that
//! is down costs the requests nothing and is counted.
// Test set-up: a failed step should fail the test on the spot.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::*;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::{Span, span::SpanKind, status::StatusCode},
};

/// One exported span with its resource's attributes.
type Exported = (Vec<(String, String)>, Span);

/// What the receiver got.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Exported>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let resource: Vec<(String, String)> = rs
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default()
                .into_iter()
                .map(|kv| {
                    let v = match kv.value.and_then(|v| v.value) {
                        Some(Value::StringValue(s)) => s,
                        other => format!("{other:?}"),
                    };
                    (kv.key, v)
                })
                .collect();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    got.push((resource.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn receiver() -> (std::net::SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Received::default();
    let svc = TraceServiceServer::new(got.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, got)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr(s: &Span, key: &str) -> Option<Value> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

async fn wait_spans(got: &Received, n: usize) -> Vec<Exported> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let spans = got.0.lock().unwrap().clone();
        if spans.len() >= n {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "{} spans of {n} arrived",
            spans.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_requests_become_spans_with_the_trace_the_upstream_saw() {
    let (collector, got) = receiver().await;
    let up = Upstream::start("a").await;
    // Trusting (as a sidecar would): a client's sampled trace is continued; new traces are
    // sampled at 0, so only the client's decision produces spans.
    let extra = format!(
        "identity: {{ pod: web-1, host: node-a, zone: z1 }}\nforwarding: {{ trust_incoming: true }}\notel: {{ endpoint: \"http://{collector}\", sample_ratio: 0.0, flush_ms: 50, service_name: shop-edge }}\n"
    );
    let yaml = standalone_yaml(&[&up], "").replace("identity: { pod: test-proxy }\n", "");
    let proxy = start_proxy(&format!("{yaml}{extra}"));
    let c = h1_client();

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let sampled = format!("00-{trace}-{client_span}-01");
    let got_ok = send(&c, proxy.outbound, "web", &[("traceparent", &sampled)], b"").await;
    assert_eq!(got_ok.status, 200);
    let upstream_saw = up
        .last_headers
        .lock()
        .unwrap()
        .get("traceparent")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    // Unsampled by the client, and new traces at ratio 0: no span.
    for _ in 0..5 {
        let unsampled = format!("00-{trace}-{client_span}-00");
        send(
            &c,
            proxy.outbound,
            "web",
            &[("traceparent", &unsampled)],
            b"",
        )
        .await;
        send(&c, proxy.outbound, "web", &[], b"").await;
    }
    // An error the proxy answers itself (no route) is a span too, with its reason.
    let other_trace = "0af7651916cd43dd8448eb211c80319c";
    let sampled_404 = format!("00-{other_trace}-{client_span}-01");
    let got_404 = send(
        &c,
        proxy.outbound,
        "nowhere",
        &[("traceparent", &sampled_404)],
        b"",
    )
    .await;
    assert_eq!(got_404.status, 404);

    let spans = wait_spans(&got, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spans_now = got.0.lock().unwrap().clone();
    // The 404 has no service to route to, so it is answered before a span can name one:
    // only the proxied request is exported.
    assert_eq!(spans_now.len(), 1, "{spans_now:?}");
    let (resource, span) = &spans[0];
    assert!(resource.contains(&("service.name".into(), "shop-edge".into())));
    assert!(resource.contains(&("service.instance.id".into(), "web-1".into())));
    assert!(resource.contains(&("cloud.availability_zone".into(), "z1".into())));
    assert_eq!(hex(&span.trace_id), trace);
    assert_eq!(hex(&span.parent_span_id), client_span);
    assert_eq!(
        upstream_saw,
        format!("00-{trace}-{}-01", hex(&span.span_id)),
        "the span is the parent the upstream saw"
    );
    assert_eq!(span.kind, SpanKind::Client as i32);
    assert_eq!(span.name, "GET web");
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    assert!(span.start_time_unix_nano > 1_700_000_000_000_000_000);
    assert_eq!(
        attr(span, "http.response.status_code"),
        Some(Value::IntValue(200))
    );
    assert_eq!(
        attr(span, "url.path"),
        Some(Value::StringValue("/path".into()))
    );
    assert_eq!(
        attr(span, "server.port"),
        Some(Value::IntValue(i64::from(up.addr.port())))
    );
    assert_eq!(span.status.clone().unwrap().code, StatusCode::Unset as i32);

    // An upstream failing with 503: an error span.
    up.set(Behaviour::Fail);
    let trace_503 = "11112222333344445555666677778888";
    let sampled_503 = format!("00-{trace_503}-{client_span}-01");
    send(
        &c,
        proxy.outbound,
        "web",
        &[("traceparent", &sampled_503)],
        b"",
    )
    .await;
    let spans = wait_spans(&got, 2).await;
    let failed = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| hex(&s.trace_id) == trace_503)
        .unwrap();
    assert_eq!(
        failed.status.clone().unwrap().code,
        StatusCode::Error as i32
    );
    assert_eq!(
        attr(failed, "http.response.status_code"),
        Some(Value::IntValue(503))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_requests_nothing_and_is_counted() {
    // A port with nothing listening.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let up = Upstream::start("a").await;
    let extra = format!(
        "otel: {{ endpoint: \"http://{dead}\", sample_ratio: 1.0, flush_ms: 50, timeout_ms: 200 }}\n"
    );
    let proxy = start_proxy(&standalone_yaml(&[&up], &extra));
    let c = h1_client();
    for _ in 0..20 {
        let g = send(&c, proxy.outbound, "web", &[], b"").await;
        assert_eq!(g.status, 200);
        // Sampled at ratio 1: the upstream is told so.
        let tp = up.last_headers.lock().unwrap().get("traceparent").cloned();
        assert!(tp.unwrap().to_str().unwrap().ends_with("-01"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = h1_client()
            .get(format!("http://{}/metrics", proxy.admin).parse().unwrap())
            .await
            .unwrap();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let failed = text
            .lines()
            .find(|l| l.starts_with("loadshift_proxy_otel_spans_total{result=\"failed\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if failed >= 20.0 {
            assert!(text.contains("loadshift_proxy_otel_export_failures_total"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "failed spans not counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
