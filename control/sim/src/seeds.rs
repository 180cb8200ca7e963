//! Several seeds of one comparison summarised per policy: mean, standard deviation, min and max of
//! each summary figure (per flow too, see [`flows`]), and the per-seed ratio of every policy's p95
//! to every other policy's (paired on the seed, so arrival noise common to both cancels).
//! `loadshift sim --seeds N` writes it as `summary.json` and `report.html` next to one ordinary
//! report per seed.

mod flows;

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use serde::{Deserialize, Serialize};

pub use flows::FlowSeeds;

use crate::report::{Report, ReportError};

/// Mean and spread of one figure over seeds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stat {
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 with one value.
    pub sd: f64,
    pub min: f64,
    pub max: f64,
    /// The per-seed values, in seed order.
    pub values: Vec<f64>,
}

impl Stat {
    /// Summary of `values`; all zero when empty.
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Self {
            mean,
            sd,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            values: values.to_vec(),
        }
    }
}

/// One policy over every seed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySeeds {
    /// The policy's name: the key of its entry in `summary.json`.
    #[serde(skip)]
    pub policy: String,
    #[serde(default)]
    pub mean_ms: Stat,
    pub p50_ms: Stat,
    #[serde(default)]
    pub p90_ms: Stat,
    pub p95_ms: Stat,
    pub p99_ms: Stat,
    pub sla_violation_pct: Stat,
    #[serde(default)]
    pub container_seconds: Stat,
    /// Over the seeds where it settled.
    pub converge_iterations: Stat,
    /// Seeds where the p95 never settled (`converge_iterations` null).
    pub never_converged: u32,
    /// Over the seeds where the SLA was met through to the end.
    #[serde(default)]
    pub sla_met_at_s: Stat,
    /// Seeds where it was not (`sla_met_at_s` null).
    #[serde(default)]
    pub sla_never_met: u32,
    pub plan_pushes: Stat,
    /// `hpa-best` only: the target utilisation it chose per seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpa_target: Option<Stat>,
    /// ANR of the management objective over the seeds that scored it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anr: Option<Stat>,
    /// Per flow name, its figures over the seeds that reported it.
    #[serde(default)]
    pub flows: BTreeMap<String, FlowSeeds>,
}

/// `p95(policy) / p95(baseline)` per seed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ratio {
    pub policy: String,
    pub baseline: String,
    pub p95_ratio: Stat,
}

/// `summary.json` of a multi-seed comparison.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiSeed {
    pub scenario: String,
    pub seeds: Vec<u64>,
    /// Factor on every flow's SLA latency (`--sla-scale`).
    #[serde(default = "one")]
    pub sla_scale: f64,
    pub notes: Vec<String>,
    /// In the order the policies ran; written as an object keyed by each policy's name
    /// (`<planner>` or `<planner>+<scaler>`), as in a single seed's `summary.json`.
    #[serde(with = "keyed")]
    pub policies: Vec<PolicySeeds>,
    /// Every ordered pair of distinct policies.
    pub ratios: Vec<Ratio>,
}

fn one() -> f64 {
    1.0
}

/// `policies` as a JSON object keyed by name that keeps the order the policies ran in.
mod keyed {
    use std::fmt;

    use serde::{
        Deserializer, Serializer,
        de::{MapAccess, Visitor},
        ser::SerializeMap,
    };

    use super::PolicySeeds;

    pub fn serialize<S: Serializer>(policies: &[PolicySeeds], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(policies.len()))?;
        for p in policies {
            map.serialize_entry(&p.policy, p)?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PolicySeeds>, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Vec<PolicySeeds>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of policies keyed by name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((policy, p)) = map.next_entry::<String, PolicySeeds>()? {
                    if out.iter().any(|q: &PolicySeeds| q.policy == policy) {
                        return Err(serde::de::Error::custom(format!(
                            "policy {policy:?} appears twice"
                        )));
                    }
                    out.push(PolicySeeds { policy, ..p });
                }
                Ok(out)
            }
        }
        d.deserialize_map(Entries)
    }
}

