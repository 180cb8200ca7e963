//! Several policies on one seed into one report (`loadshift sim --compare`, `--scalers`).
//!
//! An entry is a planner name (run with the options' scaler), `<planner>+<scaler>` (both picked
//! for that run, reported under exactly that key, `+none` included), or `None` for the
//! scenario's own choice. The scaler may be the pseudo-scaler [`hpa_best::NAME`], which runs
//! every target of [`hpa_best::TARGETS`] and reports the one [`hpa_best::pick`] keeps.

use std::borrow::Cow;

use loadshift_policy::scalers;

use crate::{
    Outcome, Policies, SimError, SimOptions,
    hpa_best::{self, Candidate, HpaBest},
    report::Report,
    run_with,
    scenario::Scenario,
};

/// One entry, resolved and ready to run.
enum Prepared {
    One(Policies),
    /// `hpa-best`: one `hpa` run per target, with its scenario (the HPA settings differ).
    HpaBest {
        name: String,
        candidates: Vec<(f64, Scenario, Policies)>,
    },
}

/// The scaler names the simulator accepts: the registry's and `hpa-best`.
pub fn known_scalers() -> Vec<&'static str> {
    let mut names = scalers::NAMES.to_vec();
    names.push(hpa_best::NAME);
    names
}

/// Refuses a scaler name neither the registry nor the simulator knows, listing those it does.
pub fn check_scaler(name: &str) -> Result<(), SimError> {
    if known_scalers().contains(&name) {
        Ok(())
    } else {
        Err(SimError::UnknownScaler {
            name: name.to_string(),
            known: known_scalers().join(", "),
        })
    }
}

/// The scenario with the options' SLA scale applied (borrowed when it is 1).
pub(crate) fn scaled<'a>(s: &'a Scenario, o: &SimOptions) -> Result<Cow<'a, Scenario>, SimError> {
    let f = o.sla_scale;
    if !(f.is_finite() && f > 0.0) {
        return Err(SimError::SlaScale(f));
    }
    if f == 1.0 {
        return Ok(Cow::Borrowed(s));
    }
    let mut s = s.clone();
    s.scale_sla(f);
    Ok(Cow::Owned(s))
}

/// The planner and scaler an entry picks, and the key it is reported under when the entry
/// fixes one.
fn choice(s: &Scenario, entry: Option<&str>, o: &SimOptions) -> (SimOptions, Option<String>) {
    let (planner, scaler, mut name) = match entry.map(|e| (e, e.split_once('+'))) {
        Some((e, Some((pl, sc)))) => (Some(pl.to_string()), Some(sc.to_string()), Some(e.into())),
        Some((e, None)) => (Some(e.to_string()), o.scaler.clone(), None),
        None => (o.planner.clone(), o.scaler.clone(), None),
    };
    if name.is_none() && scaler.as_deref() == Some(hpa_best::NAME) {
        let planner = planner.as_deref().unwrap_or(&s.policy.planner);
        name = Some(format!("{planner}+{}", hpa_best::NAME));
    }
    (
        SimOptions {
            planner,
            scaler,
            ..o.clone()
        },
        name,
    )
}

fn prepare(s: &Scenario, entry: Option<&str>, o: &SimOptions) -> Result<Prepared, SimError> {
    let (opts, name) = choice(s, entry, o);
    if let Some(sc) = &opts.scaler {
        check_scaler(sc)?;
    }
    if opts.scaler.as_deref() == Some(hpa_best::NAME) {
        let candidates = hpa_best::TARGETS
            .iter()
            .map(|&t| {
                let (cs, co) = hpa_best::candidate(s, &opts, t);
                let p = Policies::resolve(&cs, &co)?;
                Ok((t, cs, p))
            })
            .collect::<Result<Vec<_>, SimError>>()?;
        return Ok(Prepared::HpaBest {
            name: name.unwrap_or_else(|| hpa_best::NAME.into()),
            candidates,
        });
    }
    let mut p = Policies::resolve(s, &opts)?;
    if let Some(n) = name {
        p.name = n;
    }
    Ok(Prepared::One(p))
}

/// Simulation runs `compare` makes for these entries (`hpa-best` makes one per target), for a
/// progress bar.
pub fn run_count(s: &Scenario, planners: &[Option<String>], o: &SimOptions) -> usize {
    planners
        .iter()
        .map(|p| match choice(s, p.as_deref(), o).0.scaler.as_deref() {
            Some(hpa_best::NAME) => hpa_best::TARGETS.len(),
            _ => 1,
        })
        .sum()
}

