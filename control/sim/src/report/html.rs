//! `report.html`: one self-contained page (inline SVG and CSS, no scripts, no external files) with
//! the comparison table, the same figures per flow, latency percentiles over time per policy, load share per host over time
//! per policy, containers over time, the inter-zone RTT calls took (lab runs with zones), and
//! optionally another source's table and load shares on the same scenario (the simulator's
//! beside the lab's).

use std::fmt::Write;

use super::{
    Report, ReportError,
    charts::{Series, lines},
};

/// Hosts drawn per load-share chart; more would be unreadable (the CSV has them all).
const MAX_HOSTS: usize = 10;

pub(super) fn render(r: &Report, beside: Option<&Report>) -> Result<String, ReportError> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>loadshift {src}: {name}</title>\n<style>\
         body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}svg{{display:block;margin:1em 0}}</style></head><body>\n\
         <h1>{name}</h1>\n<p>{src}, seed {seed}</p>\n",
        src = esc(&r.source),
        name = esc(&r.scenario),
        seed = r.seed
    );
    for n in &r.notes {
        let _ = writeln!(h, "<p>{}</p>", esc(n));
    }
    h.push_str("<h2>Comparison</h2>\n");
    comparison(&mut h, r);
    per_flow(&mut h, r);
    if let Some(b) = beside {
        let _ = writeln!(
            h,
            "<h2>Beside it: {src} on the same scenario</h2>",
            src = esc(&b.source)
        );
        for n in &b.notes {
            let _ = writeln!(h, "<p>{}</p>", esc(n));
        }
        comparison(&mut h, b);
        per_flow(&mut h, b);
        let _ = writeln!(
            h,
            "<p>The {src}'s full report is in <code>{src}/report.html</code>.</p>",
            src = esc(&b.source)
        );
    }
    h.push_str("<h2>End-to-end latency over time</h2>\n");
    latency(&mut h, r)?;
    h.push_str("<h2>Load share per host over time</h2>\n<p>Share of all service calls routed to each host.</p>\n");
    shares(&mut h, r, "")?;
    if let Some(b) = beside {
        shares(&mut h, b, &format!(" ({})", b.source))?;
    }
    zone_rtt(&mut h, r)?;
    h.push_str("<h2>Containers over time</h2>\n");
    let series: Vec<Series> = r
        .runs
        .iter()
        .map(|run| Series {
            name: run.policy.clone(),
            points: run
                .intervals
                .iter()
                .map(|i| (i.t_s, f64::from(i.total_containers())))
                .collect(),
        })
        .collect();
    h.push_str(&lines(
        "containers (all services)",
        "containers",
        &series,
        None,
    )?);
    h.push_str("</body></html>\n");
    Ok(h)
}

/// The comparison table of one report.
fn comparison(h: &mut String, r: &Report) {
    h.push_str("<table><tr><th>policy</th><th>requests</th><th>mean ms</th><th>p50 ms</th><th>p90 ms</th><th>p95 ms</th><th>p99 ms</th><th>SLA violations %</th><th>blocked %</th><th>container-seconds</th><th>converge iterations</th><th>SLA met at s</th><th>plan pushes</th><th>completed / failed / blocked</th></tr>\n");
    for run in &r.runs {
        let s = &run.summary;
        let c = &run.counts;
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {} / {}</td></tr>",
            esc(&run.policy),
            s.requests,
            s.mean_ms,
            s.p50_ms,
            s.p90_ms,
            s.p95_ms,
            s.p99_ms,
            s.sla_violation_pct,
            s.blocked_pct,
            s.container_seconds,
            s.converge_iterations
                .map_or_else(|| "-".into(), |v| v.to_string()),
            s.sla_met_at_s
                .map_or_else(|| "-".into(), |t| format!("{t:.1}")),
            s.plan_pushes,
            c.completed,
            c.failed,
            c.blocked
        );
    }
    h.push_str("</table>\n");
}

/// One row per policy and flow; nothing when no summary is split by flow (the lab's).
fn per_flow(h: &mut String, r: &Report) {
    if r.runs.iter().all(|run| run.summary.flows.is_empty()) {
        return;
    }
    h.push_str("<h3>Per flow</h3>\n<p>The same figures over each flow's requests, against its own SLA.</p>\n\
                <table><tr><th>policy</th><th>flow</th><th>requests</th><th>mean ms</th><th>p90 ms</th><th>p95 ms</th><th>SLA violations %</th></tr>\n");
    for run in &r.runs {
        for (name, f) in &run.summary.flows {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
                esc(&run.policy),
                esc(name),
                f.requests,
                f.mean_ms,
                f.p90_ms,
                f.p95_ms,
                f.sla_violation_pct
            );
        }
    }
    h.push_str("</table>\n");
}

