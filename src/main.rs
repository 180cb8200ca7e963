//! `loadshift`: one binary for the proxy, the control plane, the operator CLI, the lab and the
//! simulator.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "loadshift", version, about)]
enum Cli {}

fn main() {
    match Cli::parse() {}
}
