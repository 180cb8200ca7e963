//! `loadshift sim SCENARIO`: runs a scenario in the discrete-event simulator with one or several
//! policies, writes `summary.json`, `timeseries.csv` and `report.html`, and prints a summary table.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use loadshift_control::{
    report::terminal_table,
    scenario::Scenario,
    sim::{self, SimOptions},
};

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Scenario file (YAML, see docs/scenarios.md).
    pub scenario: PathBuf,
    /// Planner for every service (overrides the scenario's policy).
    #[arg(long)]
    pub planner: Option<String>,
    /// Scaler for every service (overrides the scenario's policy).
    #[arg(long)]
    pub scaler: Option<String>,
    /// Directory for summary.json, timeseries.csv and report.html [default: sim-<scenario name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed (overrides the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run several planners on the same seed into one report, e.g. `round-robin,p2c-ewma`.
    #[arg(long, value_delimiter = ',')]
    pub compare: Vec<String>,
    /// Simulated seconds (overrides the scenario's duration_s).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Print simulated requests per wall-clock second.
    #[arg(long)]
    pub bench: bool,
}

pub fn main(args: SimArgs) -> ExitCode {
    let mut scn = match Scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}: {e}", args.scenario.display());
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > scn.warmup_s) {
            eprintln!(
                "error: --duration {d}: must be a number of seconds above warmup_s = {}",
                scn.warmup_s
            );
            return ExitCode::from(crate::EXIT_CONFIG);
        }
        scn.duration_s = d;
    }
    match run(&args, &scn) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<sim::SimError>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::from(crate::EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &SimArgs, scn: &Scenario) -> anyhow::Result<()> {
    let opts = SimOptions {
        planner: args.planner.clone(),
        scaler: args.scaler.clone(),
        seed: args.seed,
    };
    let planners: Vec<Option<String>> = if args.compare.is_empty() {
        vec![None]
    } else {
        args.compare.iter().map(|p| Some(p.clone())).collect()
    };
    let bar = ProgressBar::new((scn.duration_s * planners.len() as f64).ceil() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:40}] {pos}/{len} simulated s ({elapsed})")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    let mut done_before = 0.0;
    let mut current = String::new();
    let (report, outcomes) = sim::compare(scn, &planners, &opts, &mut |policy, t| {
        if policy != current {
            if !current.is_empty() {
                done_before += scn.duration_s;
            }
            current = policy.to_string();
            bar.set_prefix(current.clone());
        }
        bar.set_position((done_before + t) as u64);
    })?;
    bar.finish_and_clear();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("sim-{}", scn.name)));
    report
        .write(&out)
        .with_context(|| format!("writing the report to {}", out.display()))?;
    print!("{}", terminal_table(&report));
    for o in &outcomes {
        if o.run.counts.unfinished > 0 {
            println!(
                "{}: {} requests still unfinished at the end counted as failed",
                o.run.policy, o.run.counts.unfinished
            );
        }
    }
    for o in &outcomes {
        let total: u64 = o.connections.values().sum();
        println!(
            "{}: {total} connections (caller proxy x endpoint) at the end",
            o.run.policy
        );
    }
    if args.bench {
        for o in &outcomes {
            let c = &o.run.counts;
            let per = |secs: f64| {
                format!(
                    "{:.0} requests/s, {:.0} calls/s",
                    o.arrivals as f64 / secs,
                    c.calls as f64 / secs
                )
            };
            print!(
                "bench {}: {} requests, {} calls, {} events in {:.2} s wall: {} simulated ({:.1}x real time)",
                o.run.policy,
                o.arrivals,
                c.calls,
                o.events,
                o.wall_s,
                per(o.wall_s),
                scn.duration_s / o.wall_s
            );
            match o.cpu_s {
                Some(cpu) if cpu > 0.0 => println!("; {cpu:.2} CPU s: {} per CPU second", per(cpu)),
                _ => println!(),
            }
        }
    }
    println!("report: {}", out.join("report.html").display());
    Ok(())
}