/// Runs several policies on the same seed into one report (`--compare`). Each entry is a planner
/// name or `planner+scaler`; `None` is the scenario's own choice (with its per-service overrides).
/// `progress` gets the run's label (its policy; `hpa-best` candidates add their target) and the
/// simulated seconds reached.
pub fn compare(
    s: &Scenario,
    planners: &[Option<String>],
    o: &SimOptions,
    progress: &mut dyn FnMut(&str, f64),
) -> Result<(Report, Vec<Outcome>), SimError> {
    let seed = o.seed.unwrap_or(s.seed);
    let s_scaled = scaled(s, o)?;
    let s: &Scenario = &s_scaled;
    // Resolve everything first so a typo fails before minutes of simulation.
    let prepared = planners
        .iter()
        .map(|p| prepare(s, p.as_deref(), o))
        .collect::<Result<Vec<_>, _>>()?;
    let mut outcomes = Vec::new();
    for p in prepared {
        match p {
            Prepared::One(p) => {
                let name = p.name.clone();
                outcomes.push(run_with(s, seed, p, &mut |t| progress(&name, t)));
            }
            Prepared::HpaBest { name, candidates } => {
                outcomes.push(run_hpa_best(name, seed, candidates, progress));
            }
        }
    }
    let anr_notes = score_objective(s, o, &mut outcomes)?;
    let mut report = Report {
        scenario: s.name.clone(),
        seed,
        sla_scale: o.sla_scale,
        source: "sim".into(),
        notes: vec![format!(
            "Simulated {} s (warm-up {} s), {} services, {} containers, {} hosts.",
            s.duration_s,
            s.warmup_s,
            s.services.len(),
            s.container_count(),
            s.hosts.len()
        )],
        runs: Vec::new(),
        ..Report::default()
    };
    if !s.description.is_empty() {
        report.notes.insert(0, s.description.clone());
    }
    report.describe_scenario(s, s.duration_s, 1.0);
    if o.sla_scale != 1.0 {
        report.notes.push(format!(
            "Every flow's SLA latency multiplied by {} (--sla-scale).",
            o.sla_scale
        ));
    }
    report.notes.extend(anr_notes);
    for o in &outcomes {
        report.notes.push(o.connections_note());
        if let Some(h) = &o.hpa_best {
            report.notes.push(h.line());
        }
        if o.plan_rejections > 0 {
            report.notes.push(format!(
                "{}: {} plans refused by validation",
                o.run.policy, o.plan_rejections
            ));
        }
        if let Some(r) = o.refusals.first() {
            report.notes.push(format!(
                "{}: {} scale decisions refused by the simulated actuator, the first: {}",
                o.run.policy,
                o.refusals.len(),
                r.error
            ));
        }
        report.runs.push(o.run.clone());
    }
    Ok((report, outcomes))
}

/// With a management objective and [`SimOptions::objective_model`]: every run's ANR (seed 004
/// eq. 6) into its summary, and a note per run.
fn score_objective(
    s: &Scenario,
    o: &SimOptions,
    outcomes: &mut [Outcome],
) -> Result<Vec<String>, SimError> {
    let (Some(model), Some(_)) = (&o.objective_model, &s.policy.management) else {
        return Ok(Vec::new());
    };
    let settings = o
        .planner_settings
        .as_ref()
        .unwrap_or(&s.policy.planner_settings)
        .objective
        .clone();
    let mut notes = Vec::new();
    for out in outcomes.iter_mut() {
        let a = crate::objective::anr(s, model, &settings, &out.steps)
            .map_err(|e| SimError::Objective(e.to_string()))?;
        if let Some(a) = a {
            notes.push(format!(
                "{}: ANR {:.3} over {} steps of the management objective ({})",
                out.run.policy,
                a.anr,
                a.steps.len(),
                s.policy.management.as_ref().map_or("", |m| m.kind())
            ));
            out.run.summary.anr = Some(a.anr);
            out.anr = Some(a);
        }
    }
    Ok(notes)
}

