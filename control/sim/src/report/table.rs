//! The terminal summary printed at the end of every run.

use std::fmt::Write;

use super::Report;

/// A fixed-width table, one row per policy.
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
    let rows: Vec<[String; 11]> = r
        .runs
        .iter()
        .map(|run| {
            let s = &run.summary;
            [
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
    let mut w = head.map(str::len);
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        for (i, c) in cells.iter().enumerate() {
            // First column left-aligned (names), numbers right-aligned.
            let _ = if i == 0 {
                write!(out, "{c:<width$}", width = w[i])
            } else {
                write!(out, "  {c:>width$}", width = w[i])
            };
        }
        out.push('\n');
    };
    let scale = if r.sla_scale == 1.0 {
        String::new()
    } else {
        format!(", SLA x{}", r.sla_scale)
    };
    let _ = writeln!(out, "{} ({}, seed {}{scale})", r.scenario, r.source, r.seed);
    line(&mut out, &head);
    line(
        &mut out,
        &w.map(|n| "-".repeat(n))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    for row in &rows {
        line(
            &mut out,
            &row.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_aligned_row_per_policy() {
        let t = terminal_table(&crate::report::tests::sample());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[3].starts_with("even") && lines[3].contains("40.00"));
        assert_eq!(lines[2].len(), lines[3].len());
        assert!(lines[1].contains("converge  SLA met s  pushes"), "{t}");
        assert!(lines[3].ends_with(" 3       15.0      12"), "{t}");
    }

    #[test]
    fn sla_never_met_is_a_dash() {
        let mut r = crate::report::tests::sample();
        r.runs[0].summary.sla_met_at_s = None;
        let t = terminal_table(&r);
        assert!(t.lines().nth(3).unwrap().ends_with("-      12"), "{t}");
    }
}
