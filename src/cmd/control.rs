//! `loadshift control`: the control plane. Reads and validates the config (exit 64 with the field
//! and the reason when invalid), binds both APIs, prints the bound addresses on stdout and serves
//! until SIGTERM / SIGINT.

use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::Args;
use loadshift_control::{ControlConfig, ControlServer};

#[derive(Args, Debug)]
pub struct ControlArgs {
    /// Config file (YAML); see deploy/control.example.yaml.
    #[arg(long, short)]
    config: PathBuf,
}

pub fn main(args: ControlArgs) -> ExitCode {
    let cfg = match ControlConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadshift control: invalid config: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadshift control: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let (addrs, serve) = match ControlServer::bind(cfg, crate::signal::terminated()).await {
            Ok(x) => x,
            Err(
                e @ (loadshift_control::ControlError::Config(_)
                | loadshift_control::ControlError::Bind { .. }),
            ) => {
                eprintln!("loadshift control: invalid config: {e}");
                return ExitCode::from(crate::EXIT_CONFIG);
            }
            Err(e) => {
                eprintln!("loadshift control: {e}");
                return ExitCode::FAILURE;
            }
        };
        // One machine-readable line, so scripts and the lab learn the ports of `:0` binds.
        println!(
            "listening proxy_api={} operator_api={}",
            addrs.proxy, addrs.operator
        );
        let _ = std::io::stdout().flush();
        match serve.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadshift control: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