impl MultiSeed {
    /// Summarises one report per seed; policies are matched by name and kept in the order of the
    /// first report.
    pub fn from_reports(reports: &[Report]) -> Self {
        let Some(first) = reports.first() else {
            return Self {
                sla_scale: 1.0,
                ..Self::default()
            };
        };
        let names: Vec<String> = first.runs.iter().map(|r| r.policy.clone()).collect();
        // policy -> per-seed summaries (a policy missing from a seed's report is skipped there).
        let mut per: BTreeMap<&str, Vec<&crate::report::PolicySummary>> = BTreeMap::new();
        for r in reports {
            for run in &r.runs {
                per.entry(run.policy.as_str())
                    .or_default()
                    .push(&run.summary);
            }
        }
        let policies = names
            .iter()
            .map(|name| {
                let s = per.get(name.as_str()).cloned().unwrap_or_default();
                let f = |g: &dyn Fn(&crate::report::PolicySummary) -> f64| {
                    Stat::of(&s.iter().map(|x| g(x)).collect::<Vec<_>>())
                };
                let conv: Vec<f64> = s
                    .iter()
                    .filter_map(|x| x.converge_iterations.map(f64::from))
                    .collect();
                let met: Vec<f64> = s.iter().filter_map(|x| x.sla_met_at_s).collect();
                let targets: Vec<f64> = s.iter().filter_map(|x| x.hpa_target).collect();
                let anr: Vec<f64> = s.iter().filter_map(|x| x.anr).collect();
                PolicySeeds {
                    policy: name.clone(),
                    mean_ms: f(&|x| x.mean_ms),
                    p50_ms: f(&|x| x.p50_ms),
                    p90_ms: f(&|x| x.p90_ms),
                    p95_ms: f(&|x| x.p95_ms),
                    p99_ms: f(&|x| x.p99_ms),
                    sla_violation_pct: f(&|x| x.sla_violation_pct),
                    container_seconds: f(&|x| x.container_seconds),
                    converge_iterations: Stat::of(&conv),
                    never_converged: (s.len() - conv.len()) as u32,
                    sla_met_at_s: Stat::of(&met),
                    sla_never_met: (s.len() - met.len()) as u32,
                    plan_pushes: f(&|x| x.plan_pushes as f64),
                    hpa_target: (!targets.is_empty()).then(|| Stat::of(&targets)),
                    anr: (!anr.is_empty()).then(|| Stat::of(&anr)),
                    flows: flows::over_seeds(&s),
                }
            })
            .collect();
        let mut ratios = Vec::new();
        for a in &names {
            for b in &names {
                if a == b {
                    continue;
                }
                let v: Vec<f64> = reports
                    .iter()
                    .filter_map(|r| {
                        let p95 = |n: &str| {
                            r.runs
                                .iter()
                                .find(|x| x.policy == n)
                                .map(|x| x.summary.p95_ms)
                        };
                        let (pa, pb) = (p95(a)?, p95(b)?);
                        (pb > 0.0).then(|| pa / pb)
                    })
                    .collect();
                ratios.push(Ratio {
                    policy: a.clone(),
                    baseline: b.clone(),
                    p95_ratio: Stat::of(&v),
                });
            }
        }
        Self {
            scenario: first.scenario.clone(),
            seeds: reports.iter().map(|r| r.seed).collect(),
            sla_scale: first.sla_scale,
            notes: first.notes.clone(),
            policies,
            ratios,
        }
    }

    /// The ratio of `policy` to `baseline`, if both ran.
    pub fn ratio(&self, policy: &str, baseline: &str) -> Option<&Stat> {
        self.ratios
            .iter()
            .find(|r| r.policy == policy && r.baseline == baseline)
            .map(|r| &r.p95_ratio)
    }

