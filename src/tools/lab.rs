//! `loadshift lab SCENARIO [--out DIR]`: the scenario with real processes on loopback.
//!
//! For each container of the (scaled-down, see [`layout`]) scenario a `loadshift app` and its
//! `loadshift proxy` sidecar; the real `loadshift control` with every service's planner and
//! static endpoints; a gateway proxy in front of the flows' entry services; and the open-loop
//! generator driving each flow's arrival process through the gateway. Hosts' interference
//! schedules become each app's interference multiplier (the scenario's interference model,
//! re-evaluated every second). Ports come from the OS; every child is killed when the lab exits,
//! fails or gets Ctrl-C / SIGTERM. The result is the simulator's report (`summary.json`,
//! `timeseries.csv`, `report.html`) written through `loadshift_sim::report`.
//!
//! Scenarios with inter-zone RTT get a zone relay in front of every container ([`relay`]), so
//! calls between zones really take that long. `--with-sim` also runs `loadshift sim` on the same
//! scenario and policies and shows its numbers beside the lab's.
//!
//! Scale decisions are carried out when a service has a scaler (the scenario's or `--scaler`):
//! the control plane's webhook actuator calls the lab ([`receiver`]), which starts and stops
//! app + sidecar replicas and publishes them through the control plane's file discovery, sets
//! the apps' concurrency from CPU limits, and browns out optional services ([`scaling`],
//! [`fleet`]). Without a scaler the containers stay at the scaled-down initial replicas.

pub mod collect;
pub mod configs;
pub mod delay_pipe;
pub mod fleet;
pub mod layout;
pub mod peer_zone;
pub mod receiver;
pub mod relay;
pub mod run;
pub mod scaling;
pub mod supervisor;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use loadshift_sim::report::Report;
use loadshift_sim::scenario::Scenario;

/// Arguments of `loadshift lab`.
#[derive(clap::Args, Debug)]
pub struct LabArgs {
    /// Scenario file (YAML; see `docs/scenarios.md`).
    pub scenario: PathBuf,
    /// Directory for the report and, under `run/`, every process's config and log.
    #[arg(long, default_value = "lab-out")]
    pub out: PathBuf,
    /// Planner for every service, overriding the scenario's (one run).
    #[arg(long, conflicts_with = "compare", long_help = crate::cmd::planner_help(
        "Planner for every service, overriding the scenario's (one run)."))]
    pub planner: Option<String>,
    /// Planners to run one after the other, each on fresh processes, into one report.
    /// Default: `round-robin,p2c-ewma,imbres-shift` (the baselines next to load shifting) and the
    /// scenario's own planner if it is another.
    #[arg(long, value_delimiter = ',', long_help = crate::cmd::planner_help(
        "Planners to run one after the other, each on fresh processes, into one report. Default: \
         round-robin, p2c-ewma and imbres-shift, and the scenario's own planner if it is another."))]
    pub compare: Vec<String>,
    /// Run for this many seconds instead of the scenario's duration.
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Service calls per second this machine carries (each crosses two proxies and an app);
    /// arrival rates are scaled down to fit.
    #[arg(long, default_value_t = 600.0)]
    pub hop_budget: f64,
    /// Most containers (app + sidecar pairs) the lab starts.
    #[arg(long, default_value_t = 40)]
    pub max_containers: usize,
    /// Also simulate the scenario (at its own scale, same duration, seed and policies) and show
    /// the simulator's numbers beside the lab's; its full report goes to `OUT/sim/`.
    #[arg(long)]
    pub with_sim: bool,
    /// Scaler for every service, overriding the scenario's.
    #[arg(long, long_help = crate::cmd::scaler_help(
        "Scaler for every service, overriding the scenario's."))]
    pub scaler: Option<String>,
    /// Scale loop period of the lab's control plane, seconds.
    #[arg(long, default_value_t = 15.0)]
    pub scale_interval_s: f64,
    /// Most containers per service a scaler may reach.
    #[arg(long, default_value_t = 4)]
    pub max_replicas: u32,
    /// HPA scale-down stabilisation window, seconds (Kubernetes: 300).
    #[arg(long, default_value_t = 300.0)]
    pub scale_down_window_s: f64,
}