/// p50 / p95 / p99 over time, one line per policy.
fn latency(h: &mut String, r: &Report) -> Result<(), ReportError> {
    for (label, pick) in [
        (
            "p50",
            (|i: &super::Interval| i.p50_ms) as fn(&super::Interval) -> f64,
        ),
        ("p95", |i| i.p95_ms),
        ("p99", |i| i.p99_ms),
    ] {
        let series: Vec<Series> = r
            .runs
            .iter()
            .map(|run| Series {
                name: run.policy.clone(),
                points: run
                    .intervals
                    .iter()
                    .filter(|i| i.requests > 0)
                    .map(|i| (i.t_s, pick(i)))
                    .collect(),
            })
            .collect();
        h.push_str(&lines(
            &format!("{label} end-to-end latency per interval"),
            "ms",
            &series,
            None,
        )?);
    }
    Ok(())
}

/// One load-share chart per policy; `suffix` names the source in the titles.
fn shares(h: &mut String, r: &Report, suffix: &str) -> Result<(), ReportError> {
    // One y scale for every policy so the charts compare at a glance.
    let top = r
        .runs
        .iter()
        .flat_map(|run| {
            run.intervals
                .iter()
                .flat_map(|i| i.host_share.values().copied())
        })
        .fold(0.0, f64::max);
    let top = (top * 1.1).clamp(0.01, 1.0);
    for run in &r.runs {
        h.push_str(&lines(
            &format!("load share per host: {}{suffix}", run.policy),
            "share",
            &host_series(run),
            Some(top),
        )?);
    }
    Ok(())
}

/// The RTT calls between zones took, one chart per policy, one line per zone pair; nothing when
/// no interval measured any.
fn zone_rtt(h: &mut String, r: &Report) -> Result<(), ReportError> {
    if r.runs
        .iter()
        .all(|run| run.intervals.iter().all(|i| i.zone_rtt_ms.is_empty()))
    {
        return Ok(());
    }
    h.push_str(
        "<h2>Inter-zone round-trip time</h2>\n<p>Delay calls from one zone to another really took \
                (measured at the zone relays, both directions).</p>\n",
    );
    for run in &r.runs {
        let mut pairs: Vec<&String> = run
            .intervals
            .iter()
            .flat_map(|i| i.zone_rtt_ms.keys())
            .collect();
        pairs.sort();
        pairs.dedup();
        let series: Vec<Series> = pairs
            .into_iter()
            .map(|p| Series {
                name: p.clone(),
                points: run
                    .intervals
                    .iter()
                    .filter_map(|i| i.zone_rtt_ms.get(p).map(|v| (i.t_s, *v)))
                    .collect(),
            })
            .collect();
        h.push_str(&lines(
            &format!("inter-zone RTT: {}", run.policy),
            "ms",
            &series,
            None,
        )?);
    }
    Ok(())
}

/// One series per host, the `MAX_HOSTS` hosts whose share moved the most first.
fn host_series(run: &super::PolicyRun) -> Vec<Series> {
    let mut hosts: Vec<(&String, f64)> = Vec::new();
    for iv in &run.intervals {
        for h in iv.host_share.keys() {
            if !hosts.iter().any(|(x, _)| *x == h) {
                hosts.push((h, 0.0));
            }
        }
    }
    for (h, spread) in hosts.iter_mut() {
        let v: Vec<f64> = run
            .intervals
            .iter()
            .map(|i| i.host_share.get(*h).copied().unwrap_or(0.0))
            .collect();
        let max = v.iter().copied().fold(0.0, f64::max);
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        *spread = max - min + max * 1e-3;
    }
    hosts.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    hosts.truncate(MAX_HOSTS);
    hosts.sort_by(|a, b| a.0.cmp(b.0));
    hosts
        .into_iter()
        .map(|(h, _)| Series {
            name: h.clone(),
            points: run
                .intervals
                .iter()
                .map(|i| (i.t_s, i.host_share.get(h).copied().unwrap_or(0.0)))
                .collect(),
        })
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained() {
        let page = render(&crate::report::tests::sample(), None).unwrap();
        assert!(page.contains("<table>") && page.matches("<svg").count() >= 6);
        assert!(!page.contains("Inter-zone"));
        let mut lab = crate::report::tests::sample();
        lab.source = "lab".into();
        for run in &mut lab.runs {
            run.summary.flows.clear();
        }
        lab.runs[0].intervals[0]
            .zone_rtt_ms
            .insert("us->eu".into(), 20.5);
        let page = render(&lab, Some(&crate::report::tests::sample())).unwrap();
        // The lab's comparison, the simulator's and the simulator's per-flow table.
        assert_eq!(page.matches("<table>").count(), 3);
        assert_eq!(page.matches("<h3>Per flow</h3>").count(), 1);
        assert!(page.contains("Beside it: sim") && page.contains("Inter-zone"));
        assert!(page.contains("load share per host: even (sim)"));
        assert!(!page.contains("<script") && !page.contains("src=\"http"));
    }

    #[test]
    fn one_row_per_policy_and_flow() {
        let page = render(&crate::report::tests::sample(), None).unwrap();
        assert_eq!(page.matches("<table>").count(), 2);
        assert!(page.contains("<th>flow</th>"));
        assert!(page.contains(
            "<tr><td>even</td><td>login</td><td>400</td><td>5.00</td><td>8.00</td><td>10.00</td><td>1.00</td></tr>"
        ), "{page}");
        assert_eq!(page.matches("<td>search</td>").count(), 2);
    }
}