    /// A plain-text table: one row per policy, `mean ± sd`; then, with several flows, one per
    /// policy and flow.
    pub fn table(&self) -> String {
        let scale = if self.sla_scale == 1.0 {
            String::new()
        } else {
            format!(", SLA x{}", self.sla_scale)
        };
        let w = self
            .policies
            .iter()
            .map(|p| p.policy.len())
            .fold(20, usize::max);
        let mut t = format!(
            "{} (sim, seeds {:?}{scale})\n{:<w$} {:>22} {:>22} {:>16} {:>20} {:>18} {:>18}\n",
            self.scenario,
            self.seeds,
            "policy",
            "p95 ms mean±sd",
            "p99 ms mean±sd",
            "SLA viol %",
            "container-s",
            "converge iters",
            "SLA met s"
        );
        for p in &self.policies {
            let conv = if p.never_converged > 0 {
                format!(
                    "{:.1}±{:.1} ({} never)",
                    p.converge_iterations.mean, p.converge_iterations.sd, p.never_converged
                )
            } else {
                format!(
                    "{:.1}±{:.1}",
                    p.converge_iterations.mean, p.converge_iterations.sd
                )
            };
            // With no seed meeting the SLA there is no figure to show, only the count.
            let met = match (p.sla_met_at_s.values.is_empty(), p.sla_never_met) {
                (true, n) => format!("- ({n} never)"),
                (false, 0) => format!("{:.1}±{:.1}", p.sla_met_at_s.mean, p.sla_met_at_s.sd),
                (false, n) => format!(
                    "{:.1}±{:.1} ({n} never)",
                    p.sla_met_at_s.mean, p.sla_met_at_s.sd
                ),
            };
            let _ = writeln!(
                t,
                "{:<w$} {:>22} {:>22} {:>16} {:>20} {:>18} {:>18}",
                p.policy,
                format!("{:.2}±{:.2}", p.p95_ms.mean, p.p95_ms.sd),
                format!("{:.2}±{:.2}", p.p99_ms.mean, p.p99_ms.sd),
                format!(
                    "{:.2}±{:.2}",
                    p.sla_violation_pct.mean, p.sla_violation_pct.sd
                ),
                format!(
                    "{:.0}±{:.0}",
                    p.container_seconds.mean, p.container_seconds.sd
                ),
                conv,
                met
            );
        }
        flows::table(&mut t, &self.policies);
        t
    }