/// Entry point of `loadshift lab`: exit 64 on an invalid scenario, 1 on a failed run.
pub fn main(args: LabArgs) -> ExitCode {
    let scenario = match Scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loadshift lab: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let layout = match layout::layout(&scenario, args.hop_budget, args.max_containers) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("loadshift lab: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadshift lab: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(lab(&args, &scenario, &layout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadshift lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Policies run when neither `--planner` nor `--compare` is given.
const DEFAULT_COMPARE: &[&str] = &["round-robin", "p2c-ewma", "imbres-shift"];

async fn lab(args: &LabArgs, s: &Scenario, layout: &layout::Layout) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("locate the loadshift binary")?;
    let mut owned = s.clone();
    let objective_model = objective_model(&args.out, &mut owned)?;
    let s: &Scenario = &owned;
    let duration = Duration::from_secs_f64(args.duration_s.unwrap_or(s.duration_s).max(1.0));
    let interval = Duration::from_secs_f64(s.report_interval_s.max(0.1));
    let policies: Vec<String> = match (&args.planner, args.compare.is_empty()) {
        (Some(p), _) => vec![p.clone()],
        (None, false) => args.compare.clone(),
        (None, true) => {
            let mut v: Vec<String> = DEFAULT_COMPARE.iter().map(|p| p.to_string()).collect();
            if !v.contains(&s.policy.planner) {
                v.push(s.policy.planner.clone());
            }
            v
        }
    };
    for p in &policies {
        loadshift_policy::planners::check(p)
            .map_err(|e| anyhow::anyhow!("--compare / --planner: {e}"))?;
    }
    if let Some(sc) = &args.scaler {
        loadshift_policy::scalers::build(sc).map_err(|e| anyhow::anyhow!("--scaler: {e}"))?;
    }
    let scaling_opts = scaling::ScalingOptions {
        scaler: args.scaler.clone(),
        interval: Duration::from_secs_f64(args.scale_interval_s.max(0.1)),
        max_replicas: args.max_replicas.max(1),
        max_containers: args.max_containers,
        scale_down_window: Duration::from_secs_f64(args.scale_down_window_s.max(0.0)),
    };
    eprintln!("{}", layout.describe());
    let mut runs = Vec::new();
    let mut relay_notes = Vec::new();
    let mut anr_notes = Vec::new();
    for (i, policy) in policies.iter().enumerate() {
        let dir = args.out.join("run").join(policy);
        eprintln!(
            "[{}/{}] {policy}: starting {} containers (app + sidecar), control plane and gateway in {}",
            i + 1,
            policies.len(),
            layout.containers.len(),
            dir.display()
        );
        // Fresh relays per run; bound before the processes start since endpoints point at them.
        let mut run_layout = layout.clone();
        let mut relays = relay::ZoneRelays::bind(s, &run_layout)?;
        if let Some(r) = &relays {
            r.route(&mut run_layout)?;
        }
        // Supervisor::start is blocking (it waits for listeners); the guards it returns, or the
        // ones already pushed when it fails, are dropped before this iteration ends.
        let mut scaling = scaling::Scaling::for_run(&scaling_opts, s, &dir).await?;
        let edit = scaling.as_ref().map(|sc| sc.control_edit(s));
        let start = {
            let (s, layout, dir, me, planner) = (
                s.clone(),
                run_layout.clone(),
                dir.clone(),
                me.clone(),
                policy.clone(),
            );
            tokio::task::spawn_blocking(move || {
                supervisor::Supervisor::start(&s, &layout, &dir, &me, Some(&planner), edit.as_ref())
            })
        };
        let mut sup = start.await??;
        if let Some(r) = &mut relays {
            let targets = sup
                .placed
                .iter()
                .map(|p| (p.spec.name.clone(), p.ports.inbound))
                .collect();
            r.start(&targets, interval)?;
        }
        if let Some(sc) = &mut scaling {
            let handle = relays.as_ref().and_then(relay::ZoneRelays::handle);
            sc.attach(s, &mut sup, &dir, &me, handle)?;
        }
        let tick = run::tick(interval, sup.control_interval);
        eprintln!(
            "running {} flows for {:.0} s",
            s.flows.len(),
            duration.as_secs_f64()
        );
        let epoch = scaling.as_mut().map(|sc| sc.start_counting(interval));
        let measured = tokio::select! {
            m = run::drive(s, &run_layout, &sup, relays.as_ref(), duration, interval, tick) => m?,
            _ = crate::signal::terminated() => anyhow::bail!("interrupted; all lab processes stopped"),
        };
        sup.check_alive()?;
        if let Some(sc) = &scaling {
            sc.check_alive()?;
        }
        let mut run = run::policy_run(
            s,
            &run_layout,
            &sup,
            &measured,
            policy,
            duration,
            interval,
            sup.control_interval,
        );
        if let Some(model) = &objective_model {
            let steps = run::objective_steps(s, &measured, &model.services);
            let mo = s
                .policy
                .management
                .as_ref()
                .expect("a model only with an objective");
            let scored = loadshift_policy::planners::objective::anr(
                model,
                mo,
                &loadshift_sim::objective::fallback_bounds(s),
                &s.policy.planner_settings.objective,
                &steps,
            )
            .map_err(|e| anyhow::anyhow!("ANR: {e}"))?;
            if let Some(a) = scored {
                anr_notes.push(format!(
                    "{policy}: ANR {:.3} over {} steps of {} s of the management objective ({}); \
                     d is the mean end-to-end latency of the successful requests of the \
                     flows through each service",
                    a.anr,
                    a.steps.len(),
                    loadshift_sim::objective::STEP_S,
                    mo.kind()
                ));
                run.summary.anr = Some(a.anr);
            }
        }
        runs.push(run);
        if let (Some(sc), Some(epoch), Some(run)) = (&mut scaling, epoch, runs.last_mut()) {
            let served = &measured.served;
            sc.finish(s, run, &sup.placed, served, epoch, interval, duration);
        }
        drop(scaling);
        drop(sup);
        if let Some(r) = relays.take() {
            relay_notes.extend(
                r.describe(duration)
                    .into_iter()
                    .map(|l| format!("{policy}: {l}")),
            );
        }
    }

    let mut report = Report {
        scenario: s.name.clone(),
        seed: s.seed,
        sla_scale: 1.0,
        source: "lab".into(),
        notes: vec![
            layout.describe(),
            format!(
                "lab run: {:.0} s of real time per policy, intervals of {:.1} s; each policy on fresh processes",
                duration.as_secs_f64(),
                interval.as_secs_f64()
            ),
            if scaling_opts.active(s) {
                format!(
                    "scale decisions carried out by the lab every {:.0} s: app + sidecar replicas \
                     started and stopped, at most {} per service; CPU limits as the apps' \
                     concurrency; brownout of optional services",
                    scaling_opts.interval.as_secs_f64(),
                    scaling_opts.max_replicas
                )
            } else {
                "no scaler: containers stay at the scaled-down replicas".into()
            },
            "plan_pushes: plan updates the control plane sent to proxies during the run \
             (loadshift_control_plan_pushes_total); converge_iterations: planner iterations \
             after the scenario's last change until the p95 holds within 5 % of its final value"
                .into(),
        ],
        runs,
        ..Report::default()
    };
    report.notes.extend(relay_notes);
    report.notes.extend(anr_notes);
    report.describe_scenario(s, duration.as_secs_f64(), layout.rate_scale);
    let sim = if args.with_sim {
        Some(with_sim(s, &policies, duration, objective_model.clone()).await?)
    } else {
        None
    };
    report
        .write_beside(&args.out, sim.as_ref())
        .with_context(|| format!("write the report to {}", args.out.display()))?;
    println!("{}", loadshift_sim::report::terminal_table(&report));
    if let Some(sim) = &sim {
        println!("{}", loadshift_sim::report::terminal_table(sim));
    }
    println!("report: {}", args.out.join("report.html").display());
    Ok(())
}

/// The objective planner's system model for a scenario with a management objective, as
/// `loadshift sim` finds or trains it ([`crate::cmd::sim::objective::load_or_train`], into
/// `OUT/objective-model.json`); its absolute path goes into the settings the lab's control plane
/// gets. It also scores each run's ANR.
fn objective_model(
    out: &std::path::Path,
    s: &mut Scenario,
) -> anyhow::Result<Option<std::sync::Arc<loadshift_policy::planners::objective::model::SystemModel>>>
{
    if s.policy.management.is_none() {
        return Ok(None);
    }
    let mut settings = s.policy.planner_settings.objective.clone();
    let model = crate::cmd::sim::objective::load_or_train(s, &mut settings, out)?;
    s.policy.planner_settings.objective = settings;
    Ok(Some(model))
}

/// `loadshift sim` on the same scenario, seed and policies, for `duration` (the lab's).
async fn with_sim(
    s: &Scenario,
    policies: &[String],
    duration: Duration,
    objective_model: Option<
        std::sync::Arc<loadshift_policy::planners::objective::model::SystemModel>,
    >,
) -> anyhow::Result<Report> {
    let mut scn = s.clone();
    if duration.as_secs_f64() > scn.warmup_s {
        scn.duration_s = duration.as_secs_f64();
    }
    let planners: Vec<Option<String>> = policies.iter().map(|p| Some(p.clone())).collect();
    eprintln!("simulating the same scenario for {:.0} s", scn.duration_s);
    let (mut report, _) = tokio::task::spawn_blocking(move || {
        loadshift_sim::compare(
            &scn,
            &planners,
            &loadshift_sim::SimOptions {
                objective_model,
                ..Default::default()
            },
            &mut |_, _| {},
        )
    })
    .await??;
    report.notes.push(
        "simulated at the scenario's own scale (all containers, full arrival rates); compare \
         directions and ratios with the lab, not absolute numbers"
            .into(),
    );
    Ok(report)
}
