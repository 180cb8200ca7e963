//! `loadshift proxy --config FILE`: load and validate the config (exit 64 on any error, naming the
//! field), start the listeners and workers, run until SIGTERM / SIGINT, then drain.

use std::{path::PathBuf, process::ExitCode};

use loadshift_proxy::config::ProxyConfig;

use crate::EXIT_CONFIG;

#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// Proxy configuration (YAML); see `examples/` for one per mode.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Validate the configuration (and its `plan_file`, as the running proxy would) and exit.
    #[arg(long)]
    pub check: bool,
    /// After binding, write the bound addresses here as JSON (`{"outbound", "inbound", "admin"}`),
    /// so callers can use port 0.
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
}

pub fn main(args: ProxyArgs) -> ExitCode {
    let config = match ProxyConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadshift proxy: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check {
        // The certificates and keys, as the running proxy would read them.
        if let Err(e) = loadshift_proxy::tls::Tls::build(&config) {
            eprintln!("loadshift proxy: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        // The plan file too: the running proxy would refuse a bad one and keep none.
        return match loadshift_proxy::plan_file::check(&config) {
            Ok(None) => {
                println!("{}: ok", args.config.display());
                ExitCode::SUCCESS
            }
            Ok(Some(version)) => {
                println!(
                    "{}: ok (plan file version {version})",
                    args.config.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loadshift proxy: invalid configuration: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let running = match loadshift_proxy::start(config) {
        Ok(r) => r,
        // TLS material that cannot be used is a configuration error, named by its field.
        Err(e @ loadshift_proxy::StartError::Tls(_)) => {
            eprintln!("loadshift proxy: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        // A listener address that cannot be bound is a configuration the host cannot run.
        // So is a descriptor limit below the floor or below what the connection caps need.
        Err(
            e @ (loadshift_proxy::StartError::Bind { .. }
            | loadshift_proxy::StartError::Descriptors(_)),
        ) => {
            eprintln!("loadshift proxy: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("loadshift proxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.addr_file {
        let addrs = serde_json::json!({
            "outbound": running.outbound.to_string(),
            "inbound": running.inbound.map(|a| a.to_string()),
            "admin": running.admin.to_string(),
        });
        // Written whole then renamed, so a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        if let Err(e) =
            std::fs::write(&tmp, addrs.to_string()).and_then(|()| std::fs::rename(&tmp, path))
        {
            eprintln!("loadshift proxy: writing {}: {e}", path.display());
            running.shutdown();
            return ExitCode::FAILURE;
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadshift proxy: signal runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(crate::signal::terminated());
    tracing::info!("draining");
    running.shutdown();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
