//! The objective planner's model for `loadshift sim`: read from the file the planner settings
//! name, or trained first (random actions under random-level load in the twin, the paper's
//! procedure) and written beside the report as `objective-model.json`, so a comparison of
//! `objective` and `random` needs nothing prepared. The model also scores every run's ANR.

use std::{path::Path, sync::Arc};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use loadshift_policy::planners::{
    ObjectiveSettings,
    objective::model::{ForestParams, SystemModel},
};
use loadshift_sim::{objective, scenario::Scenario};

use super::{SimArgs, args::Settings, entries};

/// Planners that need the model.
const USERS: &[&str] = &["objective", "random"];

/// Steps of 5 s the model is trained on when none is named (20,000 simulated seconds).
pub const TRAIN_STEPS: usize = 4000;

/// Seed of the training run: apart from any evaluation seed.
pub const TRAIN_SEED: u64 = 1_000_003;

/// The model for this run, if the scenario has a management objective and a run uses
/// `objective` or `random`; sets `planner_settings.objective.model` to the file it came from.
pub fn prepare(
    args: &SimArgs,
    scn: &mut Scenario,
    settings: &mut Settings,
    out: &Path,
) -> anyhow::Result<Option<Arc<SystemModel>>> {
    if scn.policy.management.is_none() {
        return Ok(None);
    }
    let mut names: Vec<String> = entries(args)
        .into_iter()
        .flatten()
        .map(|e| e.split('+').next().unwrap_or("").to_string())
        .collect();
    names.extend(args.planner.clone());
    if args.planner.is_none() && args.compare.is_empty() {
        names.extend(
            scn.services
                .iter()
                .map(|s| scn.planner_for(&s.name).to_string()),
        );
    }
    if !names.iter().any(|n| USERS.contains(&n.as_str())) {
        return Ok(None);
    }
    let ps = settings
        .planner
        .get_or_insert_with(|| scn.policy.planner_settings.clone());
    load_or_train(scn, &mut ps.objective, out).map(Some)
}

/// The model `settings.model` names, read; or one trained on `scn` (random actions under
/// random-level load in the twin, [`TRAIN_STEPS`] steps, seed [`TRAIN_SEED`]) and written to
/// `out/objective-model.json`. Either way `settings.model` ends up an absolute path, which a
/// control plane started elsewhere (the lab's) can open too.
pub fn load_or_train(
    scn: &Scenario,
    settings: &mut ObjectiveSettings,
    out: &Path,
) -> anyhow::Result<Arc<SystemModel>> {
    if let Some(path) = &settings.model {
        settings.model = Some(std::path::absolute(path).context("the model file's path")?);
        let m = settings
            .load_model()
            .map_err(|e| anyhow::anyhow!("planner_settings.{e}"))?;
        return Ok(Arc::new(m));
    }
    println!(
        "no model named (planner_settings.objective.model): training one on {} \
         ({TRAIN_STEPS} steps of random actions under random-level load, seed {TRAIN_SEED})",
        scn.name
    );
    let bar = ProgressBar::new((TRAIN_STEPS as f64 * objective::STEP_S) as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>24} [{bar:40}] {pos}/{len} simulated s ({elapsed})")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    bar.set_prefix("collect");
    let model = objective::train(
        scn,
        TRAIN_STEPS,
        TRAIN_SEED,
        settings,
        ForestParams::default(),
        &mut |t| bar.set_position(t as u64),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.finish_and_clear();
    print_scores(&model);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path =
        std::path::absolute(out.join("objective-model.json")).context("the model file's path")?;
    std::fs::write(&path, model.to_json()?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("model: {}", path.display());
    settings.model = Some(path);
    Ok(Arc::new(model))
}

/// One line per service: the forest's held-out error.
pub fn print_scores(model: &SystemModel) {
    for s in &model.scores {
        println!(
            "model {}: held out {} of {} steps: R^2 (ln d) {:.3}, MAE {:.1} ms, median relative error {:.1} %",
            s.service,
            s.test_samples,
            s.test_samples + s.train_samples,
            s.r2_log,
            s.mae_ms,
            100.0 * s.median_rel_error
        );
    }
}

/// `steps.csv` beside the report: per run, step and service what was offered and carried, the
/// mean response time, the routing shares and blocking in force, and the step's normalised
/// reward where the run was scored. Nothing when no run kept a step log.
pub fn write_steps(dir: &Path, outcomes: &[loadshift_sim::Outcome]) -> anyhow::Result<()> {
    if outcomes.iter().all(|o| o.steps.is_empty()) {
        return Ok(());
    }
    let mut csv =
        String::from("policy,t_s,service,offered_rps,carried_rps,mean_ms,block,shares,nr\n");
    for o in outcomes {
        let nr: std::collections::BTreeMap<u64, f64> = o
            .anr
            .iter()
            .flat_map(|a| &a.steps)
            .map(|s| ((s.t_s * 1e3).round() as u64, s.obtained / s.optimal))
            .collect();
        for step in &o.steps {
            let key = (step.t_s * 1e3).round() as u64;
            for (svc, x) in &step.services {
                let shares: Vec<String> = x
                    .host_shares
                    .iter()
                    .map(|(h, w)| format!("{h}={w:.3}"))
                    .collect();
                csv.push_str(&format!(
                    "{},{:.3},{},{:.3},{:.3},{},{:.3},{},{}\n",
                    o.run.policy,
                    step.t_s,
                    svc,
                    x.offered_rps,
                    x.carried_rps,
                    x.mean_ms.map_or(String::new(), |d| format!("{d:.2}")),
                    x.block,
                    shares.join(";"),
                    nr.get(&key).map_or(String::new(), |v| format!("{v:.4}")),
                ));
            }
        }
    }
    let path = dir.join("steps.csv");
    std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))
}
