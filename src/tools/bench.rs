//! `loadshift bench`: benchmarks that run real processes on this machine (not tests: they
//! measure, they do not assert). `loadshift bench proxy` compares the data plane with HAProxy
//! and nginx; see `benches/README.md`.

mod control;
pub mod peers;
pub mod proxy;
pub mod wrk;

use std::process::ExitCode;

/// Arguments of `loadshift bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Which benchmark.
    #[command(subcommand)]
    pub bench: Bench,
}

/// The benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum Bench {
    /// loadshift proxy vs HAProxy vs nginx: saturation, open-loop latency, RSS.
    Proxy(proxy::ProxyBenchArgs),
    /// Control plane: plan propagation to N proxy streams, CPU per report, RSS.
    Control(control::ControlBenchArgs),
}

/// Entry point of `loadshift bench`: every child process is killed before this returns.
pub fn main(args: BenchArgs) -> ExitCode {
    let result = match &args.bench {
        Bench::Proxy(a) => proxy::run(a),
        Bench::Control(a) => control::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadshift bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
