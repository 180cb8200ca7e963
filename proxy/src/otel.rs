//! OpenTelemetry spans: one per sampled proxied request, exported in batches over OTLP/gRPC
//! (`otel` in the config; off by default).
//!
//! The request path only decides and hands over: [`crate::forwarding`] returns the trace context
//! it sent upstream (this hop's span id is the parent id the upstream sees), the request fills a
//! [`SpanSlot`] when the trace is sampled, and the finished span goes into a bounded queue with a
//! non-blocking send (full: the span is dropped and counted, the request never waits). The admin
//! thread's [`export`] task batches the queue (`max_batch` spans, or what arrived within
//! `flush_ms`) into `ExportTraceServiceRequest`s for the collector.
//!
//! A span covers the request from its arrival at the proxy to the response head sent back, like
//! the latency histogram; it is a `CLIENT` span on the outbound side and a `SERVER` span on the
//! inbound one (the local app's), named `METHOD service`, with the HTTP semantic-convention
//! attributes and the endpoint that answered. Status: `ERROR` for a 5xx, and for a 4xx on the
//! client side; the proxy's own error reason (`loadshift-error`) is its message.

use std::{
    cell::RefCell,
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{Method, Response, StatusCode};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, trace_service_client::TraceServiceClient},
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    resource::v1::Resource,
    trace::v1::{
        ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode as Code,
    },
};
use tokio::sync::mpsc;

use crate::{config::Otel, forwarding::Trace, side::Side};

/// Spans by what became of them: `exported`, `dropped` (queue full), `failed` (the collector
/// refused or did not answer; the batch is not retried).
pub const SPANS: &str = "loadshift_proxy_otel_spans_total";
/// Export calls that failed.
pub const EXPORT_FAILURES: &str = "loadshift_proxy_otel_export_failures_total";

/// One finished request, as the request path hands it over.
#[derive(Clone, Debug)]
pub struct Finished {
    pub trace: Trace,
    pub side: Side,
    pub service: String,
    pub method: Method,
    pub path: String,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    /// The last endpoint tried; `None` when none was (no route, blocked, no endpoint).
    pub endpoint: Option<SocketAddr>,
    pub attempts: u32,
    pub status: u16,
    /// The proxy's own error reason, when it answered itself.
    pub error: Option<String>,
}

/// The request path's handle on the export queue.
#[derive(Clone, Debug)]
pub struct Tracer {
    tx: mpsc::Sender<Finished>,
}

impl Tracer {
    /// Hands a span to the exporter; drops and counts it when the queue is full.
    pub fn record(&self, span: Finished) {
        if self.tx.try_send(span).is_err() {
            metrics::counter!(SPANS, "result" => "dropped").increment(1);
        }
    }
}

/// The queue between the request path and [`export`].
pub fn queue(cfg: &Otel) -> (Tracer, mpsc::Receiver<Finished>) {
    let (tx, rx) = mpsc::channel(cfg.max_queue);
    for result in ["exported", "dropped", "failed"] {
        metrics::counter!(SPANS, "result" => result).increment(0);
    }
    metrics::counter!(EXPORT_FAILURES).increment(0);
    (Tracer { tx }, rx)
}

/// What one request has of its span while it is being served: nothing when unsampled.
#[derive(Debug, Default)]
pub struct SpanSlot(RefCell<Option<Finished>>);

impl SpanSlot {
    /// Opens the span once the trace context is known; a no-op for an unsampled trace.
    pub fn begin(
        &self,
        trace: Option<Trace>,
        side: Side,
        service: &str,
        method: &Method,
        path: &str,
        start: SystemTime,
    ) {
        let Some(trace) = trace.filter(|t| t.sampled) else {
            return;
        };
        *self.0.borrow_mut() = Some(Finished {
            trace,
            side,
            service: service.to_string(),
            method: method.clone(),
            path: path.to_string(),
            start_unix_ns: unix_ns(start),
            end_unix_ns: 0,
            endpoint: None,
            attempts: 0,
            status: 0,
            error: None,
        });
    }

