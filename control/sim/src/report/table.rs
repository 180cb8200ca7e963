//! The terminal summary printed at the end of every run: one row per policy, then, when the
//! scenario has more than one flow, one row per policy and flow.

use std::{collections::BTreeSet, fmt::Write};

use super::Report;

/// A fixed-width table, one row per policy, and the per-flow block when there are several flows.
pub fn terminal_table(r: &Report) -> String {
    let head = [
        "policy",
        "requests",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "SLA viol %",
        "blocked %",
        "container-s",
        "converge",
        "SLA met s",
        "pushes",
    ];
    let rows: Vec<Vec<String>> = r
        .runs
        .iter()
        .map(|run| {
            let s = &run.summary;
            vec![
                run.policy.clone(),
                s.requests.to_string(),
                format!("{:.2}", s.p50_ms),
                format!("{:.2}", s.p95_ms),
                format!("{:.2}", s.p99_ms),
                format!("{:.2}", s.sla_violation_pct),
                format!("{:.2}", s.blocked_pct),
                format!("{:.0}", s.container_seconds),
                s.converge_iterations
                    .map_or_else(|| "-".to_string(), |c| c.to_string()),
                s.sla_met_at_s
                    .map_or_else(|| "-".to_string(), |t| format!("{t:.1}")),
                s.plan_pushes.to_string(),
            ]
        })
        .collect();
    let scale = if r.sla_scale == 1.0 {
        String::new()
    } else {
        format!(", SLA x{}", r.sla_scale)
    };
    let mut out = format!("{} ({}, seed {}{scale})\n", r.scenario, r.source, r.seed);
    out.push_str(&aligned(&head, &rows, 1));
    // With one flow the block would repeat the table above.
    if flow_count(r) > 1 {
        out.push('\n');
        out.push_str(&aligned(
            &[
                "policy",
                "flow",
                "requests",
                "mean ms",
                "p90 ms",
                "p95 ms",
                "SLA viol %",
            ],
            &flow_rows(r),
            2,
        ));
    }
    out
}

/// Flows named in any policy's summary.
fn flow_count(r: &Report) -> usize {
    r.runs
        .iter()
        .flat_map(|run| run.summary.flows.keys())
        .collect::<BTreeSet<_>>()
        .len()
}

/// One row per policy and flow, policies in run order, flows by name.
fn flow_rows(r: &Report) -> Vec<Vec<String>> {
    r.runs
        .iter()
        .flat_map(|run| {
            run.summary.flows.iter().map(|(name, f)| {
                vec![
                    run.policy.clone(),
                    name.clone(),
                    f.requests.to_string(),
                    format!("{:.2}", f.mean_ms),
                    format!("{:.2}", f.p90_ms),
                    format!("{:.2}", f.p95_ms),
                    format!("{:.2}", f.sla_violation_pct),
                ]
            })
        })
        .collect()
}

/// `head`, a rule and `rows`, columns as wide as their widest cell; the first `left` columns
/// (names) left-aligned, the numbers right-aligned.
fn aligned(head: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        for (i, c) in cells.enumerate() {
            let sep = if i == 0 { "" } else { "  " };
            let _ = if i < left {
                write!(out, "{sep}{c:<width$}", width = w[i])
            } else {
                write!(out, "{sep}{c:>width$}", width = w[i])
            };
        }
        out.push('\n');
    };
    line(&mut head.iter().copied());
    let rule: Vec<String> = w.iter().map(|&n| "-".repeat(n)).collect();
    line(&mut rule.iter().map(String::as_str));
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample without its flows: the policy table alone.
    fn one_flow() -> Report {
        let mut r = crate::report::tests::sample();
        for run in &mut r.runs {
            run.summary.flows.retain(|name, _| name == "search");
        }
        r
    }

    #[test]
    fn one_aligned_row_per_policy() {
        let t = terminal_table(&one_flow());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[3].starts_with("even") && lines[3].contains("40.00"));
        assert_eq!(lines[2].len(), lines[3].len());
        assert!(lines[1].contains("converge  SLA met s  pushes"), "{t}");
        assert!(lines[3].ends_with(" 3       15.0      12"), "{t}");
    }

    #[test]
    fn several_flows_add_one_row_per_policy_and_flow() {
        let t = terminal_table(&crate::report::tests::sample());
        let lines: Vec<&str> = t.lines().collect();
        // Title, head, rule, two policies; a blank line; head, rule, 2 x 2 rows.
        assert_eq!(lines.len(), 12, "{t}");
        assert_eq!(lines[5], "");
        assert!(
            lines[6].starts_with("policy    flow    requests  mean ms  p90 ms")
                && lines[6].ends_with("SLA viol %"),
            "{t}"
        );
        assert_eq!(lines[7].len(), lines[8].len());
        let rows: Vec<Vec<&str>> = lines[8..]
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0],
            ["even", "login", "400", "5.00", "8.00", "10.00", "1.00"]
        );
        assert_eq!(rows[1][..3], ["even", "search", "600"]);
        assert_eq!(rows[3][..3], ["p2c-ewma", "search", "600"]);
        assert_eq!(rows[3][5], "30.00");
    }

    #[test]
    fn sla_never_met_is_a_dash() {
        let mut r = crate::report::tests::sample();
        r.runs[0].summary.sla_met_at_s = None;
        let t = terminal_table(&r);
        assert!(t.lines().nth(3).unwrap().ends_with("-      12"), "{t}");
    }
}
