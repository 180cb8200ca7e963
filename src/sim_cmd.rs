//! `loadshift sim SCENARIO`: runs a scenario in the discrete-event simulator with one or several
//! policies, writes `summary.json`, `timeseries.csv` and `report.html`, and prints a summary table.
//! With `--seeds N` it repeats the comparison on N consecutive seeds, one report per seed under
//! `seed-S/`, and summarises mean and spread per policy in the top-level `summary.json` and
//! `report.html`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use loadshift_policy::{planners::PlannerSettings, scalers::ScalerSettings};
use loadshift_sim::{
    self as sim, Outcome, SimOptions,
    report::{Report, terminal_table},
    scenario::Scenario,
    seeds::MultiSeed,
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
    /// Seed (overrides the scenario's); with --seeds, the first seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run the comparison on this many consecutive seeds and report mean and spread per policy.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub seeds: u32,
    /// YAML file of planner tunables for every service (the `planner_settings` section of the
    /// control config and the scenario: interval_ms, shift, shift_pure, connect, table,
    /// table_store, random_partial); default: the scenario's.
    #[arg(long)]
    pub planner_settings: Option<PathBuf>,
    /// YAML file of scaler tunables for every service (the `scaler_settings` section of the
    /// control config and the scenario: hpa); default: the scenario's.
    #[arg(long)]
    pub scaler_settings: Option<PathBuf>,
    /// Run several planners on the same seed into one report, e.g. `round-robin,p2c-ewma`.
    #[arg(long, value_delimiter = ',')]
    pub compare: Vec<String>,
    /// Simulated seconds (overrides the scenario's duration_s).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Print simulated requests per wall-clock second.
    #[arg(long)]
    pub bench: bool,
    /// Instead of the policies: sweep a static share of the noisy host(s) for every service on
    /// --seeds seeds, with the --compare planners (default round-robin, p2c-ewma, imbres-shift)
    /// beside it; see `loadshift_sim::oracle`.
    #[arg(long)]
    pub oracle_host_split: bool,
    /// Grid step of the --oracle-host-split share.
    #[arg(long, default_value_t = 0.02)]
    pub oracle_step: f64,
    /// Step of the --oracle-host-split refinement around the best grid point.
    #[arg(long, default_value_t = 0.005)]
    pub oracle_refine_step: f64,
    /// --oracle-host-split holds its split from t = 0 instead of from the scenario's onset.
    #[arg(long)]
    pub oracle_from_start: bool,
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
    let settings = match settings(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    if args.oracle_host_split {
        return crate::sim_oracle::main(&args, &scn, settings);
    }
    match run(&args, &scn, settings) {
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

/// `--planner-settings` and `--scaler-settings`, parsed and range-checked; `None` keeps the
/// scenario's.
pub struct Settings {
    pub planner: Option<PlannerSettings>,
    pub scaler: Option<ScalerSettings>,
}

fn settings(args: &SimArgs) -> anyhow::Result<Settings> {
    fn read<T: serde::de::DeserializeOwned>(p: &std::path::Path, what: &str) -> anyhow::Result<T> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        serde_yaml_ng::from_str(&text).with_context(|| format!("{}: {what}", p.display()))
    }
    let planner = match &args.planner_settings {
        None => None,
        Some(p) => {
            let s: PlannerSettings = read(p, "planner settings")?;
            s.validate()
                .map_err(|e| anyhow::anyhow!("{}: planner_settings.{e}", p.display()))?;
            Some(s)
        }
    };
    let scaler = match &args.scaler_settings {
        None => None,
        Some(p) => {
            let s: ScalerSettings = read(p, "scaler settings")?;
            s.validate()
                .map_err(|e| anyhow::anyhow!("{}: scaler_settings.{e}", p.display()))?;
            Some(s)
        }
    };
    Ok(Settings { planner, scaler })
}

fn run(args: &SimArgs, scn: &Scenario, settings: Settings) -> anyhow::Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("sim-{}", scn.name)));
    if args.seeds == 1 {
        let opts = SimOptions {
            planner: args.planner.clone(),
            scaler: args.scaler.clone(),
            seed: args.seed,
            planner_settings: settings.planner,
            scaler_settings: settings.scaler,
            trace: false,
        };
        let (report, outcomes) = run_seed(args, scn, &opts, "")?;
        report
            .write(&out)
            .with_context(|| format!("writing the report to {}", out.display()))?;
        print_run(args, scn, &report, &outcomes);
        println!("report: {}", out.join("report.html").display());
        return Ok(());
    }
    let first = args.seed.unwrap_or(scn.seed);
    let mut reports = Vec::new();
    for k in 0..u64::from(args.seeds) {
        let seed = first.wrapping_add(k);
        let opts = SimOptions {
            planner: args.planner.clone(),
            scaler: args.scaler.clone(),
            seed: Some(seed),
            planner_settings: settings.planner.clone(),
            scaler_settings: settings.scaler.clone(),
            trace: false,
        };
        let (report, outcomes) = run_seed(args, scn, &opts, &format!("seed {seed} "))?;
        let dir = out.join(format!("seed-{seed}"));
        report
            .write(&dir)
            .with_context(|| format!("writing the report to {}", dir.display()))?;
        print_run(args, scn, &report, &outcomes);
        reports.push(report);
    }
    let multi = MultiSeed::from_reports(&reports);
    multi
        .write(&out)
        .with_context(|| format!("writing the summary to {}", out.display()))?;
    println!();
    print!("{}", multi.table());
    for r in &multi.ratios {
        let s = &r.p95_ratio;
        println!(
            "p95 {} / {}: {:.3} ± {:.3} [{:.3}, {:.3}]",
            r.policy, r.baseline, s.mean, s.sd, s.min, s.max
        );
    }
    println!("report: {}", out.join("report.html").display());
    Ok(())
}

/// One comparison on one seed, with a progress bar.
fn run_seed(
    args: &SimArgs,
    scn: &Scenario,
    opts: &SimOptions,
    label: &str,
) -> anyhow::Result<(Report, Vec<Outcome>)> {
    let planners: Vec<Option<String>> = if args.compare.is_empty() {
        vec![None]
    } else {
        args.compare.iter().map(|p| Some(p.clone())).collect()
    };
    let bar = ProgressBar::new((scn.duration_s * planners.len() as f64).ceil() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>24} [{bar:40}] {pos}/{len} simulated s ({elapsed})")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    let mut done_before = 0.0;
    let mut current = String::new();
    let result = sim::compare(scn, &planners, opts, &mut |policy, t| {
        if policy != current {
            if !current.is_empty() {
                done_before += scn.duration_s;
            }
            current = policy.to_string();
            bar.set_prefix(format!("{label}{current}"));
        }
        bar.set_position((done_before + t) as u64);
    })?;
    bar.finish_and_clear();
    Ok(result)
}

/// The table and the per-policy lines of one seed.
fn print_run(args: &SimArgs, scn: &Scenario, report: &Report, outcomes: &[Outcome]) {
    print!("{}", terminal_table(report));
    for o in outcomes {
        if o.run.counts.unfinished > 0 {
            println!(
                "{}: {} requests still unfinished at the end counted as failed",
                o.run.policy, o.run.counts.unfinished
            );
        }
    }
    for o in outcomes {
        let total: u64 = o.connections.values().sum();
        let per: Vec<String> = o
            .connections
            .iter()
            .map(|(svc, n)| format!("{svc} {n}"))
            .collect();
        println!(
            "{}: {total} connections (caller proxy x endpoint) at the end: {}",
            o.run.policy,
            per.join(", ")
        );
    }
    if args.bench {
        for o in outcomes {
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
}