    /// A self-contained HTML page: the table, the per-flow table, the p95 ratios, links to the
    /// per-seed reports.
    pub fn html(&self) -> String {
        let mut h = String::from(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>loadshift multi-seed</title>\
             <style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:right}\
             th:first-child,td:first-child{text-align:left}</style></head><body>\n",
        );
        let _ = writeln!(
            h,
            "<h1>{} (sim, {} seeds)</h1>",
            esc(&self.scenario),
            self.seeds.len()
        );
        if self.sla_scale != 1.0 {
            let _ = writeln!(
                h,
                "<p>Every flow's SLA latency multiplied by {} (--sla-scale).</p>",
                self.sla_scale
            );
        }
        for n in &self.notes {
            let _ = writeln!(h, "<p>{}</p>", esc(n));
        }
        h.push_str(
            "<h2>Per policy: mean &plusmn; sd [min, max] over seeds</h2>\n<table><tr><th>policy</th>\
             <th>mean ms</th><th>p50 ms</th><th>p90 ms</th><th>p95 ms</th><th>p99 ms</th>\
             <th>SLA violations %</th><th>container-seconds</th><th>converge iterations</th>\
             <th>never converged</th><th>SLA met at s</th><th>SLA never met</th><th>plan pushes</th>\
             <th>hpa-best target</th></tr>\n",
        );
        let cell = |s: &Stat| {
            format!(
                "<td>{:.2} &plusmn; {:.2} [{:.2}, {:.2}]</td>",
                s.mean, s.sd, s.min, s.max
            )
        };
        for p in &self.policies {
            let _ = writeln!(
                h,
                "<tr><td>{}</td>{}{}{}{}{}{}{}{}<td>{}</td>{}<td>{}</td>{}{}</tr>",
                esc(&p.policy),
                cell(&p.mean_ms),
                cell(&p.p50_ms),
                cell(&p.p90_ms),
                cell(&p.p95_ms),
                cell(&p.p99_ms),
                cell(&p.sla_violation_pct),
                cell(&p.container_seconds),
                cell(&p.converge_iterations),
                p.never_converged,
                if p.sla_met_at_s.values.is_empty() {
                    "<td>-</td>".into()
                } else {
                    cell(&p.sla_met_at_s)
                },
                p.sla_never_met,
                cell(&p.plan_pushes),
                p.hpa_target
                    .as_ref()
                    .map_or_else(|| "<td>-</td>".into(), cell)
            );
        }
        h.push_str("</table>\n");
        flows::html(&mut h, &self.policies, &cell);
        h.push_str(
            "<h2>p95 ratio, paired per seed (row policy / column baseline)</h2>\n<table><tr><th></th>",
        );
        for p in &self.policies {
            let _ = write!(h, "<th>{}</th>", esc(&p.policy));
        }
        h.push_str("</tr>\n");
        for a in &self.policies {
            let _ = write!(h, "<tr><td>{}</td>", esc(&a.policy));
            for b in &self.policies {
                match self.ratio(&a.policy, &b.policy) {
                    Some(s) => {
                        let _ = write!(h, "<td>{:.3} &plusmn; {:.3}</td>", s.mean, s.sd);
                    }
                    None => h.push_str("<td>-</td>"),
                }
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n<h2>Per seed</h2>\n<ul>\n");
        for s in &self.seeds {
            let _ = writeln!(
                h,
                "<li><a href=\"seed-{s}/report.html\">seed {s}</a> (charts: latency over time, \
                 host shares, convergence)</li>"
            );
        }
        h.push_str("</ul>\n</body></html>\n");
        h
    }

    /// Writes `summary.json` and `report.html` into `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| ReportError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let json = serde_json::to_string_pretty(self)?;
        let p = dir.join("summary.json");
        std::fs::write(&p, json + "\n").map_err(io(&p))?;
        let p = dir.join("report.html");
        std::fs::write(&p, self.html()).map_err(io(&p))?;
        Ok(())
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{PolicyRun, PolicySummary};

    fn report(seed: u64, p95: &[(&str, f64, Option<u32>)]) -> Report {
        Report {
            scenario: "s".into(),
            seed,
            runs: p95
                .iter()
                .map(|&(policy, p95_ms, conv)| PolicyRun {
                    policy: policy.into(),
                    summary: PolicySummary {
                        p95_ms,
                        converge_iterations: conv,
                        ..Default::default()
                    },
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn mean_spread_and_paired_ratios() {
        let m = MultiSeed::from_reports(&[
            report(1, &[("a", 100.0, Some(4)), ("b", 50.0, None)]),
            report(2, &[("a", 120.0, Some(6)), ("b", 60.0, Some(2))]),
        ]);
        assert_eq!(m.seeds, [1, 2]);
        let a = &m.policies[0];
        assert_eq!(
            (a.p95_ms.mean, a.p95_ms.min, a.p95_ms.max),
            (110.0, 100.0, 120.0)
        );
        assert!((a.p95_ms.sd - 200f64.sqrt()).abs() < 1e-12);
        assert_eq!(a.converge_iterations.mean, 5.0);
        assert_eq!(m.policies[1].never_converged, 1);
        assert_eq!(m.policies[1].converge_iterations.values, [2.0]);
        // b is exactly half of a on both seeds: the paired ratio has no spread.
        let r = m.ratio("b", "a").unwrap();
        assert_eq!((r.mean, r.sd), (0.5, 0.0));
        assert_eq!(m.ratio("a", "b").unwrap().mean, 2.0);
        assert!(m.ratio("a", "a").is_none());
        assert!(m.html().contains("seed-2/report.html"));
        assert!(m.table().contains("110.00±14.14"));
        let dir = tempfile::tempdir().unwrap();
        m.write(dir.path()).unwrap();
        let back: MultiSeed = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("summary.json")).unwrap(),
        )
        .unwrap();
        // JSON keeps floats to within an ulp, not bit for bit.
        assert_eq!((back.seeds, back.policies.len()), (m.seeds.clone(), 2));
        // Keyed by name, in the order the policies ran.
        assert_eq!(
            (
                back.policies[0].policy.as_str(),
                back.policies[1].policy.as_str()
            ),
            ("a", "b")
        );
        let text = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["policies"]["b"]["never_converged"], 1);
        assert!(v["policies"]["a"].get("policy").is_none());
        assert!(text.find("\"a\"").unwrap() < text.find("\"b\"").unwrap());
        assert!((back.policies[0].p95_ms.sd - a.p95_ms.sd).abs() < 1e-9);
    }

    #[test]
    fn scaler_figures_and_the_hpa_best_target_are_summarised() {
        let mut a = report(1, &[("p+hpa-best", 100.0, None), ("p+none", 90.0, None)]);
        let mut b = report(2, &[("p+hpa-best", 100.0, None), ("p+none", 90.0, None)]);
        for (r, cs, t) in [(&mut a, 300.0, 0.6), (&mut b, 500.0, 0.8)] {
            r.sla_scale = 0.5;
            let s = &mut r.runs[0].summary;
            (s.container_seconds, s.mean_ms, s.p90_ms, s.hpa_target) = (cs, 40.0, 80.0, Some(t));
        }
        let m = MultiSeed::from_reports(&[a, b]);
        assert_eq!(m.sla_scale, 0.5);
        let p = &m.policies[0];
        assert_eq!(p.container_seconds.values, [300.0, 500.0]);
        assert_eq!((p.mean_ms.mean, p.p90_ms.mean), (40.0, 80.0));
        assert_eq!(p.hpa_target.as_ref().unwrap().values, [0.6, 0.8]);
        assert!(m.policies[1].hpa_target.is_none());
        let v: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(v["sla_scale"], 0.5);
        for k in [
            "mean_ms",
            "p90_ms",
            "p95_ms",
            "container_seconds",
            "sla_violation_pct",
        ] {
            assert!(v["policies"]["p+none"][k]["mean"].is_number(), "{k}");
        }
        assert!(v["policies"]["p+none"].get("hpa_target").is_none());
        assert!(m.table().contains("400±141") && m.table().contains("SLA x0.5"));
    }

    #[test]
    fn sla_met_at_is_summarised_over_the_seeds_that_met_it() {
        let reports: Vec<Report> = [(Some(40.0), None), (Some(60.0), None), (None, None)]
            .into_iter()
            .zip(1..)
            .map(|((a, b), seed)| {
                let mut r = report(seed, &[("a", 100.0, Some(1)), ("b", 100.0, Some(1))]);
                r.runs[0].summary.sla_met_at_s = a;
                r.runs[1].summary.sla_met_at_s = b;
                r
            })
            .collect();
        let m = MultiSeed::from_reports(&reports);
        let (a, b) = (&m.policies[0], &m.policies[1]);
        assert_eq!(a.sla_met_at_s.values, [40.0, 60.0]);
        assert_eq!((a.sla_met_at_s.mean, a.sla_never_met), (50.0, 1));
        assert!(b.sla_met_at_s.values.is_empty());
        assert_eq!(b.sla_never_met, 3);
        let t = m.table();
        assert!(t.contains("SLA met s"), "{t}");
        assert!(t.contains("50.0±14.1 (1 never)"), "{t}");
        assert!(t.contains("- (3 never)"), "{t}");
        let v: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v["policies"]["a"]["sla_met_at_s"]["values"],
            serde_json::json!([40.0, 60.0])
        );
        assert_eq!(v["policies"]["a"]["sla_never_met"], 1);
        assert_eq!(v["policies"]["b"]["sla_never_met"], 3);
        assert!(m.html().contains("<th>SLA met at s</th>"));
    }

    #[test]
    fn stat_of_nothing_and_of_one() {
        assert_eq!(Stat::of(&[]), Stat::default());
        let s = Stat::of(&[3.0]);
        assert_eq!((s.mean, s.sd, s.min, s.max), (3.0, 0.0, 3.0, 3.0));
    }
}
