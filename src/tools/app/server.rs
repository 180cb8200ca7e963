//! The app's listener and request handler (HTTP/1.1 and h2c through hyper-util's auto builder),
//! and its service slots, resizable while serving.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::AppArgs;
use super::children::{Child, Downstream};
use super::interference::Interference;
use super::service_time::ServiceTime;
use crate::tools::support::{Pool, write_atomically};

/// Response header naming the container that served the request.
pub const CONTAINER_HEADER: &str = "x-loadshift-container";
/// Response header naming the child whose failure failed the request.
pub const FAILED_CHILD_HEADER: &str = "x-loadshift-failed-child";
/// Response header naming an optional child the request went on without (one per child).
pub const DEGRADED_HEADER: &str = "x-loadshift-degraded";

/// Path answering `{"served": N, "in_service": K, "concurrency": C}` without emulated work.
pub const STATS_PATH: &str = "/_loadshift/stats";
/// Path of `PUT ?n=C`, which sets the service slots while serving.
pub const CONCURRENCY_PATH: &str = "/_loadshift/concurrency";
/// Most service slots: far more than a container on a lab machine serves at once, and well
/// within what a tokio semaphore holds.
pub const MAX_CONCURRENCY: usize = 1 << 20;

struct State {
    container: HeaderValue,
    service_time: ServiceTime,
    slots: Semaphore,
    sizing: Mutex<Sizing>,
    in_service: AtomicUsize,
    interference: Interference,
    /// The emulated host's own load, with `--host-dir`.
    host_load: Option<super::host_load::HostLoad>,
    cpu_fraction: f64,
    error_rate: f64,
    downstream: Option<Downstream>,
    served: AtomicU64,
}

/// The slots wanted and the permits still to retire to get there. Invariant: permits in
/// existence (free or held) minus `owed` equals `target`.
#[derive(Debug)]
struct Sizing {
    target: usize,
    owed: usize,
}

impl State {
    /// Sets the slots to `n`. Growing adds permits at once (cancelling a shrink still owed);
    /// shrinking retires free permits at once and the rest as requests in service release
    /// theirs, before any queued request gets them, so no work in service is cut.
    fn resize(&self, n: usize) {
        let mut s = self.sizing.lock();
        if n >= s.target {
            let grow = n - s.target;
            let cancel = grow.min(s.owed);
            s.owed -= cancel;
            self.slots.add_permits(grow - cancel);
        } else {
            let shrink = s.target - n;
            s.owed += shrink - self.slots.forget_permits(shrink);
        }
        s.target = n;
    }
}

/// A request's service slot; dropping it gives the permit back, or retires it while a shrink is
/// owed.
struct Slot<'a> {
    state: &'a State,
    permit: Option<SemaphorePermit<'a>>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.state.in_service.fetch_sub(1, Ordering::Relaxed);
        if let Some(h) = &self.state.host_load {
            h.publish(|| self.state.in_service.load(Ordering::Relaxed));
        }
        let Some(permit) = self.permit.take() else {
            return;
        };
        // Under the lock, so a resize sees this permit either held or back.
        let mut s = self.state.sizing.lock();
        if s.owed > 0 {
            s.owed -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
    }
}

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
    let host_load = match &args.host_dir {
        Some(dir) => Some(
            super::host_load::HostLoad::join(
                dir,
                &container,
                args.host_cores,
                args.host_a_cpu,
                args.host_cap,
            )
            .with_context(|| format!("--host-dir {}", dir.display()))?,
        ),
        None => None,
    };
    let downstream = args.outbound.map(|addr| Downstream {
        children: args
            .children
            .iter()
            .map(|c| Child {
                optional: args.optional.contains(&c.service),
                ..c.clone()
            })
            .collect(),
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
        sizing: Mutex::new(Sizing {
            target: args.concurrency,
            owed: 0,
        }),
        in_service: AtomicUsize::new(0),
        interference,
        host_load,
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
        let body = format!(
            "{{\"served\":{},\"in_service\":{},\"concurrency\":{}}}\n",
            state.served.load(Ordering::Relaxed),
            state.in_service.load(Ordering::Relaxed),
            state.sizing.lock().target
        );
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    if req.uri().path() == CONCURRENCY_PATH {
        return Ok(set_concurrency(&state, &req));
    }
    let (work, picked, fail) = {
        let mut rng = rand::rng();
        let work = state.service_time.sample(&mut rng);
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
        let permit = state.slots.acquire().await.ok();
        state.in_service.fetch_add(1, Ordering::Relaxed);
        let _slot = Slot {
            state: &state,
            permit,
        };
        // The multiplier as the work starts: with a host directory, this container's busy
        // servers and its host-mates' count too.
        let multiplier = match &state.host_load {
            Some(h) => {
                h.publish(|| state.in_service.load(Ordering::Relaxed));
                state.interference.get() + h.cpu_term()
            }
            None => state.interference.get(),
        };
        emulate_work(work.mul_f64(multiplier), state.cpu_fraction).await;
    }
    state.served.fetch_add(1, Ordering::Relaxed);
    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    if fail {
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        *resp.body_mut() = Full::new(Bytes::from_static(b"failed\n"));
    } else if let Some(down) = &state.downstream {
        match down.call(&picked, req.headers()).await {
            Ok(degraded) => {
                for service in degraded {
                    if let Ok(v) = HeaderValue::from_str(&service) {
                        resp.headers_mut().append(DEGRADED_HEADER, v);
                    }
                }
            }
            Err(failure) => {
                *resp.status_mut() = failure.status;
                *resp.body_mut() = Full::new(Bytes::from_static(b"child failed\n"));
                if let Ok(v) = HeaderValue::from_str(&failure.service) {
                    resp.headers_mut().insert(FAILED_CHILD_HEADER, v);
                }
            }
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

/// `PUT /_loadshift/concurrency?n=C`: resizes the slots, answers `{"concurrency": C}`; 400 for a
/// missing or out-of-range `n`, 405 for another method.
fn set_concurrency(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    if req.method() != Method::PUT {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{CONCURRENCY_PATH}: PUT ?n=C only\n"),
        );
    }
    let n = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("n="))
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=MAX_CONCURRENCY).contains(n));
    let Some(n) = n else {
        return reply(
            StatusCode::BAD_REQUEST,
            format!("{CONCURRENCY_PATH}: n must be an integer in [1, {MAX_CONCURRENCY}]\n"),
        );
    };
    state.resize(n);
    tracing::info!(concurrency = n, "service slots resized");
    reply(StatusCode::OK, format!("{{\"concurrency\":{n}}}\n"))
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
