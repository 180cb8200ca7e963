//! `loadshift`: one binary for the proxy, the control plane, the operator CLI, the lab and the
//! simulator. Each subcommand lives in its own module; this file only dispatches.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::process::ExitCode;

use clap::Parser;

/// Exit code for invalid configuration or input (sysexits EX_DATAERR / EX_USAGE family).
pub const EXIT_CONFIG: u8 = 64;

#[derive(Parser, Debug)]
#[command(name = "loadshift", version, about)]
enum Cli {}

fn main() -> ExitCode {
    match Cli::parse() {}
}
