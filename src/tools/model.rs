//! `loadshift model`: the learned models of the planners, trained by our own commands on data
//! our own twin produces.
//!
//! - `model collect SCENARIO --out TRACE`: runs the scenario in the simulator with the `random`
//!   planner (actions drawn uniformly from the objective planner's discretised space every 5 s)
//!   under the random-level load `U{5, 10, 15, 20}` req/s per 5 s step on every flow (Samani &
//!   Stadler, seed 004 §IV) and writes the trace of the services the scenario's management
//!   objective manages: per step their offered and carried load, mean response time, routing
//!   shares and blocking (JSON). With `--lab`, the same with real processes on loopback in real
//!   time (`tools::lab::collect`): 5 s per step.
//! - `model train objective TRACE --out MODEL`: fits the objective planner's system model (one
//!   random forest per service, smartcore), prints its held-out error and writes it; name the
//!   file in `planner_settings.objective.model`.
//!
//! Bad input exits 64 naming the argument and the reason.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use loadshift_policy::planners::{
    ObjectiveSettings,
    objective::{
        model::{ForestParams, SystemModel, TraceStep},
        space::ManagedService,
    },
};
use loadshift_sim::{objective, scenario::Scenario};
use serde::{Deserialize, Serialize};

use crate::cmd::sim::objective::{TRAIN_SEED, TRAIN_STEPS, print_scores};

#[derive(Args, Debug)]
pub struct ModelArgs {
    #[command(subcommand)]
    cmd: ModelCmd,
}

#[derive(Subcommand, Debug)]
enum ModelCmd {
    /// Drive the twin with random actions under random-level load and write the trace.
    Collect {
        /// Scenario file; its `policy.management` names the services to manage.
        scenario: PathBuf,
        /// Steps of 5 s to record after the warm-up.
        #[arg(long, default_value_t = TRAIN_STEPS)]
        steps: usize,
        /// Seed of the run (arrivals, work, the random actions).
        #[arg(long, default_value_t = TRAIN_SEED)]
        seed: u64,
        /// Trace file to write (JSON).
        #[arg(long, default_value = "objective-trace.json")]
        out: PathBuf,
        /// Real processes on loopback (`loadshift lab`) instead of the simulator: 5 s of real
        /// time per step; the processes' configs and logs go to `<out>.run/`.
        #[arg(long)]
        lab: bool,
    },
    /// Fit a model on a trace.
    Train {
        #[command(subcommand)]
        kind: TrainCmd,
    },
}

#[derive(Subcommand, Debug)]
enum TrainCmd {
    /// The objective planner's system model: a random forest per service.
    Objective {
        /// Trace written by `model collect`.
        trace: PathBuf,
        /// Model file to write (JSON).
        #[arg(long, default_value = "objective-model.json")]
        out: PathBuf,
        /// Trees per forest.
        #[arg(long, default_value_t = ForestParams::default().trees)]
        trees: usize,
        /// Depth limit of a tree.
        #[arg(long, default_value_t = ForestParams::default().max_depth)]
        max_depth: u16,
        /// Fewest samples in a leaf.
        #[arg(long, default_value_t = ForestParams::default().min_samples_leaf)]
        min_samples_leaf: usize,
        /// Seed of the bootstrap samples and the train / test split.
        #[arg(long, default_value_t = ForestParams::default().seed)]
        seed: u64,
    },
}

/// The trace file.
#[derive(Serialize, Deserialize)]
struct TraceFile {
    scenario: String,
    seed: u64,
    services: Vec<ManagedService>,
    steps: Vec<TraceStep>,
}

pub fn main(args: ModelArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(crate::EXIT_CONFIG)
        }
    }
}

fn run(args: ModelArgs) -> anyhow::Result<()> {
    match args.cmd {
        ModelCmd::Collect {
            scenario,
            steps,
            seed,
            out,
            lab,
        } => {
            if steps == 0 {
                anyhow::bail!("--steps 0: must be at least 1");
            }
            let scn = Scenario::load(&scenario)
                .map_err(|e| anyhow::anyhow!("{}: {e}", scenario.display()))?;
            let bar = ProgressBar::new((steps as f64 * objective::STEP_S) as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "collect [{bar:40}] {pos}/{len} simulated s ({elapsed})",
                )
                .context("progress bar template")?
                .progress_chars("=> "),
            );
            let settings: ObjectiveSettings = scn.policy.planner_settings.objective.clone();
            let (services, trace) = if lab {
                bar.finish_and_clear();
                let mut dir = out.clone().into_os_string();
                dir.push(".run");
                let dir = PathBuf::from(dir);
                println!(
                    "collecting {steps} steps with real processes: about {:.0} s (their files: {})",
                    scn.warmup_s + steps as f64 * objective::STEP_S,
                    dir.display()
                );
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .context("starting the runtime")?;
                rt.block_on(async {
                    tokio::select! {
                        r = crate::tools::lab::collect::collect(&scn, steps, seed, &dir) => r,
                        _ = crate::signal::terminated() => {
                            anyhow::bail!("interrupted; all lab processes stopped")
                        }
                    }
                })
                .with_context(|| format!("{}: lab collection", scenario.display()))?
            } else {
                let r = objective::collect(&scn, steps, seed, &settings, &mut |t| {
                    bar.set_position(t as u64)
                })
                .map_err(|e| anyhow::anyhow!("{}: {e}", scenario.display()))?;
                bar.finish_and_clear();
                r
            };
            let file = TraceFile {
                scenario: scn.name.clone(),
                seed,
                services,
                steps: trace,
            };
            std::fs::write(&out, serde_json::to_string(&file)?)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "trace: {} steps of {} ({}) -> {}",
                file.steps.len(),
                file.scenario,
                file.services
                    .iter()
                    .map(|s| format!("{} on {}", s.name, s.hosts.join("+")))
                    .collect::<Vec<_>>()
                    .join(", "),
                out.display()
            );
            Ok(())
        }
        ModelCmd::Train {
            kind:
                TrainCmd::Objective {
                    trace,
                    out,
                    trees,
                    max_depth,
                    min_samples_leaf,
                    seed,
                },
        } => {
            if trees == 0 || max_depth == 0 || min_samples_leaf == 0 {
                anyhow::bail!("--trees, --max-depth and --min-samples-leaf must be at least 1");
            }
            let text = std::fs::read_to_string(&trace)
                .with_context(|| format!("reading {}", trace.display()))?;
            let file: TraceFile = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: not a trace written by `loadshift model collect`",
                    trace.display()
                )
            })?;
            let params = ForestParams {
                trees,
                max_depth,
                min_samples_leaf,
                seed,
                ..Default::default()
            };
            let started = std::time::Instant::now();
            let model = SystemModel::fit(file.services, &file.steps, params)
                .map_err(|e| anyhow::anyhow!("{}: {e}", trace.display()))?;
            println!(
                "trained on {} steps of {} in {:.1} s",
                file.steps.len(),
                file.scenario,
                started.elapsed().as_secs_f64()
            );
            print_scores(&model);
            std::fs::write(&out, model.to_json()?)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("model: {}", out.display());
            Ok(())
        }
    }
}
