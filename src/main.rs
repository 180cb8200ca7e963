//! `loadshift`: one binary for the proxy, the control plane, the operator CLI and the simulator
//! (`cmd/`), and the tooling around them: the lab, the emulated app, the load generator and the
//! benchmarks (`tools/`). Each subcommand lives in its own module; this file only dispatches.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::process::ExitCode;

use clap::Parser;

mod cmd;
mod signal;
mod tools;

use cmd::{control, ctl, identity, install, proxy, sim, token};
use tools::{app, bench, lab, load, model};

/// jemalloc, whose background thread returns freed memory to the system: after a connection
/// storm the system allocator kept what the storm's connections had used.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit code for invalid configuration or input (sysexits EX_DATAERR / EX_USAGE family).
pub const EXIT_CONFIG: u8 = 64;

#[derive(Parser, Debug)]
#[command(name = "loadshift", version, about)]
enum Cli {
    /// Run the data-plane proxy (sidecar or standalone).
    Proxy(proxy::ProxyArgs),
    /// Open-loop HTTP/1.1 load generator (fixed rate, latency from the intended send time).
    Load(load::cli::LoadArgs),
    /// Emulated service for the lab: service-time distribution, interference, downstream calls.
    App(app::AppArgs),
    /// Benchmarks against peers on this machine (`bench proxy`: loadshift vs HAProxy vs nginx).
    Bench(bench::BenchArgs),
    /// Run a scenario with real processes on loopback (apps, sidecars, control plane, load).
    Lab(lab::LabArgs),
    /// Run the control plane (proxy stream API, operator API, planner and scale loops).
    Control(control::ControlArgs),
    /// Operator CLI: status, watch, objectives, pins, scale decisions.
    Ctl(ctl::CtlArgs),
    /// Simulate a scenario (discrete-event digital twin) and write a report.
    Sim(sim::SimArgs),
    /// Bearer tokens for the control plane (`token create`).
    Token(token::TokenArgs),
    /// A file-based CA and workload certificates for mTLS (`identity ca`, `identity issue`).
    Identity(identity::IdentityArgs),
    /// Learned models of the planners: collect a trace in the twin, train on it.
    Model(model::ModelArgs),
    /// Print the control plane's Kubernetes objects (`loadshift install | kubectl apply -f -`).
    Install(install::InstallArgs),
    /// Print what `install` creates, for `loadshift uninstall | kubectl delete -f -`.
    Uninstall,
}

fn main() -> ExitCode {
    init_tracing();
    match Cli::parse() {
        Cli::Proxy(args) => {
            return_freed_memory();
            proxy::main(args)
        }
        Cli::Load(args) => load::cli::main(args),
        Cli::App(args) => app::main(args),
        Cli::Bench(args) => bench::main(args),
        Cli::Lab(args) => lab::main(args),
        Cli::Control(args) => {
            return_freed_memory();
            control::main(args)
        }
        Cli::Ctl(args) => ctl::main(args),
        Cli::Sim(args) => sim::main(args),
        Cli::Token(args) => token::main(args),
        Cli::Identity(args) => identity::main(args),
        Cli::Model(args) => model::main(args),
        Cli::Install(args) => install::install(args),
        Cli::Uninstall => install::uninstall(),
    }
}

/// Long-running servers give freed memory back to the system within seconds (jemalloc's
/// background thread), not only when the allocator is next called on the thread that freed it:
/// a worker idle after a connection storm never is.
fn return_freed_memory() {
    #[cfg(feature = "jemalloc")]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %e, "could not start jemalloc's background thread");
    }
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
