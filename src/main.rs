//! `loadshift`: one binary for the proxy, the control plane, the operator CLI, the lab and the
//! simulator. Each subcommand lives in its own module; this file only dispatches.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::process::ExitCode;

use clap::Parser;

mod app;
mod bench;
mod bench_control;
mod control_cmd;
mod ctl;
mod sim_cmd;
mod loadgen;

/// Exit code for invalid configuration or input (sysexits EX_DATAERR / EX_USAGE family).
pub const EXIT_CONFIG: u8 = 64;

#[derive(Parser, Debug)]
#[command(name = "loadshift", version, about)]
enum Cli {
    /// Open-loop HTTP/1.1 load generator (fixed rate, latency from the intended send time).
    Load(loadgen::cli::LoadArgs),
    /// Emulated service for the lab: service-time distribution, interference, downstream calls.
    App(app::AppArgs),
    /// Benchmarks against peers on this machine (`bench proxy`: loadshift vs HAProxy vs nginx).
    Bench(bench::BenchArgs),
    /// Run the control plane (proxy stream API, operator API, planner and scale loops).
    Control(control_cmd::ControlArgs),
    /// Operator CLI: status, watch, objectives, pins, scale decisions.
    Ctl(ctl::CtlArgs),
    /// Simulate a scenario (discrete-event digital twin) and write a report.
    Sim(sim_cmd::SimArgs),
}

fn main() -> ExitCode {
    match Cli::parse() {
        Cli::Load(args) => loadgen::cli::main(args),
        Cli::App(args) => app::main(args),
        Cli::Bench(args) => bench::main(args),
        Cli::Control(args) => control_cmd::main(args),
        Cli::Ctl(args) => ctl::main(args),
        Cli::Sim(args) => sim_cmd::main(args),
    }
}