/// Runs every candidate and keeps the chosen one, reported as `name` with its target.
fn run_hpa_best(
    name: String,
    seed: u64,
    candidates: Vec<(f64, Scenario, Policies)>,
    progress: &mut dyn FnMut(&str, f64),
) -> Outcome {
    let mut outs: Vec<Outcome> = candidates
        .into_iter()
        .map(|(t, cs, p)| {
            let label = format!("{name} target {t}");
            run_with(&cs, seed, p, &mut |x| progress(&label, x))
        })
        .collect();
    let tried: Vec<Candidate> = hpa_best::TARGETS
        .iter()
        .zip(&outs)
        .map(|(&target, o)| Candidate {
            target,
            container_seconds: o.run.summary.container_seconds,
            sla_violation_pct: o.run.summary.sla_violation_pct,
        })
        .collect();
    // `pick` is `None` only for no candidates, and there is one per target of a non-empty list.
    let chosen = hpa_best::pick(&tried).expect("hpa_best::TARGETS is not empty");
    let mut o = outs.swap_remove(chosen);
    o.run.policy = name.clone();
    o.run.summary.hpa_target = Some(tried[chosen].target);
    o.hpa_best = Some(HpaBest {
        policy: name,
        seed,
        candidates: tried,
        chosen,
    });
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(_: &str, _: f64) {}

    /// One queue with constant 10 ms work and evenly spaced arrivals at 390/s: 3.9 containers'
    /// worth of work, so the HPA settles near ceil(3.9 / target) containers (10, 8, 7, 6, 5 for
    /// targets 0.4 ... 0.8): the higher the target, the fewer containers and the more queueing.
    fn tuning(sla_ms: f64) -> Scenario {
        let yaml = format!(
            "name: tune
duration_s: 120
warmup_s: 30
hosts: [{{name: h, cores: 64}}]
services:
  - {{name: q, service_time: {{dist: constant, mean_ms: 10}}, replicas: {{h: 5}}}}
flows:
  - {{name: f, entry: q, arrival: {{process: constant, rate: 390}}, sla: {{latency_ms: {sla_ms}}}, timeout_ms: 1e9}}
policy:
  scaler_settings: {{hpa: {{interval_ms: 5000, scale_down_stabilization_ms: 0}}}}
"
        );
        Scenario::parse(&yaml, None).unwrap()
    }

    #[test]
    fn scaler_entries_are_keyed_planner_plus_scaler_with_the_comparison_figures() {
        let mut s = tuning(1000.0);
        s.duration_s = 40.0;
        let entries = [Some("p2c-ewma+hpa".into()), Some("p2c-ewma+none".into())];
        let (report, outs) = compare(&s, &entries, &SimOptions::default(), &mut quiet).unwrap();
        let names: Vec<&str> = report.runs.iter().map(|r| r.policy.as_str()).collect();
        assert_eq!(names, ["p2c-ewma+hpa", "p2c-ewma+none"]);
        let v: serde_json::Value = serde_json::from_str(&report.summary_json().unwrap()).unwrap();
        for name in names {
            let p = &v["policies"][name];
            for k in [
                "mean_ms",
                "p90_ms",
                "p95_ms",
                "container_seconds",
                "sla_violation_pct",
            ] {
                assert!(p[k].is_number(), "{name}: {k} missing in {p}");
            }
            let f = |k: &str| p[k].as_f64().unwrap();
            assert!(
                f("p50_ms") <= f("p90_ms") && f("p90_ms") <= f("p95_ms"),
                "{p}"
            );
            assert!(f("mean_ms") >= 10.0, "{p}");
            assert!(p.get("hpa_target").is_none());
        }
        // Five containers on 3.9 containers' work: the HPA adds some, `none` keeps five.
        assert_eq!(outs[1].run.summary.container_seconds, 5.0 * 10.0);
        assert!(outs[0].run.summary.container_seconds > 5.0 * 10.0);
        assert!(outs[0].scale_decisions.iter().any(|d| d.to > 5));
        // The scenario's own planner, or a scaler given on its own, keeps the old key.
        let (report, _) = compare(
            &s,
            &[Some("even".into())],
            &SimOptions {
                scaler: Some("hpa".into()),
                ..Default::default()
            },
            &mut quiet,
        )
        .unwrap();
        assert_eq!(report.runs[0].policy, "even+hpa");
    }

    #[test]
    fn unknown_scalers_fail_before_anything_runs() {
        let s = tuning(1000.0);
        let mut ran = false;
        let e = compare(
            &s,
            &[Some("p2c-ewma+hpa".into()), Some("p2c-ewma+magic".into())],
            &SimOptions::default(),
            &mut |_, _| ran = true,
        )
        .unwrap_err()
        .to_string();
        assert!(!ran);
        assert!(e.contains("\"magic\"") && e.contains("hpa-best"), "{e}");
        assert!(check_scaler("hpa-best").is_ok() && check_scaler("none").is_ok());
    }

    /// `hpa-best` on a slack SLA keeps the target with the fewest container-seconds (every
    /// target is within it), on an SLA no target meets the one with the fewest violations; in
    /// both the report carries the chosen run under `<planner>+hpa-best` with its target.
    #[test]
    fn hpa_best_keeps_the_fewest_containers_within_the_sla() {
        let s = tuning(1000.0);
        let mut labels = Vec::new();
        let (report, outs) = compare(
            &s,
            &[Some("p2c-ewma+hpa-best".into())],
            &SimOptions::default(),
            &mut |l, _| {
                if labels.last().is_none_or(|x: &String| x != l) {
                    labels.push(l.to_string());
                }
            },
        )
        .unwrap();
        assert_eq!(
            labels,
            hpa_best::TARGETS.map(|t| format!("p2c-ewma+hpa-best target {t}"))
        );
        assert_eq!(
            run_count(&s, &[Some("p+hpa-best".into())], &SimOptions::default()),
            5
        );
        let h = outs[0].hpa_best.as_ref().unwrap();
        let cs: Vec<f64> = h.candidates.iter().map(|c| c.container_seconds).collect();
        assert!(
            h.candidates.iter().all(|c| c.sla_violation_pct <= 5.0),
            "{h:?}"
        );
        // The target matters: the lowest runs strictly more containers than the highest.
        assert!(cs[0] > cs[4], "{cs:?}");
        let least = cs.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(h.candidates[h.chosen].container_seconds, least, "{h:?}");
        // Seed 1 settles at 10, 8, 7, 6 containers for 0.4 ... 0.7 and 5-6 for 0.8.
        assert_eq!(h.target(), 0.8, "{h:?}");
        let run = &report.runs[0];
        assert_eq!(run.policy, "p2c-ewma+hpa-best");
        assert_eq!(run.summary.hpa_target, Some(h.target()));
        assert_eq!(run.summary.container_seconds, least);
        assert!(report.notes.iter().any(|n| n.starts_with(&format!(
            "p2c-ewma+hpa-best on seed 1: target {}",
            h.target()
        ))));

        // 10.5 ms against 10 ms of work: a request that waits at all misses it, so no target
        // stays within 5 % and the most containers (the lowest target) wait least.
        let strict = SimOptions {
            sla_scale: 0.0105,
            ..Default::default()
        };
        let (report, outs) =
            compare(&s, &[Some("p2c-ewma+hpa-best".into())], &strict, &mut quiet).unwrap();
        let h = outs[0].hpa_best.as_ref().unwrap();
        assert!(
            h.candidates.iter().all(|c| c.sla_violation_pct > 5.0),
            "{h:?}"
        );
        assert_eq!(h.target(), 0.4, "{h:?}");
        assert_eq!(report.runs[0].summary.hpa_target, Some(0.4));
        assert!(h.line().contains("the fewest violations"), "{}", h.line());
    }

    #[test]
    fn sla_scale_tightens_the_sla_and_is_reported() {
        let mut s = tuning(15.0);
        s.duration_s = 40.0;
        let go = |f: f64| {
            compare(
                &s,
                &[Some("p2c-ewma+none".into())],
                &SimOptions {
                    sla_scale: f,
                    ..Default::default()
                },
                &mut quiet,
            )
        };
        let (plain, _) = go(1.0).unwrap();
        let (strict, _) = go(0.5).unwrap();
        // Half of 15 ms is below the 10 ms of work: every request misses it.
        assert_eq!(strict.runs[0].summary.sla_violation_pct, 100.0);
        assert!(plain.runs[0].summary.sla_violation_pct < 100.0);
        assert_eq!(strict.sla_scale, 0.5);
        let v: serde_json::Value = serde_json::from_str(&strict.summary_json().unwrap()).unwrap();
        assert_eq!(v["sla_scale"], 0.5);
        assert!(strict.notes.iter().any(|n| n.contains("--sla-scale")));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = go(bad).unwrap_err().to_string();
            assert!(e.starts_with("sla_scale"), "{e}");
        }
    }
}
