//! The request path, in order: route -> admission (blocking) -> balance (weights / subset) ->
//! endpoint connection (retried elsewhere only when nothing was sent) -> send -> telemetry, and
//! the load report: asked for on every request upstream, kept from the response by the caller's
//! side, made by the inbound side for a caller that asked (`load`), never passed to an app.
//! Bodies stream in both directions; nothing is buffered. Every attempt runs under the request's
//! time limits (`time_limit`); the proxy's own answers are plain HTTP, or trailers-only
//! responses to gRPC calls (`reply`).

use std::{
    cell::RefCell,
    convert::Infallible,
    rc::Rc,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use http::{HeaderName, HeaderValue, Request, Response, Uri, Version, header, uri::Scheme};
use rand::rngs::SmallRng;

use crate::{
    admission::ClientTimeout,
    config::Protocol,
    deadline::Deadlines,
    error::{ErrorSource, ProxyError},
    headers::strip_hop_by_hop,
    load::{self, Carried},
    metrics,
    otel::SpanSlot,
    reply::Answer,
    routes::{EndpointState, LiveLoads, ServiceRoute},
    side::Side,
    state::Shared,
    time_limit::{self, RequestTime},
    upstream::{Dest, Pool, Unsent, body::ReqBody},
};

pub use crate::upstream::body::RespBody;

/// Per-worker request context.
pub struct Worker {
    pub shared: Arc<Shared>,
    pub pool: Rc<Pool>,
    pub rng: RefCell<SmallRng>,
    /// Retry budget of this worker (each worker sees its own share of the traffic).
    pub budget: RefCell<loadshift_core::retry_budget::RetryBudget>,
    pub priority_header: HeaderName,
    /// The request timeout, the cap on gRPC calls and the upload's progress limit.
    pub time_limits: time_limit::Params,
    /// Every request upstream asks for a load report (a sidecar: its upstreams are the mesh's
    /// inbound sidecars); otherwise only `prequal` services ask.
    pub asks_for_load: bool,
    /// Forwarding, request-id and trace fields ([`crate::forwarding`]).
    pub forwarding: crate::forwarding::Params,
    pub max_attempts: u32,
    /// Read buffer of the worker's idle client connections, borrowed only inside one poll.
    pub scratch: RefCell<Box<[u8]>>,
    /// Request timeouts and client connections' idle and head-read limits.
    pub deadlines: Rc<Deadlines>,
}

const DEFAULT_CLASS: &str = "default";

/// The client's address, put on each request by the connection that read it.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub std::net::IpAddr);

/// Serves one request; with `otel`, a sampled request's span goes to the exporter when its
/// response head is ready.
pub async fn handle(
    w: Rc<Worker>,
    side: Side,
    req: Request<ReqBody>,
) -> Result<Response<RespBody>, Infallible> {
    if w.shared.otel.is_none() {
        return serve(w, side, req, None).await;
    }
    // Boxed, so the span's state costs the requests of a proxy without `otel` nothing: this
    // future is copied whole into the connection's box for every request.
    Box::pin(traced(w, side, req)).await
}

async fn traced(
    w: Rc<Worker>,
    side: Side,
    req: Request<ReqBody>,
) -> Result<Response<RespBody>, Infallible> {
    let tracer = w.shared.otel.clone();
    let span = SpanSlot::default();
    let resp = serve(w, side, req, Some(&span)).await;
    if let (Ok(r), Some(tracer)) = (&resp, tracer)
        && let Some(finished) = span.finish(r)
    {
        tracer.record(finished);
    }
    resp
}

async fn serve(
    w: Rc<Worker>,
    side: Side,
    req: Request<ReqBody>,
    span: Option<&SpanSlot>,
) -> Result<Response<RespBody>, Infallible> {
    let began = span.map(|_| std::time::SystemTime::now());
    // A gRPC call is answered in gRPC's terms whatever goes wrong, so its client can tell why.
    let answer = Answer::for_request(req.headers());
    // Shed before any work: an overloaded proxy answers at once instead of queueing.
    let _admitted = match w.shared.admission.request() {
        Ok(g) => g,
        Err(r) => return Ok(answer.shed(r, w.shared.admission.limits.retry_after_s)),
    };
    let routes = w.shared.routes.load_full();
    w.pool.sync(routes.generation, || allowed_addrs(&routes));
    // A tunnel is not forwarded as if it were a request, whatever its target.
    if req.method() == http::Method::CONNECT {
        return Ok(answer.error(&ProxyError::NotImplemented { what: "CONNECT" }));
    }
    if let Err(e) = check_target(&req) {
        return Ok(answer.error(&e));
    }
    let svc = match side {
        Side::Outbound => routes.lookup(authority(&req)),
        Side::Inbound => routes.inbound.as_ref(),
    };
    let Some(svc) = svc else {
        ::metrics::counter!(metrics::UNROUTED).increment(1);
        let authority = authority(&req).unwrap_or("").to_string();
        return Ok(answer.error(&ProxyError::NoRoute { authority }));
    };

    let class = req
        .headers()
        .get(&w.priority_header)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(DEFAULT_CLASS);
    let _permit = match svc.gate(class).map(|g| g.admit()) {
        Some(Err(reason)) => {
            metrics::blocked(&svc.name, class, reason.as_str());
            w.shared.count_blocked(&svc.name, class);
            return Ok(answer.blocked(reason));
        }
        Some(Ok(permit)) => Some(permit),
        None => None,
    };

    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let asked = match side {
        // A sidecar's upstreams are the mesh's inbound sidecars, which take the field out; a
        // standalone proxy asks only for a service balanced on the reports, so upstreams that
        // may be apps outside the mesh never see it. Whatever the client sent in it is dropped.
        Side::Outbound => {
            if w.asks_for_load || svc.balancer.uses_reports() {
                load::ask(&mut parts.headers);
            } else {
                parts.headers.remove(load::NAME);
            }
            false
        }
        Side::Inbound => load::asked(&mut parts.headers),
    };
    let client = parts.extensions.get::<ClientAddr>().map(|c| c.0);
    let trace = crate::forwarding::apply(
        &mut parts.headers,
        client,
        parts.extensions.get::<crate::forwarding::Secure>(),
        w.forwarding,
        &mut *w.rng.borrow_mut(),
    );
    if let (Some(span), Some(began)) = (span, began) {
        span.begin(
            trace,
            side,
            &svc.name,
            &parts.method,
            parts.uri.path(),
            began,
        );
    }
    let mut h2 = match svc.protocol {
        Protocol::Http1 => false,
        Protocol::Http2 => true,
        Protocol::Auto => parts.version == Version::HTTP_2,
    };
    // `auto` follows an HTTP/2 caller only to endpoints that speak HTTP/2 (probed once each).
    let mut probe_h2 = h2 && svc.protocol == Protocol::Auto;
    if let Err(e) = prepare_upstream_uri(&mut parts, h2) {
        return Ok(answer.error(&e));
    }

    let arrived = w.shared.clock.now();
    w.budget.borrow_mut().deposit(arrived);
    // Whether the client has sent its whole body: the request timeout starts then, and a
    // client's fault the upstream connection reports as its own is found there.
    let body_done = body.done();
    let mut time = match RequestTime::new(
        &mut parts.headers,
        answer.is_grpc(),
        w.time_limits,
        w.shared.clock.instant(arrived),
        body_done.clone(),
        w.deadlines.clone(),
    ) {
        Ok(t) => t,
        Err(e) => return Ok(answer.error(&e)),
    };
    let mut req = Request::from_parts(parts, body);
    // Plaintext, the service's own TLS, or the mesh's mTLS: part of every endpoint's pool key.
    let tls = w.pool.tls_for(side, &svc.name);
    let mut attempt = 0;
    // Indices that failed before sending; empty (and unallocated) on the first attempt.
    let mut tried = Vec::new();
    loop {
        attempt += 1;
        // One clock reading serves the first attempt's pick, pool check and timing.
        let start = if attempt == 1 {
            arrived
        } else {
            w.shared.clock.now()
        };
        let Some((i, ep)) = pick(&w, svc, &tried, start) else {
            return Ok(answer.error(&ProxyError::NoEndpoint {
                service: svc.name.clone(),
            }));
        };
        let addr = ep.endpoint.addr;
        ep.metrics.requests.increment(1);
        if let Some(span) = span {
            span.attempt(addr);
        }
        let mut ready =
            w.pool
                .checkout_ready(Dest::new(addr, tls), h2, w.shared.clock.instant(start));
        if probe_h2 && ready.is_none() && !w.pool.speaks_h2(Dest::new(addr, tls)).await {
            // This request's later attempts go as HTTP/1.1 too: a service's containers run one app.
            probe_h2 = false;
            h2 = false;
            let (mut parts, body) = req.into_parts();
            if let Err(e) = prepare_upstream_uri(&mut parts, false) {
                return Ok(answer.error(&e));
            }
            req = Request::from_parts(parts, body);
            ready =
                w.pool
                    .checkout_ready(Dest::new(addr, tls), false, w.shared.clock.instant(start));
        }
        // Getting a connection and sending both run under the request's time limits, so a
        // retry never outlives them.
        let conn = match ready {
            Some(conn) => Ok(Ok(conn)),
            None => {
                time.checkout(w.pool.checkout(Dest::new(addr, tls), h2))
                    .await
            }
        };
        // Requests in flight to the endpoint before this one: what its latency is filed under.
        let mut rif_at_arrival = 0;
        let outcome = match conn {
            Err(cut) => Err(Unsent {
                error: time.error(cut, addr),
                request: None,
            }),
            // Nothing was sent: the request is still ours.
            Ok(Err(error)) => Err(Unsent {
                error,
                request: Some(Box::new(req)),
            }),
            Ok(Ok(conn)) => {
                rif_at_arrival = ep.begin();
                let r = match time
                    .send(w.pool.send(Dest::new(addr, tls), conn, req))
                    .await
                {
                    Ok(r) => r,
                    Err(cut) => Err(Unsent {
                        error: time.error(cut, addr),
                        request: None,
                    }),
                };
                ep.in_flight.fetch_sub(1, Ordering::Relaxed);
                r
            }
        };
        let now = w.shared.clock.now();
        match outcome {
            Ok(mut resp) => {
                let status = resp.status();
                ep.metrics.response(status.as_u16());
                ep.metrics.record_latency(now - start);
                let ok = !status.is_server_error();
                match side {
                    Side::Outbound => {
                        ep.record(&w.shared.outlier, now, now - start, ok);
                        keep_report(svc, ep, &mut resp, now, now - start);
                    }
                    Side::Inbound => {
                        let outlier = &w.shared.outlier;
                        let report =
                            ep.record_inbound(outlier, now, now - start, ok, rif_at_arrival);
                        // The app's own field never passes; the sidecar's goes to a caller that
                        // asked.
                        take_load(&mut resp);
                        if let Some(r) = report.filter(|_| asked) {
                            resp.headers_mut().insert(load::NAME, load::format(r));
                        }
                    }
                }
                strip_hop_by_hop(resp.headers_mut());
                return Ok(time.bound_response(resp));
            }
            Err(Unsent { error, request }) => {
                // A request body the client broke can surface as the upstream connection's
                // error (HTTP/2 resets the stream); the body knows whose fault it was.
                let error = match body_done.as_ref().and_then(|d| d.fault()) {
                    Some(fault) if error.source_kind() == ErrorSource::Upstream => {
                        ProxyError::ClientBody {
                            source: fault.clone(),
                        }
                    }
                    _ => error,
                };
                // Only the upstream's faults are charged to the endpoint (ejection, Peak-EWMA,
                // error counters, reports); the client's and the proxy's own are not.
                match error.source_kind() {
                    ErrorSource::Upstream => {
                        count_error(ep, &error);
                        ep.metrics.record_latency(now - start);
                        ep.record(&w.shared.outlier, now, now - start, false);
                    }
                    ErrorSource::Downstream => {
                        if error.is_client_timeout() {
                            w.shared.admission.timed_out(ClientTimeout::Body);
                        }
                        tracing::debug!(service = %svc.name, error = %error, "request failed on the client's side");
                        return Ok(answer.error(&error));
                    }
                    ErrorSource::Internal => {}
                }
                match request {
                    Some(r)
                        if attempt < w.max_attempts && w.budget.borrow_mut().try_withdraw(now) =>
                    {
                        ::metrics::counter!(metrics::RETRIES, "service" => svc.name.clone())
                            .increment(1);
                        req = *r;
                        tried.push(i);
                    }
                    _ => {
                        tracing::debug!(service = %svc.name, error = %error, "request failed");
                        return Ok(answer.error(&error));
                    }
                }
            }
        }
    }
}

fn pick<'a>(
    w: &Worker,
    svc: &'a ServiceRoute,
    tried: &[usize],
    now: Duration,
) -> Option<(usize, &'a Arc<EndpointState>)> {
    let loads = LiveLoads {
        endpoints: &svc.endpoints,
        now,
        slow_start: &w.shared.config.slow_start,
        tried,
    };
    let i = svc.balancer.pick(&mut *w.rng.borrow_mut(), &loads)?;
    Some((i, svc.endpoints.get(i)?))
}

