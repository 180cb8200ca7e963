//! `loadshift sim`'s command line and the settings files it names.

use std::path::PathBuf;

use anyhow::Context;
use loadshift_policy::{planners::PlannerSettings, scalers::ScalerSettings};

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Scenario file (YAML, see docs/scenarios.md).
    pub scenario: PathBuf,
    /// Planner for every service (overrides the scenario's policy).
    #[arg(long, long_help = crate::cmd::planner_help(
        "Planner for every service (overrides the scenario's policy)."))]
    pub planner: Option<String>,
    /// Scaler for every service (overrides the scenario's policy).
    #[arg(long, long_help = crate::cmd::sim_scaler_help(
        "Scaler for every service (overrides the scenario's policy)."))]
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
    /// table_store, random_partial, inner_pick, objective); default: the scenario's. Without
    /// `objective.model`, a scenario with a management objective that `objective` or `random`
    /// runs on gets a model trained first (written to OUT/objective-model.json).
    #[arg(long)]
    pub planner_settings: Option<PathBuf>,
    /// YAML file of scaler tunables for every service (the `scaler_settings` section of the
    /// control config and the scenario: hpa); default: the scenario's.
    #[arg(long)]
    pub scaler_settings: Option<PathBuf>,
    /// Run several planners on the same seed into one report, e.g. `round-robin,p2c-ewma`.
    #[arg(long, value_delimiter = ',', long_help = crate::cmd::planner_help(
        "Run several planners on the same seed into one report, e.g. `round-robin,p2c-ewma`; an \
         entry may be `planner+scaler`."))]
    pub compare: Vec<String>,
    /// Compare scalers: one run per scaler, reported as `<planner>+<scaler>`, e.g.
    /// `imbres,hpa,hpa-best`; each with the balancer its source used (`imbres` with
    /// `imbres-connect`, the others with `round-robin`) unless --planner names one for all.
    /// `hpa-best` is the HPA at the target utilisation (0.4-0.8) with the fewest
    /// container-seconds within the SLA, chosen per seed.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["compare", "scaler", "oracle_host_split"],
        long_help = crate::cmd::sim_scaler_help(
            "Compare scalers: one run per scaler, reported as `<planner>+<scaler>`, each with the \
             balancer its source used (`imbres` with `imbres-connect`, the others with \
             `round-robin`) unless --planner names one for all."))]
    pub scalers: Vec<String>,
    /// Multiply every flow's SLA latency by this factor (< 1 stricter, > 1 slacker); finite, > 0.
    #[arg(long, default_value_t = 1.0, conflicts_with = "oracle_host_split")]
    pub sla_scale: f64,
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

/// `--planner-settings` and `--scaler-settings`, parsed and range-checked; `None` keeps the
/// scenario's.
pub struct Settings {
    pub planner: Option<PlannerSettings>,
    pub scaler: Option<ScalerSettings>,
}

impl Settings {
    /// Reads both files `args` names.
    pub fn read(args: &SimArgs) -> anyhow::Result<Settings> {
        read_settings(args)
    }
}

fn read_settings(args: &SimArgs) -> anyhow::Result<Settings> {
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
