//! The admin thread: `/metrics`, `/live`, `/ready`, `/plan`, `/stats` on the admin listener, and
//! the background tasks (host pressure sampling, plan file reload, local shifting, latency-outlier
//! ejection, the control plane client, certificate reloads).

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::{net::TcpListener, sync::watch};

use crate::host_sampler::{HostSampler, UsageSampler};
use crate::{control_client, data_plane, plan_file, state::Shared, stats};

/// How often resident memory is compared with the overload threshold.
const MEMORY_SAMPLE: Duration = Duration::from_millis(250);

/// Runs until shutdown.
pub fn run(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    prom: PrometheusHandle,
    certificates: crate::tls::Pairs,
    mut shutdown: watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "admin runtime failed to start");
            return;
        }
    };
    rt.block_on(async move {
        tokio::spawn(sample_host(shared.clone()));
        tokio::spawn(crate::metrics::upkeep(prom.clone()));
        tokio::spawn(certificates.watch(crate::tls::provider()));
        if let (Some(cfg), Some(queue)) =
            (shared.config.otel.clone(), shared.otel_queue.lock().take())
        {
            let id = &shared.config.identity;
            let origin = crate::otel::Origin {
                service_name: cfg.service_name.clone(),
                pod: id.pod.clone(),
                host: id.host.clone(),
                zone: id.zone.clone(),
                container: id.container.clone(),
            };
            tokio::spawn(crate::otel::export(cfg, origin, queue));
        }
        tokio::spawn(crate::admission::sample(
            shared.admission.clone(),
            MEMORY_SAMPLE,
        ));
        if let Some(path) = shared.config.plan_file.clone() {
            tokio::spawn(plan_file::watch(shared.clone(), path));
        }
        if let Some(params) = shared.config.local_shift {
            tokio::spawn(data_plane::local_shift(shared.clone(), params));
        }
        if let Some(params) = shared.config.ejection.latency() {
            tokio::spawn(crate::ejection::run(shared.clone(), params));
        }
        if let Some(cfg) = shared.config.control.clone() {
            let dp = Arc::new(data_plane::ProxyDataPlane(shared.clone()));
            let id = data_plane::identity(&shared);
            let mut stop = shutdown.clone();
            tokio::spawn(control_client::run(cfg, id, dp, async move {
                let _ = stop.wait_for(|&s| s).await;
            }));
        }
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "admin listener registration failed");
                return;
            }
        };
        loop {
            let (stream, _) = tokio::select! {
                r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                _ = shutdown.wait_for(|&s| s) => break,
            };
            let shared = shared.clone();
            let prom = prom.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| serve(shared.clone(), prom.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

async fn sample_host(shared: Arc<Shared>) {
    let mut sampler = HostSampler::default();
    let mut usage = shared
        .config
        .inbound
        .as_ref()
        .and_then(|i| i.cgroup.clone())
        .map(UsageSampler::new);
    let mut tick = tokio::time::interval(Duration::from_millis(
        shared.config.telemetry.host_sample_ms,
    ));
    loop {
        tick.tick().await;
        let read = tokio::task::spawn_blocking(move || {
            let p = sampler.sample();
            let u = usage.as_mut().map(UsageSampler::sample);
            (sampler, usage, p, u)
        })
        .await;
        let Ok((s, us, p, u)) = read else { return };
        (sampler, usage) = (s, us);
        *shared.host.lock() = p;
        *shared.usage.lock() = u;
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn json<T: serde::Serialize>(v: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(v) {
        Ok(b) => reply(StatusCode::OK, "application/json", b),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            e.to_string(),
        ),
    }
}

async fn serve(
    shared: Arc<Shared>,
    prom: PrometheusHandle,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "admin endpoints are read-only (GET)\n",
        ));
    }
    Ok(match req.uri().path() {
        "/live" => reply(StatusCode::OK, "text/plain", "live\n"),
        "/ready" if shared.is_ready() => reply(StatusCode::OK, "text/plain", "ready\n"),
        "/ready" => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n"),
        "/plan" => json(&*shared.plan()),
        "/stats" => json(&stats::collect(&shared)),
        "/metrics" => {
            stats::refresh_gauges(&shared);
            reply(StatusCode::OK, "text/plain; version=0.0.4", prom.render())
        }
        other => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("no admin endpoint {other:?}; try /metrics, /live, /ready, /plan, /stats\n"),
        ),
    })
}