/// The caller's side keeps an upstream's load report (for `prequal`) and takes it off the
/// response; a malformed one is counted and dropped.
fn keep_report(
    svc: &ServiceRoute,
    ep: &EndpointState,
    resp: &mut Response<RespBody>,
    now: Duration,
    latency: Duration,
) {
    match take_load(resp) {
        Some(Carried::Report(r)) => ep.store_report(r, now, latency),
        Some(Carried::Invalid) => {
            ::metrics::counter!(metrics::LOAD_REPORTS_INVALID, "service" => svc.name.clone())
                .increment(1);
        }
        None => {}
    }
}

/// A response's `loadshift-load`, removed: an HTTP/1.1 upstream's was picked out of its head as
/// it was parsed, any other is in the header map.
fn take_load(resp: &mut Response<RespBody>) -> Option<Carried> {
    let from_head = match resp.body_mut() {
        RespBody::H1(b) => b.take_load(),
        _ => None,
    };
    let from_map = load::take(resp.headers_mut());
    from_head.or(from_map)
}

fn count_error(ep: &EndpointState, e: &ProxyError) {
    match e {
        ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. } => {
            ep.metrics.connect_errors.increment(1);
        }
        ProxyError::Timeout { .. } | ProxyError::UploadStalled { .. } => {
            ep.metrics.timeouts.increment(1);
        }
        _ => ep.metrics.protocol_errors.increment(1),
    }
}

