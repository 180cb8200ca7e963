//! `loadshift control`: the control plane. Reads and validates the config and its token file
//! (exit 64 with the field and the reason when invalid; `--check` stops there), binds both APIs,
//! prints the bound addresses on stdout and serves until SIGTERM / SIGINT.

use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::Args;
use loadshift_control::{ControlConfig, ControlServer};

#[derive(Args, Debug)]
pub struct ControlArgs {
    /// Config file (YAML); see deploy/control.example.yaml.
    #[arg(long, short)]
    config: PathBuf,
    /// Validate the config and read its token file, then exit: 0 when both are good, 64 with
    /// the field and the reason otherwise. Binds nothing.
    #[arg(long)]
    check: bool,
}

/// The token file's problem, with how to make one; `None` when it holds a token.
fn token_problem(cfg: &ControlConfig) -> Option<String> {
    let path = &cfg.token_file;
    let hint = format!(
        "create one with `loadshift token create --out {}`",
        path.display()
    );
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => None,
        Ok(_) => Some(format!("token_file {path:?} is empty; {hint}")),
        Err(e) => Some(format!("token_file {path:?}: {e}; {hint}")),
    }
}

pub fn main(args: ControlArgs) -> ExitCode {
    let cfg = match ControlConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadshift control: invalid config: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    if let Some(problem) = token_problem(&cfg) {
        eprintln!("loadshift control: invalid config: {problem}");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    if args.check {
        println!(
            "{}: ok ({} services, {} applications, token file {})",
            args.config.display(),
            cfg.services.len(),
            cfg.applications.len(),
            cfg.token_file.display()
        );
        return ExitCode::SUCCESS;
    }
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
