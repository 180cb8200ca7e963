//! Per flow over seeds: each figure of a policy's per-flow summary (`flows` of a seed's
//! `summary.json`) as mean / sd / min / max / values, and their rows in the table and the page.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::{Deserialize, Serialize};

use super::{PolicySeeds, Stat, esc};
use crate::report::{FlowSummary, PolicySummary};

/// One flow of one policy over the seeds that reported it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSeeds {
    pub requests: Stat,
    pub mean_ms: Stat,
    pub p90_ms: Stat,
    pub p95_ms: Stat,
    pub sla_violation_pct: Stat,
}

/// Per flow name, over one policy's summaries in seed order; a seed whose summary lacks a flow
/// is skipped for it (a lab summary has none).
pub(super) fn over_seeds(summaries: &[&PolicySummary]) -> BTreeMap<String, FlowSeeds> {
    let mut names: Vec<&String> = summaries.iter().flat_map(|s| s.flows.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let per: Vec<_> = summaries.iter().filter_map(|s| s.flows.get(name)).collect();
            let f = |g: fn(&FlowSummary) -> f64| {
                Stat::of(&per.iter().map(|x| g(x)).collect::<Vec<_>>())
            };
            let seeds = FlowSeeds {
                requests: f(|x| x.requests as f64),
                mean_ms: f(|x| x.mean_ms),
                p90_ms: f(|x| x.p90_ms),
                p95_ms: f(|x| x.p95_ms),
                sla_violation_pct: f(|x| x.sla_violation_pct),
            };
            (name.clone(), seeds)
        })
        .collect()
}

/// Flows named by any policy.
fn flow_count(policies: &[PolicySeeds]) -> usize {
    let mut names: Vec<&String> = policies.iter().flat_map(|p| p.flows.keys()).collect();
    names.sort();
    names.dedup();
    names.len()
}

/// The terminal block, one row per policy and flow, `mean±sd`; nothing with fewer than two
/// flows (one would repeat the policy table).
pub(super) fn table(t: &mut String, policies: &[PolicySeeds]) {
    if flow_count(policies) < 2 {
        return;
    }
    let w = policies.iter().map(|p| p.policy.len()).fold(20, usize::max);
    let _ = writeln!(
        t,
        "\n{:<w$} {:<16} {:>16} {:>18} {:>18} {:>18} {:>16}",
        "policy", "flow", "requests", "mean ms", "p90 ms", "p95 ms", "SLA viol %"
    );
    let pm = |s: &Stat, digits: usize| format!("{:.digits$}±{:.digits$}", s.mean, s.sd);
    for p in policies {
        for (name, f) in &p.flows {
            let _ = writeln!(
                t,
                "{:<w$} {:<16} {:>16} {:>18} {:>18} {:>18} {:>16}",
                p.policy,
                name,
                pm(&f.requests, 0),
                pm(&f.mean_ms, 2),
                pm(&f.p90_ms, 2),
                pm(&f.p95_ms, 2),
                pm(&f.sla_violation_pct, 2)
            );
        }
    }
}

/// The page's per-flow table; nothing when no policy reported flows.
pub(super) fn html(h: &mut String, policies: &[PolicySeeds], cell: &dyn Fn(&Stat) -> String) {
    if flow_count(policies) == 0 {
        return;
    }
    h.push_str(
        "<h2>Per flow: mean &plusmn; sd [min, max] over seeds</h2>\n<table><tr><th>policy</th>\
         <th>flow</th><th>requests</th><th>mean ms</th><th>p90 ms</th><th>p95 ms</th>\
         <th>SLA violations %</th></tr>\n",
    );
    for p in policies {
        for (name, f) in &p.flows {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td>{}{}{}{}{}</tr>",
                esc(&p.policy),
                esc(name),
                cell(&f.requests),
                cell(&f.mean_ms),
                cell(&f.p90_ms),
                cell(&f.p95_ms),
                cell(&f.sla_violation_pct)
            );
        }
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use crate::{
        report::{FlowSummary, PolicyRun, Report},
        seeds::MultiSeed,
    };

    /// One seed's report: policy `a` with flows `short` and `long`, `long`'s p95 and violations
    /// growing with the seed; seed 3 leaves `long` out.
    fn report(seed: u64) -> Report {
        let flow = |requests: u64, p95_ms: f64, viol: f64| FlowSummary {
            requests,
            mean_ms: p95_ms / 2.0,
            p90_ms: p95_ms * 0.9,
            p95_ms,
            sla_violation_pct: viol,
        };
        let mut run = PolicyRun {
            policy: "a".into(),
            ..Default::default()
        };
        let s = seed as f64;
        run.summary
            .flows
            .insert("short".into(), flow(100, 10.0, 0.0));
        if seed < 3 {
            run.summary
                .flows
                .insert("long".into(), flow(50 * seed, 100.0 * s, 10.0 * s));
        }
        Report {
            scenario: "s".into(),
            seed,
            runs: vec![run],
            ..Default::default()
        }
    }

    #[test]
    fn every_flow_is_summarised_over_the_seeds_that_reported_it() {
        let m = MultiSeed::from_reports(&[report(1), report(2), report(3)]);
        let flows = &m.policies[0].flows;
        assert_eq!(flows.keys().collect::<Vec<_>>(), ["long", "short"]);
        let long = &flows["long"];
        assert_eq!(long.p95_ms.values, [100.0, 200.0]);
        assert_eq!(long.requests.values, [50.0, 100.0]);
        assert_eq!(
            (long.sla_violation_pct.mean, long.sla_violation_pct.max),
            (15.0, 20.0)
        );
        assert_eq!((long.mean_ms.min, long.p90_ms.max), (50.0, 180.0));
        let short = &flows["short"];
        assert_eq!(short.p95_ms.values, [10.0; 3]);
        assert_eq!(short.p95_ms.sd, 0.0);

        let v: serde_json::Value = serde_json::to_value(&m).unwrap();
        let long = &v["policies"]["a"]["flows"]["long"];
        for k in [
            "requests",
            "mean_ms",
            "p90_ms",
            "p95_ms",
            "sla_violation_pct",
        ] {
            for s in ["mean", "sd", "min", "max"] {
                assert!(long[k][s].is_number(), "{k}.{s}: {long}");
            }
            assert_eq!(long[k]["values"].as_array().unwrap().len(), 2, "{k}");
        }
        let back: MultiSeed = serde_json::from_value(v).unwrap();
        assert_eq!(back.policies[0].flows.len(), 2);

        let t = m.table();
        assert!(t.contains("flow") && t.contains("150.00±70.71"), "{t}");
        let row = t.lines().find(|l| l.contains(" long ")).unwrap();
        assert!(row.starts_with("a ") && row.ends_with("15.00±7.07"), "{t}");
        let h = m.html();
        assert!(h.contains("<h2>Per flow"), "{h}");
        assert!(h.contains("<td>a</td><td>long</td><td>75.00 &plusmn; 35.36 [50.00, 100.00]</td>"));
    }

    #[test]
    fn one_flow_adds_no_terminal_block_and_no_flows_no_table() {
        let mut one = report(3);
        let m = MultiSeed::from_reports(std::slice::from_ref(&one));
        assert!(!m.table().contains("flow"), "{}", m.table());
        assert!(m.html().contains("<h2>Per flow"));
        one.runs[0].summary.flows.clear();
        let m = MultiSeed::from_reports(&[one]);
        assert!(m.policies[0].flows.is_empty());
        assert!(!m.html().contains("Per flow"));
    }
}