    /// One attempt went to `endpoint`.
    pub fn attempt(&self, endpoint: SocketAddr) {
        if let Some(s) = self.0.borrow_mut().as_mut() {
            s.endpoint = Some(endpoint);
            s.attempts += 1;
        }
    }

    /// Closes the span with the response head going back; `None` when it was not sampled.
    pub fn finish<B>(&self, resp: &Response<B>) -> Option<Finished> {
        let mut s = self.0.borrow_mut().take()?;
        s.end_unix_ns = unix_ns(SystemTime::now());
        s.status = resp.status().as_u16();
        s.error = resp
            .headers()
            .get("loadshift-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Some(s)
    }
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Who is exporting: the resource every span belongs to.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub service_name: String,
    pub pod: String,
    pub host: String,
    pub zone: String,
    pub container: String,
}

/// Sends the queue's spans to the collector in batches until every [`Tracer`] is gone.
pub async fn export(cfg: Otel, origin: Origin, mut rx: mpsc::Receiver<Finished>) {
    let endpoint = match tonic::transport::Endpoint::from_shared(cfg.endpoint.clone()) {
        Ok(e) => e
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms)),
        Err(e) => {
            // Validated at config load; still, never take the proxy down for telemetry.
            tracing::error!(endpoint = %cfg.endpoint, error = %e, "otel.endpoint unusable; spans are dropped");
            return;
        }
    };
    let mut client = TraceServiceClient::new(endpoint.connect_lazy());
    let resource = resource(&origin);
    let flush = Duration::from_millis(cfg.flush_ms);
    let mut open = true;
    while open {
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + flush;
        while batch.len() < cfg.max_batch {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "loadshift-proxy".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans: batch.iter().map(span).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        match client.export(request).await {
            Ok(_) => metrics::counter!(SPANS, "result" => "exported").increment(n),
            Err(status) => {
                metrics::counter!(SPANS, "result" => "failed").increment(n);
                metrics::counter!(EXPORT_FAILURES).increment(1);
                tracing::debug!(error = %status, spans = n, "span export failed");
            }
        }
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn resource(o: &Origin) -> Resource {
    let mut attributes = vec![kv(
        "service.name",
        Value::StringValue(o.service_name.clone()),
    )];
    for (key, v) in [
        ("service.instance.id", &o.pod),
        ("host.name", &o.host),
        ("cloud.availability_zone", &o.zone),
        ("loadshift.container", &o.container),
    ] {
        if !v.is_empty() {
            attributes.push(kv(key, Value::StringValue(v.clone())));
        }
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// The OTLP form of one finished request.
pub fn span(f: &Finished) -> Span {
    let client = f.side == Side::Outbound;
    let mut attributes = vec![
        kv(
            "http.request.method",
            Value::StringValue(f.method.as_str().into()),
        ),
        kv("url.path", Value::StringValue(f.path.clone())),
        kv(
            "http.response.status_code",
            Value::IntValue(i64::from(f.status)),
        ),
        kv("loadshift.service", Value::StringValue(f.service.clone())),
        kv("loadshift.attempts", Value::IntValue(i64::from(f.attempts))),
    ];
    if let Some(ep) = f.endpoint {
        attributes.push(kv(
            "server.address",
            Value::StringValue(ep.ip().to_string()),
        ));
        attributes.push(kv("server.port", Value::IntValue(i64::from(ep.port()))));
    }
    let failed = f.status >= 500 || (client && f.status >= 400);
    let status = if failed {
        Status {
            code: Code::Error as i32,
            message: f.error.clone().unwrap_or_else(|| {
                StatusCode::from_u16(f.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("")
                    .to_string()
            }),
        }
    } else {
        Status::default()
    };
    Span {
        trace_id: f.trace.trace_id.to_vec(),
        span_id: f.trace.span_id.to_vec(),
        parent_span_id: f.trace.parent_id.map(|p| p.to_vec()).unwrap_or_default(),
        // W3C trace flags: sampled.
        flags: 1,
        name: format!("{} {}", f.method, f.service),
        kind: if client {
            SpanKind::Client
        } else {
            SpanKind::Server
        } as i32,
        start_time_unix_nano: f.start_unix_ns,
        end_time_unix_nano: f.end_unix_ns.max(f.start_unix_ns),
        attributes,
        status: Some(status),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(side: Side, status: u16, error: Option<&str>) -> Finished {
        Finished {
            trace: Trace {
                trace_id: [7; 16],
                span_id: [3; 8],
                parent_id: Some([9; 8]),
                sampled: true,
            },
            side,
            service: "web".into(),
            method: Method::POST,
            path: "/cart".into(),
            start_unix_ns: 1_000,
            end_unix_ns: 4_000,
            endpoint: Some(
                "10.0.0.5:8080"
                    .parse()
                    .unwrap_or(SocketAddr::from(([0; 4], 0))),
            ),
            attempts: 2,
            status,
            error: error.map(str::to_string),
        }
    }

    fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a Value> {
        s.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn a_finished_request_becomes_a_span_with_the_http_conventions() {
        let s = span(&finished(Side::Outbound, 200, None));
        assert_eq!(s.trace_id, vec![7; 16]);
        assert_eq!(s.span_id, vec![3; 8]);
        assert_eq!(s.parent_span_id, vec![9; 8]);
        assert_eq!(s.name, "POST web");
        assert_eq!(s.kind, SpanKind::Client as i32);
        assert_eq!(
            (s.start_time_unix_nano, s.end_time_unix_nano),
            (1_000, 4_000)
        );
        assert_eq!(
            attr(&s, "http.response.status_code"),
            Some(&Value::IntValue(200))
        );
        assert_eq!(
            attr(&s, "server.address"),
            Some(&Value::StringValue("10.0.0.5".into()))
        );
        assert_eq!(attr(&s, "loadshift.attempts"), Some(&Value::IntValue(2)));
        assert_eq!(s.status.unwrap().code, Code::Unset as i32);
    }

    #[test]
    fn errors_follow_the_span_kind() {
        let s = span(&finished(Side::Outbound, 503, Some("no-endpoint")));
        let st = s.status.unwrap();
        assert_eq!(
            (st.code, st.message.as_str()),
            (Code::Error as i32, "no-endpoint")
        );
        // A 404 is the client's error on a client span, not the server's on a server span.
        let c = span(&finished(Side::Outbound, 404, None)).status.unwrap();
        assert_eq!(
            (c.code, c.message.as_str()),
            (Code::Error as i32, "Not Found")
        );
        let srv = span(&finished(Side::Inbound, 404, None));
        assert_eq!(srv.kind, SpanKind::Server as i32);
        assert_eq!(srv.status.unwrap().code, Code::Unset as i32);
    }

    #[test]
    fn unsampled_traces_open_no_span_and_a_full_queue_drops() {
        let slot = SpanSlot::default();
        let unsampled = Trace {
            trace_id: [1; 16],
            span_id: [1; 8],
            parent_id: None,
            sampled: false,
        };
        let now = SystemTime::now();
        slot.begin(
            Some(unsampled),
            Side::Outbound,
            "web",
            &Method::GET,
            "/",
            now,
        );
        slot.attempt(SocketAddr::from(([127, 0, 0, 1], 1)));
        assert!(slot.finish(&Response::new(())).is_none());
        slot.begin(
            Some(Trace {
                sampled: true,
                ..unsampled
            }),
            Side::Outbound,
            "web",
            &Method::GET,
            "/",
            now,
        );
        slot.attempt(SocketAddr::from(([127, 0, 0, 1], 1)));
        let f = slot.finish(&Response::new(())).unwrap();
        assert_eq!((f.attempts, f.status), (1, 200));
        assert!(f.end_unix_ns >= f.start_unix_ns);

        let cfg = Otel {
            endpoint: "http://127.0.0.1:4317".into(),
            sample_ratio: 1.0,
            service_name: "x".into(),
            max_queue: 1,
            max_batch: 1,
            flush_ms: 10,
            timeout_ms: 10,
        };
        let (tracer, mut rx) = queue(&cfg);
        tracer.record(f.clone());
        tracer.record(f);
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err(), "the second span did not fit");
    }
}
