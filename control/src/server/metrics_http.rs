//! `/metrics` (Prometheus text), `/live` and `/ready` for the control plane on
//! `metrics_listen`; a plain HTTP/1.1 listener so scrapers and probes need no gRPC. The listener
//! is bound with the APIs and starts after the first planner round, so `/ready` answers 200
//! once the control plane has plans to give; 503 once it is stopping.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, header, server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::{net::TcpListener, sync::watch};

/// Serves until the stop flag flips.
pub(crate) async fn serve(
    listener: TcpListener,
    prom: PrometheusHandle,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = super::shared::stopped(&mut stop) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let (prom, stopping) = (prom.clone(), stop.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| answer(prom.clone(), *stopping.borrow(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn answer(
    prom: PrometheusHandle,
    stopping: bool,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, prom.render()),
        (&Method::GET, "/live") => (StatusCode::OK, "live\n".to_string()),
        (&Method::GET, "/ready") if stopping => {
            (StatusCode::SERVICE_UNAVAILABLE, "stopping\n".to_string())
        }
        (&Method::GET, "/ready") => (StatusCode::OK, "ready\n".to_string()),
        (&Method::GET, _) => (
            StatusCode::NOT_FOUND,
            "only /metrics, /live and /ready\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "read-only (GET)\n".to_string(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(r)
}
