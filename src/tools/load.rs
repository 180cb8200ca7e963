//! Open-loop HTTP/1.1 load generator, used by `loadshift load`, `loadshift bench proxy` and the
//! lab.
//!
//! Requests leave at the times a [`Schedule`] intends, whatever the state of earlier requests:
//! each one takes an idle keep-alive connection, or opens a new one up to
//! [`LoadSpec::max_connections`] (and counts as *late*), or waits for a free slot. Latency is
//! measured from the intended send time, as wrk2 does, so a server stall shows up in every
//! request scheduled during it instead of only in the one that happened to be in flight
//! (no coordinated omission).

pub mod cli;
pub mod report;
pub mod schedule;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{Method, Request};
use http_body_util::Empty;
use parking_lot::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::tools::support::pool::{FailureKind, Pool};

pub use report::{ErrorClass, LoadReport, Summary};
pub use schedule::{Arrivals, Rate, Schedule};

/// Timers below this are not trusted to wake on time (tokio's timer wheel ticks in
/// milliseconds); a precise run yields instead of sleeping for the last stretch.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// One load run against one address.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where to connect.
    pub addr: SocketAddr,
    /// `Host` header (the service name when sending through a proxy).
    pub host: String,
    /// Request path and query.
    pub path: String,
    /// Extra request headers (for example a priority class header).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Requests per second over time.
    pub rate: Rate,
    /// Spacing of arrivals around the rate.
    pub arrivals: Arrivals,
    /// Seed for Poisson arrivals.
    pub seed: u64,
    /// Length of the schedule.
    pub duration: Duration,
    /// Connections opened before the first request.
    pub connections: usize,
    /// Most connections (and so requests in flight) at once.
    pub max_connections: usize,
    /// Per-request timeout (connect + response).
    pub timeout: Duration,
    /// Width of the per-interval breakdown; zero for none.
    pub interval: Duration,
    /// Successful responses slower than this are counted as slow (an SLA latency).
    pub slow_threshold: Option<Duration>,
    /// Close each connection after this many requests and open a new one (connection churn);
    /// `None` keeps connections for the whole run.
    pub requests_per_connection: Option<u32>,
    /// Yield instead of sleeping for the last millisecond before each send, so sub-millisecond
    /// latencies are not inflated by timer granularity. Costs a busy core: for benchmarks only.
    pub precise: bool,
    /// Where the run records, readable while it runs (a progress display); `None`: a report of
    /// its own. Either way `run` returns the finished report.
    pub live: Option<Arc<Mutex<LoadReport>>>,
}

impl LoadSpec {
    /// A spec with the defaults of `loadshift load`: constant rate, uniform arrivals, 32 warm
    /// connections, at most 1024, 10 s timeout, 1 s intervals, precise timing.
    pub fn new(addr: SocketAddr, rate: Rate, duration: Duration) -> Self {
        Self {
            addr,
            host: addr.to_string(),
            path: "/".into(),
            headers: Vec::new(),
            rate,
            arrivals: Arrivals::Uniform,
            seed: 0,
            duration,
            connections: 32,
            max_connections: 1024,
            timeout: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            slow_threshold: None,
            requests_per_connection: None,
            precise: true,
            live: None,
        }
    }
}

/// Errors that stop a run before it starts.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The warm-up connections could not be opened.
    #[error("cannot connect to {0}")]
    Connect(SocketAddr),
    /// The request line or headers are not valid HTTP.
    #[error("invalid request: {0}")]
    Request(#[from] http::Error),
}

/// Runs `spec` to the end of its schedule and waits for outstanding requests (at most one
/// timeout longer).
pub async fn run(spec: LoadSpec) -> Result<LoadReport, LoadError> {
    let pool = Pool::churning(
        spec.addr,
        spec.max_connections,
        spec.timeout,
        spec.requests_per_connection,
    );
    pool.prewarm(spec.connections.min(spec.max_connections))
        .await
        .map_err(|_| LoadError::Connect(spec.addr))?;
    // Validate the request once; every scheduled request is a copy of it.
    let template = build(&spec)?;
    let mut empty = LoadReport::new(spec.duration, spec.interval);
    empty.slow_threshold = spec.slow_threshold;
    let report = match &spec.live {
        Some(live) => {
            *live.lock() = empty;
            Arc::clone(live)
        }
        None => Arc::new(Mutex::new(empty)),
    };
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for offset in Schedule::new(spec.rate.clone(), spec.arrivals, spec.seed, spec.duration) {
        let intended = start + offset;
        wait_until(intended, spec.precise).await;
        while tasks.try_join_next().is_some() {}
        let req = copy(&template);
        let pool = pool.clone();
        let report = report.clone();
        let timeout = spec.timeout;
        report.lock().record_sent(offset);
        tasks.spawn(async move {
            let exchange = async {
                let lease = pool.checkout().await?;
                if lease.contended {
                    report.lock().record_late();
                }
                lease.send(req, timeout).await
            };
            let outcome = tokio::time::timeout(timeout, exchange)
                .await
                .unwrap_or(Err(FailureKind::Timeout));
            let latency = intended.elapsed();
            let mut r = report.lock();
            match outcome {
                Ok(resp) => match ErrorClass::of_status(resp.status().as_u16()) {
                    None => r.record_ok(offset, latency),
                    Some(class) => r.record_error(offset, class),
                },
                Err(kind) => r.record_error(offset, kind.into()),
            }
        });
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(spec.timeout + Duration::from_secs(1), drain)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    let mut out = report.lock().clone();
    out.connections = pool.opened();
    Ok(out)
}

async fn wait_until(at: Instant, precise: bool) {
    if !precise {
        tokio::time::sleep_until(at).await;
        return;
    }
    if at > Instant::now() + TIMER_SLACK {
        tokio::time::sleep_until(at - TIMER_SLACK).await;
    }
    // Bounded by `at`: every iteration lets other tasks, and other processes on this core (the
    // upstream in the proxy benchmark), run before re-reading the clock.
    while Instant::now() < at {
        std::thread::yield_now();
        tokio::task::yield_now().await;
    }
}

fn build(spec: &LoadSpec) -> Result<Request<Empty<Bytes>>, LoadError> {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(spec.path.as_str())
        .header(
            HOST,
            HeaderValue::from_str(&spec.host).map_err(http::Error::from)?,
        );
    for (k, v) in &spec.headers {
        req = req.header(k, v);
    }
    Ok(req.body(Empty::new())?)
}

fn copy(template: &Request<Empty<Bytes>>) -> Request<Empty<Bytes>> {
    let mut req = Request::new(Empty::new());
    *req.method_mut() = template.method().clone();
    *req.uri_mut() = template.uri().clone();
    *req.headers_mut() = template.headers().clone();
    req
}
