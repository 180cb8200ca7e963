//! `loadshift sim SCENARIO`: runs a scenario in the discrete-event simulator with one or several
//! policies, writes `summary.json`, `timeseries.csv` and `report.html`, and prints a summary table.
//! With `--seeds N` it repeats the comparison on N consecutive seeds, one report per seed under
//! `seed-S/`, and summarises mean and spread per policy in the top-level `summary.json` and
//! `report.html`. `--scalers a,b` compares scalers, each with its source's balancer (`hpa-best`
//! tunes the HPA's target per seed); `--sla-scale F` tightens or loosens every flow's SLA.

mod args;
pub mod objective;
mod oracle;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use args::Settings;
pub use args::SimArgs;
use indicatif::{ProgressBar, ProgressStyle};
use loadshift_policy::scalers;
use loadshift_sim::{
    self as sim, Outcome, SimOptions,
    report::{Report, terminal_table},
    scenario::Scenario,
    seeds::MultiSeed,
};

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
    if let Err(e) = check_comparison(&args) {
        eprintln!("error: {e}");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    let mut settings = match Settings::read(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    if args.oracle_host_split {
        return oracle::main(&args, &scn, settings);
    }
    let out = out_dir(&args, &scn);
    let model = match objective::prepare(&args, &mut scn, &mut settings, &out) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    match run(&args, &scn, settings, model) {
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

/// `--sla-scale` and `--scalers`, checked before anything runs.
fn check_comparison(args: &SimArgs) -> Result<(), String> {
    let f = args.sla_scale;
    if !(f.is_finite() && f > 0.0) {
        return Err(format!("--sla-scale {f}: must be a finite number > 0"));
    }
    for (i, name) in args.scalers.iter().enumerate() {
        sim::check_scaler(name).map_err(|e| format!("--scalers: {e}"))?;
        if args.scalers[..i].contains(name) {
            return Err(format!("--scalers: {name:?} is listed twice"));
        }
    }
    Ok(())
}

/// The runs of one seed: the `--scalers`, the `--compare` entries, or the
/// scenario's own policy.
pub(crate) fn entries(args: &SimArgs) -> Vec<Option<String>> {
    if !args.scalers.is_empty() {
        // `hpa-best` is the HPA tuned per seed: Kubernetes' balancer, as for `hpa`.
        let paper = |s: &str| scalers::paper_planner(s.strip_suffix("-best").unwrap_or(s));
        args.scalers
            .iter()
            .map(|s| {
                Some(format!(
                    "{}+{s}",
                    args.planner.as_deref().unwrap_or(paper(s))
                ))
            })
            .collect()
    } else if args.compare.is_empty() {
        vec![None]
    } else {
        args.compare.iter().map(|p| Some(p.clone())).collect()
    }
}

fn out_dir(args: &SimArgs, scn: &Scenario) -> PathBuf {
    args.out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("sim-{}", scn.name)))
}

fn run(
    args: &SimArgs,
    scn: &Scenario,
    settings: Settings,
    model: Option<std::sync::Arc<loadshift_policy::planners::objective::model::SystemModel>>,
) -> anyhow::Result<()> {
    let out = out_dir(args, scn);
    if args.seeds == 1 {
        let opts = SimOptions {
            planner: args.planner.clone(),
            scaler: args.scaler.clone(),
            seed: args.seed,
            planner_settings: settings.planner,
            scaler_settings: settings.scaler,
            trace: false,
            sla_scale: args.sla_scale,
            objective_model: model.clone(),
        };
        let (report, outcomes) = run_seed(args, scn, &opts, "")?;
        report
            .write(&out)
            .with_context(|| format!("writing the report to {}", out.display()))?;
        objective::write_steps(&out, &outcomes)?;
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
            sla_scale: args.sla_scale,
            objective_model: model.clone(),
        };
        let (report, outcomes) = run_seed(args, scn, &opts, &format!("seed {seed} "))?;
        let dir = out.join(format!("seed-{seed}"));
        report
            .write(&dir)
            .with_context(|| format!("writing the report to {}", dir.display()))?;
        objective::write_steps(&dir, &outcomes)?;
        print_run(args, scn, &report, &outcomes);
        reports.push(report);
    }
    let multi = MultiSeed::from_reports(&reports);
    multi
        .write(&out)
        .with_context(|| format!("writing the summary to {}", out.display()))?;
    println!();
    print!("{}", multi.table());
    for p in &multi.policies {
        if let Some(a) = &p.anr {
            println!(
                "ANR {}: {:.3} ± {:.3} [{:.3}, {:.3}]",
                p.policy, a.mean, a.sd, a.min, a.max
            );
        }
    }
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
    let planners = entries(args);
    let runs = sim::run_count(scn, &planners, opts);
    let bar = ProgressBar::new((scn.duration_s * runs as f64).ceil() as u64);
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
        println!("{}", o.connections_note());
    }
    for o in outcomes {
        if let Some(a) = &o.anr {
            println!(
                "{}: ANR {:.3} over {} steps",
                o.run.policy,
                a.anr,
                a.steps.len()
            );
        }
    }
    for h in outcomes.iter().filter_map(|o| o.hpa_best.as_ref()) {
        println!("{}", h.line());
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
