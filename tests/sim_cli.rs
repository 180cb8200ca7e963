//! `loadshift sim` end to end: the real binary on a shipped scenario writes the three report
//! files, is deterministic for a seed, reports from when the SLA is met and per flow, compares
//! scalers (`--scalers`, `hpa-best`, `--sla-scale`) and refuses bad input with exit code 64.

use std::{path::PathBuf, process::Command};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loadshift"))
}

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("loadshift-sim-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn sim(out: &PathBuf, extra: &[&str]) -> std::process::Output {
    let mut c = bin();
    c.arg("sim")
        .arg(scenario("imbalance.yaml"))
        .args(["--duration", "30", "--out"])
        .arg(out)
        .args(extra);
    c.output().expect("loadshift sim runs")
}

#[test]
fn compare_writes_one_report_for_every_policy() {
    let out = tmp("compare");
    let o = sim(&out, &["--compare", "round-robin,p2c-ewma", "--bench"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("round-robin") && stdout.contains("p2c-ewma"),
        "{stdout}"
    );
    assert!(stdout.contains("requests/s"), "{stdout}");
    assert!(
        stdout.contains("p2c-ewma: ") && stdout.contains("connections"),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["scenario"], "imbalance");
    let policies = summary["policies"].as_object().unwrap();
    assert_eq!(policies.len(), 2);
    assert!(policies["round-robin"]["requests"].as_u64().unwrap() > 3_000);
    let csv = std::fs::read_to_string(out.join("timeseries.csv")).unwrap();
    assert!(csv.starts_with("policy,t_s,metric,service,host,value\n"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("p2c-ewma"));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn same_seed_same_summary() {
    let (a, b) = (tmp("det-a"), tmp("det-b"));
    assert!(
        sim(&a, &["--planner", "imbres-shift", "--seed", "5"])
            .status
            .success()
    );
    assert!(
        sim(&b, &["--planner", "imbres-shift", "--seed", "5"])
            .status
            .success()
    );
    let read = |d: &PathBuf| std::fs::read_to_string(d.join("summary.json")).unwrap();
    assert_eq!(read(&a), read(&b));
    assert_eq!(
        std::fs::read_to_string(a.join("timeseries.csv")).unwrap(),
        std::fs::read_to_string(b.join("timeseries.csv")).unwrap()
    );
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn seeds_summarise_mean_and_spread_per_policy() {
    let out = tmp("seeds");
    let cfg = tmp("seeds-cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    let settings = cfg.join("planner.yaml");
    std::fs::write(&settings, "shift: { eta: 0.3 }\n").unwrap();
    let o = sim(
        &out,
        &[
            "--compare",
            "round-robin,imbres-shift",
            "--seeds",
            "2",
            "--seed",
            "7",
            "--planner-settings",
            settings.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}");
    assert!(
        stdout.contains("p95 imbres-shift / round-robin:"),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["seeds"], serde_json::json!([7, 8]));
    let policies = summary["policies"].as_object().unwrap();
    assert_eq!(policies.len(), 2, "{summary}");
    let p95 = &policies["imbres-shift"]["p95_ms"];
    assert_eq!(p95["values"].as_array().unwrap().len(), 2);
    assert!(p95["mean"].as_f64().unwrap() > 0.0);
    for p in policies.values() {
        let met = &p["sla_met_at_s"]["values"].as_array().unwrap().len();
        let never = p["sla_never_met"].as_u64().unwrap() as usize;
        assert_eq!(met + never, 2, "{p}");
        let social = &p["flows"]["social"]["p95_ms"]["values"];
        assert_eq!(social.as_array().map(Vec::len), Some(2), "{p}");
    }
    for seed in [7, 8] {
        let d = out.join(format!("seed-{seed}"));
        assert!(d.join("summary.json").exists() && d.join("report.html").exists());
    }
    assert!(
        std::fs::read_to_string(out.join("report.html"))
            .unwrap()
            .contains("seed-8/report.html")
    );

    std::fs::write(&settings, "shift: { eta: -1 }\n").unwrap();
    let o = sim(&out, &["--planner-settings", settings.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("eta"));
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&cfg).unwrap();
}

#[test]
fn bad_input_exits_64_naming_the_problem() {
    let dir = tmp("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(scenario("imbalance.yaml"))
        .unwrap()
        .replace("service: post-storage", "service: ratings");
    std::fs::write(dir.join("bad.yaml"), text).unwrap();
    let o = bin().arg("sim").arg(dir.join("bad.yaml")).output().unwrap();
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("calls[0].service: \"ratings\" is not a declared service"),
        "{err}"
    );

    let o = sim(&dir.join("out"), &["--planner", "no-such-planner"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-planner"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `sla_met_at_s` in summary.json and the table: `null` (`-`) for the cold start left at a
/// quarter of its containers, a time within the run for `imbalance` at its 60 containers.
#[test]
fn summary_says_from_when_the_sla_is_met() {
    let out = tmp("cold");
    let o = bin()
        .arg("sim")
        .arg(scenario("imbalance-cold.yaml"))
        .args(["--duration", "30", "--out"])
        .arg(&out)
        .output()
        .expect("loadshift sim runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("SLA met s"), "{stdout}");
    let read = |d: &PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap()
    };
    let cold = read(&out);
    assert_eq!(cold["scenario"], "imbalance-cold");
    let p = &cold["policies"]["round-robin"];
    assert!(p.get("sla_met_at_s").is_some_and(|v| v.is_null()), "{p}");

    let warm_out = tmp("warm");
    assert!(sim(&warm_out, &[]).status.success());
    let warm = read(&warm_out);
    let p = &warm["policies"]["round-robin"];
    let t = p["sla_met_at_s"].as_f64().unwrap_or_else(|| panic!("{p}"));
    assert!((0.0..30.0).contains(&t), "{p}");
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&warm_out).unwrap();
}

/// `flows` in summary.json, one entry per flow of `hotel` adding up to the policy's requests,
/// and the per-flow block after the terminal table.
#[test]
fn summary_reports_every_flow() {
    let out = tmp("flows");
    let o = bin()
        .arg("sim")
        .arg(scenario("hotel.yaml"))
        .args(["--duration", "25", "--out"])
        .arg(&out)
        .output()
        .expect("loadshift sim runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let p = &v["policies"]["p2c-ewma"];
    let flows = p["flows"].as_object().unwrap_or_else(|| panic!("{p}"));
    let names: Vec<&str> = flows.keys().map(String::as_str).collect();
    assert_eq!(names, ["login", "recommend", "reserve", "search"], "{p}");
    let mut requests = 0;
    for (name, f) in flows {
        for k in ["mean_ms", "p90_ms", "p95_ms", "sla_violation_pct"] {
            assert!(f[k].is_number(), "{name}.{k}: {f}");
        }
        requests += f["requests"].as_u64().unwrap();
    }
    assert_eq!(Some(requests), p["requests"].as_u64(), "{p}");
    assert!(stdout.contains("SLA viol %"), "{stdout}");
    let block: Vec<&str> = stdout.lines().skip_while(|l| !l.contains("flow")).collect();
    assert!(
        block.len() >= 6 && block[2].starts_with("p2c-ewma  login"),
        "{stdout}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<td>p2c-ewma</td><td>reserve</td>"));
    std::fs::remove_dir_all(&out).unwrap();
}

/// The figures a scaler comparison reads, per policy.
const SCALER_FIELDS: [&str; 5] = [
    "mean_ms",
    "p90_ms",
    "p95_ms",
    "container_seconds",
    "sla_violation_pct",
];

#[test]
fn scalers_run_under_one_planner_keyed_planner_plus_scaler() {
    let out = tmp("scalers");
    let o = sim(
        &out,
        &[
            "--scalers",
            "hpa,none,hpa-best,imbres",
            "--seeds",
            "2",
            "--seed",
            "7",
            "--sla-scale",
            "0.8",
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Each with its source's balancer: imbres with its own shifting and grouping.
    let keys = [
        "round-robin+hpa",
        "round-robin+none",
        "round-robin+hpa-best",
        "imbres-connect+imbres",
    ];
    for seed in [7, 8] {
        assert!(
            stdout.contains(&format!("round-robin+hpa-best on seed {seed}: target "))
                && stdout.contains("candidates: 0.4 ("),
            "{stdout}"
        );
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("seed-{seed}/summary.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(v["sla_scale"], 0.8);
        let policies = v["policies"].as_object().unwrap();
        assert_eq!(policies.len(), 4, "{v}");
        for k in keys {
            for f in SCALER_FIELDS {
                assert!(policies[k][f].is_number(), "seed {seed} {k}.{f}: {v}");
            }
        }
        let target = policies["round-robin+hpa-best"]["hpa_target"]
            .as_f64()
            .unwrap();
        assert!([0.4, 0.5, 0.6, 0.7, 0.8].contains(&target), "{target}");
        assert!(policies["round-robin+hpa"].get("hpa_target").is_none());
    }
    let top: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(top["sla_scale"], 0.8);
    // Keyed `<planner>+<scaler>` as on each seed, in the order they ran.
    let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
    let at: Vec<usize> = keys
        .iter()
        .map(|k| text.find(&format!("\"{k}\": {{")).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    let policies = top["policies"].as_object().unwrap();
    assert_eq!(policies.len(), 4, "{top}");
    for k in keys {
        for f in SCALER_FIELDS {
            let p = &policies[k];
            assert_eq!(p[f]["values"].as_array().unwrap().len(), 2, "{k}.{f}: {p}");
        }
    }
    assert_eq!(
        policies["round-robin+hpa-best"]["hpa_target"]["values"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn bad_scalers_and_sla_scales_exit_64_before_simulating() {
    let out = tmp("bad-scalers");
    for (extra, want) in [
        (&["--scalers", "hpa,bogus"][..], "unknown scaler \"bogus\""),
        (&["--scalers", "hpa,hpa"][..], "\"hpa\" is listed twice"),
        (&["--compare", "round-robin+bogus"][..], "\"bogus\""),
        (
            &["--sla-scale", "0"][..],
            "--sla-scale 0: must be a finite number > 0",
        ),
        (&["--sla-scale=-1"][..], "--sla-scale -1"),
        (&["--sla-scale", "NaN"][..], "--sla-scale NaN"),
    ] {
        let o = sim(&out, extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: {err}");
        assert!(!out.exists(), "{extra:?} wrote a report");
    }
    // The message lists the scalers there are, `hpa-best` included.
    let o = sim(&out, &["--scalers", "bogus"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("known scalers: ") && err.contains("hpa-best"),
        "{err}"
    );
}

fn run_ok(c: &mut Command) -> String {
    let o = c.output().expect("loadshift runs");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

/// The acceptance command of the objective planner: with nothing prepared a model is trained
/// first, both policies are scored by ANR, the step log is written; `model collect` and `model
/// train objective` make a model that `--planner-settings` then names, and bad input exits 64.
#[test]
fn objective_and_random_are_scored_by_anr_with_nothing_prepared() {
    let out = tmp("objective");
    let stdout = run_ok(
        bin()
            .arg("sim")
            .arg(scenario("mesh-two-services-sin.yaml"))
            .args(["--compare", "objective,random", "--duration", "60", "--out"])
            .arg(&out),
    );
    assert!(
        stdout.contains("training one on mesh-two-services-sin"),
        "{stdout}"
    );
    assert!(stdout.contains("model s1: held out"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let anr = |p: &str| v["policies"][p]["anr"].as_f64().unwrap_or(-1.0);
    assert!(anr("objective") > 0.0 && anr("random") > 0.0, "{v}");
    // Random actions block half the requests on average: far from the best action.
    assert!(anr("objective") > anr("random"), "{v}");
    assert!(out.join("objective-model.json").exists());
    let steps = std::fs::read_to_string(out.join("steps.csv")).unwrap();
    assert!(
        steps.starts_with("policy,t_s,service,offered_rps"),
        "{steps}"
    );
    assert!(
        steps
            .lines()
            .any(|l| l.starts_with("random,") && l.contains(",s2,"))
    );

    let trace = out.join("trace.json");
    let stdout = run_ok(
        bin()
            .args(["model", "collect"])
            .arg(scenario("mesh-two-services.yaml"))
            .args(["--steps", "200", "--out"])
            .arg(&trace),
    );
    assert!(stdout.contains("s1 on n1+n2, s2 on n1+n2"), "{stdout}");
    let model = out.join("model.json");
    let stdout = run_ok(
        bin()
            .args(["model", "train", "objective"])
            .arg(&trace)
            .args(["--trees", "10", "--out"])
            .arg(&model),
    );
    assert!(stdout.contains("model s2: held out"), "{stdout}");
    let settings = out.join("settings.yaml");
    std::fs::write(
        &settings,
        format!("objective: {{ model: {} }}\n", model.display()),
    )
    .unwrap();
    let stdout = run_ok(
        bin()
            .arg("sim")
            .arg(scenario("mesh-two-services.yaml"))
            .args([
                "--compare",
                "objective",
                "--duration",
                "30",
                "--planner-settings",
            ])
            .arg(&settings)
            .arg("--out")
            .arg(out.join("named")),
    );
    assert!(!stdout.contains("training one"), "{stdout}");
    assert!(stdout.contains("objective: ANR"), "{stdout}");

    // A trace that is not one, a model file that is missing: exit 64 naming the file.
    std::fs::write(out.join("bad.json"), "{}").unwrap();
    let o = bin()
        .args(["model", "train", "objective"])
        .arg(out.join("bad.json"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.json"));
    std::fs::write(&settings, "objective: { model: /nonexistent/m.json }\n").unwrap();
    let o = bin()
        .arg("sim")
        .arg(scenario("mesh-two-services.yaml"))
        .args(["--compare", "objective", "--planner-settings"])
        .arg(&settings)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("objective.model") && err.contains("/nonexistent/m.json"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
