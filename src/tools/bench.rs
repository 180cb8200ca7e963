//! `loadshift bench`: benchmarks that run real processes on this machine (not tests: they
//! measure, they do not assert). `loadshift bench proxy` compares the data plane with HAProxy
//! and nginx, `loadshift bench soak` runs a long steady load and connection storms against it;
//! see `benches/README.md`.

mod attack;
mod control;
pub mod peers;
pub mod proxy;
mod soak;
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
    /// The proxy under a 10-minute soak and connection storms (idle h2c, slowloris): RSS,
    /// descriptors, errors and normal clients' latency against an unattacked baseline.
    Soak(soak::SoakArgs),
    /// The hostile clients of `bench soak`, as a child process.
    #[command(hide = true)]
    Attack(attack::AttackArgs),
}

/// Entry point of `loadshift bench`: every child process is killed before this returns.
pub fn main(args: BenchArgs) -> ExitCode {
    let result = match &args.bench {
        Bench::Proxy(a) => proxy::run(a),
        Bench::Control(a) => control::run(a),
        Bench::Soak(a) => soak::run(a),
        Bench::Attack(a) => attack::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadshift bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