/// Endpoints the table lets this proxy connect to.
fn allowed_addrs(routes: &crate::routes::Routes) -> crate::FastSet<std::net::SocketAddr> {
    let mut set: crate::FastSet<_> = routes
        .services
        .iter()
        .flat_map(|s| {
            s.balancer
                .eligible()
                .iter()
                .map(|&i| s.endpoints[i].endpoint.addr)
        })
        .collect();
    if let Some(i) = &routes.inbound {
        set.extend(i.endpoints.iter().map(|e| e.endpoint.addr));
    }
    set
}

/// `:authority` (h2) or `Host` (h1).
fn authority<B>(req: &Request<B>) -> Option<&str> {
    req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}

/// The request names one target (RFC 9113 §8.3.1): an HTTP/2 request whose `Host` differs from
/// its `:authority`, or with more than one `Host`, is refused. (HTTP/1.1 heads with two `Host`
/// fields are refused by the parser; an absolute-form target replaces `Host` when forwarded,
/// RFC 9112 §3.2.2.)
fn check_target<B>(req: &Request<B>) -> Result<(), ProxyError> {
    if req.version() != Version::HTTP_2 {
        return Ok(());
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let (Some(host), more) = (hosts.next(), hosts.next()) else {
        return Ok(());
    };
    if more.is_some() {
        return Err(ProxyError::BadRequest {
            reason: "more than one Host field".into(),
        });
    }
    match req.uri().authority() {
        Some(a) if !a.as_str().as_bytes().eq_ignore_ascii_case(host.as_bytes()) => {
            Err(ProxyError::BadRequest {
                reason: "Host differs from :authority".into(),
            })
        }
        _ => Ok(()),
    }
}

/// HTTP/1.1 upstreams get origin-form and a `Host` naming the target the request was routed by;
/// HTTP/2 upstreams get an absolute URI.
fn prepare_upstream_uri(parts: &mut http::request::Parts, h2: bool) -> Result<(), ProxyError> {
    // Parsed only when needed: an HTTP/1.1 request with a `Host` goes upstream as it is.
    let authority = |parts: &http::request::Parts| {
        parts.uri.authority().cloned().or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse().ok())
        })
    };
    if h2 {
        if parts
            .extensions
            .get::<crate::h1::framing::TransferCodings>()
            .is_some()
        {
            return Err(ProxyError::NotImplemented {
                what: "a transfer coding other than chunked towards an HTTP/2 upstream",
            });
        }
        // HTTP/2 has no Upgrade (RFC 9113 §8.6); an upstream of `protocol: http2` gets no tunnel.
        if parts
            .extensions
            .get::<crate::h1::upgrade::Upgrade>()
            .is_some()
        {
            return Err(ProxyError::NotImplemented {
                what: "a WebSocket upgrade towards an HTTP/2 upstream",
            });
        }
        let Some(authority) = authority(parts) else {
            return Err(bad_request("request has no authority"));
        };
        let mut u = std::mem::take(&mut parts.uri).into_parts();
        u.scheme = Some(Scheme::HTTP);
        u.authority = Some(authority);
        if u.path_and_query.is_none() {
            u.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        parts.uri = Uri::from_parts(u).map_err(|_| bad_request("invalid request URI"))?;
        parts.headers.remove(header::HOST);
        parts.version = Version::HTTP_2;
    } else {
        // The routing target wins over the client's `Host`: forwarding another one would let a
        // request pass a Host filter behind the proxy for a service it was not routed to.
        if let Some(a) = parts.uri.authority() {
            let host = HeaderValue::from_str(a.as_str())
                .map_err(|_| bad_request("invalid request target"))?;
            parts.headers.insert(header::HOST, host);
            let pq = parts.uri.path_and_query().cloned();
            parts.uri = pq.map_or_else(|| Uri::from_static("/"), Uri::from);
        }
        parts.version = Version::HTTP_11;
    }
    Ok(())
}

fn bad_request(reason: &str) -> ProxyError {
    ProxyError::BadRequest {
        reason: reason.into(),
    }
}
