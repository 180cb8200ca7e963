//! `loadshift sim SCENARIO --oracle-host-split`: the best static share of the noisy host(s) for
//! every service, swept in the simulator on the same seeds as `--compare --seeds`, with baseline
//! planners beside it. Writes `summary.json` and `table.md` (the Markdown table it prints).

use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use anyhow::Context;

use loadshift_sim::{
    oracle::{self, OracleError, Sweep, SweepOptions, best_label},
    scenario::Scenario,
};

use super::args::{Settings, SimArgs};

pub fn main(args: &SimArgs, scn: &Scenario, settings: Settings) -> ExitCode {
    match run(args, scn, settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<OracleError>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::from(crate::EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &SimArgs, scn: &Scenario, settings: Settings) -> anyhow::Result<()> {
    let first = args.seed.unwrap_or(scn.seed);
    let mut o = SweepOptions::new(
        (0..u64::from(args.seeds))
            .map(|k| first.wrapping_add(k))
            .collect(),
    );
    o.step = args.oracle_step;
    o.refine_step = args.oracle_refine_step;
    o.from_start = args.oracle_from_start;
    o.planner_settings = settings.planner;
    if !args.compare.is_empty() {
        o.baselines = args.compare.clone();
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("sim-{}-oracle", scn.name)));
    let sweep = oracle::sweep(scn, &o, &mut |line| eprintln!("{line}"))?;
    let table = table(&sweep);
    print!("{table}");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let json = serde_json::to_string_pretty(&sweep).context("encoding the summary")?;
    for (name, text) in [("summary.json", json), ("table.md", table)] {
        let p = out.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    println!("summary: {}", out.join("summary.json").display());
    Ok(())
}

/// `mean ± sd`.
fn ms(s: &loadshift_sim::seeds::Stat) -> String {
    format!("{:.2} ± {:.2}", s.mean, s.sd)
}

/// The Markdown the README quotes: every point, the baselines, the best per pick and the ratios.
fn table(s: &Sweep) -> String {
    let mut t = format!(
        "{}: noisy host(s) {} (even share {:.4}), split from t = {} s, seeds {:?}\n\n",
        s.scenario,
        s.noisy_hosts.join(", "),
        s.even_share,
        s.split_from_s,
        s.seeds
    );
    t.push_str("| pick | noisy share | p95 ms | p99 ms | noisy hosts' share of calls % |\n");
    t.push_str("|---|---|---|---|---|\n");
    for p in &s.points {
        let best = s
            .best
            .iter()
            .any(|b| b.pick == p.pick && (b.share - p.share).abs() < 1e-9);
        let mark = |x: String| if best { format!("**{x}**") } else { x };
        let _ = writeln!(
            t,
            "| {} | {}{} | {} | {} | {:.1} ± {:.1} |",
            p.pick.name(),
            mark(format!("{:.3}", p.share)),
            if p.refined { " (r)" } else { "" },
            mark(ms(&p.p95_ms)),
            ms(&p.p99_ms),
            100.0 * p.noisy_call_share.mean,
            100.0 * p.noisy_call_share.sd
        );
    }
    for b in &s.baselines {
        let _ = writeln!(
            t,
            "| {} (baseline) | - | {} | {} | {:.1} ± {:.1} |",
            b.policy,
            ms(&b.p95_ms),
            ms(&b.p99_ms),
            100.0 * b.noisy_call_share.mean,
            100.0 * b.noisy_call_share.sd
        );
    }
    t.push('\n');
    for b in &s.best {
        let label = best_label(b.pick);
        let _ = writeln!(
            t,
            "best {}: share {:.3}, p95 {} ms",
            b.pick.name(),
            b.share,
            ms(&b.p95_ms)
        );
        // The best split against the baselines first, then the baselines against it.
        let against = s.ratios.iter().filter(|r| r.policy == label);
        let by = s.ratios.iter().filter(|r| r.baseline == label);
        for r in against.chain(by) {
            let _ = writeln!(
                t,
                "  p95 {} / {}: {:.3} ± {:.3} [{:.3}, {:.3}]",
                r.policy,
                r.baseline,
                r.p95_ratio.mean,
                r.p95_ratio.sd,
                r.p95_ratio.min,
                r.p95_ratio.max
            );
        }
    }
    t
}
