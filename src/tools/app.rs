//! `loadshift app`: the emulated service the lab runs in every container.
//!
//! It serves HTTP/1.1 and h2c (prior knowledge) on `--listen`, and for each request:
//! 1. waits for one of `--concurrency` service slots (requests beyond it queue, FIFO), so the
//!    container behaves as a c-server queue;
//! 2. works for a sampled service time times the interference multiplier (see
//!    [`interference`]), sleeping for most of it and burning CPU for `--cpu-fraction` of it;
//! 3. releases the slot, then calls its children through the sidecar (see [`children`]);
//! 4. answers `200 ok` with `x-loadshift-container: <container>`, or the failing child's 5xx
//!    (502 when it gave no response) with `x-loadshift-failed-child: <service>`, or `500` with
//!    probability `--error-rate` (the container's own failure). A failed call to an `--optional`
//!    child does not fail the request: it is answered `200` with one
//!    `x-loadshift-degraded: <service>` per child it went on without.
//!
//! Two routes answer at once, without emulated work, so a supervisor can reach the container
//! without going through its proxy:
//! - `GET /_loadshift/stats`: `{"served": N, "in_service": K, "concurrency": C}`, the requests
//!   served so far, those holding a service slot now, and the slots;
//! - `PUT /_loadshift/concurrency?n=C`: sets the service slots to `C` (from 1 to
//!   [`server::MAX_CONCURRENCY`]) while serving, answering `{"concurrency": C}`. Work in service
//!   is never cut: more slots serve queued requests at once, fewer take effect as requests in
//!   service finish (the lab maps a CPU limit to this, `lab::scaling`).
//!
//! The bound address is printed as `listening on ADDR` and, with `--port-file`, written to that
//! file (atomically) so a supervisor can find an OS-chosen port.

pub mod children;
pub mod host_load;
pub mod interference;
pub mod server;
pub mod service_time;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use http::header::HeaderName;

use children::{CallMode, Child};
use service_time::ServiceTime;

/// Arguments of `loadshift app`.
#[derive(clap::Args, Debug, Clone)]
pub struct AppArgs {
    /// Address to serve on; port 0 lets the OS choose.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// File to write the bound address to (`IP:PORT`).
    #[arg(long)]
    pub port_file: Option<PathBuf>,
    /// Service name (reported in logs).
    #[arg(long, default_value = "app")]
    pub service: String,
    /// Container name, returned in the `x-loadshift-container` header (default: the service).
    #[arg(long)]
    pub container: Option<String>,
    /// Service time: `exp:MEAN_MS`, `lognormal:MEAN_MS[:SIGMA]` or `const:MEAN_MS`.
    #[arg(long, default_value = "exp:5")]
    pub service_time: ServiceTime,
    /// Requests served at once; more queue. Changed while serving with
    /// `PUT /_loadshift/concurrency?n=C`.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Initial interference multiplier.
    #[arg(long, default_value_t = 1.0)]
    pub interference: f64,
    /// File holding the interference multiplier, re-read every 200 ms.
    #[arg(long)]
    pub interference_file: Option<PathBuf>,
    /// Directory shared by the apps of one emulated host: with it the app keeps its requests in
    /// service there and adds the host's CPU term to the multiplier when work starts (the
    /// simulator's `self_load`; see `host_load`). The interference file then holds the
    /// multiplier without the CPU term.
    #[arg(long)]
    pub host_dir: Option<PathBuf>,
    /// Cores of the emulated host (with --host-dir).
    #[arg(long, default_value_t = 1)]
    pub host_cores: u32,
    /// Weight of the CPU term (the scenario's interference `a_cpu`; with --host-dir).
    #[arg(long, default_value_t = 0.5)]
    pub host_a_cpu: f64,
    /// Utilisation at which the CPU term stops growing (the scenario's `cap`; with --host-dir).
    #[arg(long, default_value_t = 0.95)]
    pub host_cap: f64,
    /// Fraction of the service time spent burning CPU instead of sleeping, in [0, 1].
    #[arg(long, default_value_t = 0.0)]
    pub cpu_fraction: f64,
    /// Probability in [0, 1] that a request fails with 500 after its work.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Child service called per request, `SERVICE[:PROBABILITY]` (repeatable).
    #[arg(long = "child")]
    pub children: Vec<Child>,
    /// Child service whose failed call degrades the request instead of failing it (repeatable;
    /// each must be a `--child`).
    #[arg(long = "optional")]
    pub optional: Vec<String>,
    /// Whether children are called one after another or all at once.
    #[arg(long, value_enum, default_value_t = CallMode::Sequence)]
    pub calls: CallMode,
    /// The sidecar's outbound listener, through which children are called.
    #[arg(long)]
    pub outbound: Option<SocketAddr>,
    /// Request header copied onto child calls (repeatable).
    #[arg(long = "propagate")]
    pub propagate: Vec<HeaderName>,
    /// Most connections to the sidecar.
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
    /// Timeout of one child call, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub child_timeout_ms: u64,
}

impl AppArgs {
    /// Checks what clap cannot: value ranges and the outbound address when there are children.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=server::MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(format!(
                "--concurrency: {} is not in [1, {}]",
                self.concurrency,
                server::MAX_CONCURRENCY
            ));
        }
        if !(0.0..=1.0).contains(&self.cpu_fraction) {
            return Err(format!(
                "--cpu-fraction: {} is not in [0, 1]",
                self.cpu_fraction
            ));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "--error-rate: {} is not in [0, 1]",
                self.error_rate
            ));
        }
        if interference::Interference::parse(&self.interference.to_string()).is_none() {
            return Err(format!(
                "--interference: {} must be a number > 0",
                self.interference
            ));
        }
        if !self.children.is_empty() && self.outbound.is_none() {
            return Err("--outbound: required when --child is given".into());
        }
        if let Some(o) = self
            .optional
            .iter()
            .find(|o| !self.children.iter().any(|c| &c.service == *o))
        {
            return Err(format!("--optional: {o:?} is not a --child"));
        }
        Ok(())
    }

    /// Timeout of one child call.
    pub fn child_timeout(&self) -> Duration {
        Duration::from_millis(self.child_timeout_ms)
    }
}

/// Entry point of `loadshift app`: exit 64 on invalid arguments, 1 if serving fails.
pub fn main(args: AppArgs) -> ExitCode {
    if let Err(e) = args.validate() {
        eprintln!("loadshift app: {e}");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    // One thread: the lab runs many apps on two cores, and CPU burn runs on the blocking pool.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadshift app: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(server::serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadshift app: {e:#}");
            ExitCode::FAILURE
        }
    }
}
