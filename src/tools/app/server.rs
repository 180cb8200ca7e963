//! The app's listener and request handler (HTTP/1.1 and h2c through hyper-util's auto builder).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::AppArgs;
use super::children::Downstream;
use super::interference::Interference;
use super::service_time::ServiceTime;
use crate::tools::support::{Pool, write_atomically};

/// Response header naming the container that served the request.
pub const CONTAINER_HEADER: &str = "x-loadshift-container";
/// Response header naming the child whose failure failed the request.
pub const FAILED_CHILD_HEADER: &str = "x-loadshift-failed-child";

struct State {
    container: HeaderValue,
    service_time: ServiceTime,
    slots: Semaphore,
    interference: Interference,
    cpu_fraction: f64,
    error_rate: f64,
    downstream: Option<Downstream>,
    served: AtomicU64,
}

/// Path answering `{"served": N}` without emulated work.
pub const STATS_PATH: &str = "/_loadshift/stats";

/// Binds, announces the address, and serves until SIGINT or SIGTERM.
pub async fn serve(args: AppArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("bind {}", args.listen))?;
    let local = listener.local_addr()?;
    if let Some(path) = &args.port_file {
        write_atomically(path, &format!("{local}\n"))
            .with_context(|| format!("write {}", path.display()))?;
    }
    println!("listening on {local}");

    let container = args
        .container
        .clone()
        .unwrap_or_else(|| args.service.clone());
    let interference = Interference::new(args.interference);
    if let Some(path) = args.interference_file.clone() {
        interference.watch(path);
    }
    let downstream = args.outbound.map(|addr| Downstream {
        children: args.children.clone(),
        mode: args.calls,
        pool: Pool::new(addr, args.max_connections, args.child_timeout()),
        propagate: args.propagate.clone(),
        timeout: args.child_timeout(),
    });
    let state = Arc::new(State {
        container: HeaderValue::from_str(&container)
            .context("--container is not a valid header value")?,
        service_time: args.service_time,
        slots: Semaphore::new(args.concurrency),
        interference,
        cpu_fraction: args.cpu_fraction,
        error_rate: args.error_rate,
        downstream,
        served: AtomicU64::new(0),
    });

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Running out of descriptors is transient; back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = sigterm.recv() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(state.clone(), req));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == STATS_PATH {
        let body = format!("{{\"served\":{}}}\n", state.served.load(Ordering::Relaxed));
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    let (work, picked, fail) = {
        let mut rng = rand::rng();
        let work = state
            .service_time
            .sample(&mut rng)
            .mul_f64(state.interference.get());
        let picked = state
            .downstream
            .as_ref()
            .map(|d| d.pick(&mut rng))
            .unwrap_or_default();
        let fail = state.error_rate > 0.0 && rng.random::<f64>() < state.error_rate;
        (work, picked, fail)
    };
    {
        // The semaphore is never closed, so acquire only fails if it were; serve unqueued then.
        let _slot = state.slots.acquire().await.ok();
        emulate_work(work, state.cpu_fraction).await;
    }
    state.served.fetch_add(1, Ordering::Relaxed);
    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    if fail {
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        *resp.body_mut() = Full::new(Bytes::from_static(b"failed\n"));
    } else if let Some(down) = &state.downstream
        && let Err(failure) = down.call(&picked, req.headers()).await
    {
        *resp.status_mut() = failure.status;
        *resp.body_mut() = Full::new(Bytes::from_static(b"child failed\n"));
        if let Ok(v) = HeaderValue::from_str(&failure.service) {
            resp.headers_mut().insert(FAILED_CHILD_HEADER, v);
        }
    }
    resp.headers_mut()
        .insert(CONTAINER_HEADER, state.container.clone());
    if resp.status() == StatusCode::OK {
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    Ok(resp)
}

/// Burns CPU for `cpu_fraction` of `work` on the blocking pool (so other requests keep being
/// accepted), and sleeps for the rest.
async fn emulate_work(work: Duration, cpu_fraction: f64) {
    let burn = work.mul_f64(cpu_fraction);
    if !burn.is_zero() {
        let _ = tokio::task::spawn_blocking(move || {
            let end = Instant::now() + burn;
            // Bounded by `end`.
            while Instant::now() < end {
                std::hint::spin_loop();
            }
        })
        .await;
    }
    let rest = work.saturating_sub(burn);
    if !rest.is_zero() {
        tokio::time::sleep(rest).await;
    }
}
