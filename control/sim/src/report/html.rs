//! `report.html`: one self-contained page (inline SVG and CSS, no scripts, no external files).
//! From the top: the headline (each policy's p95 against the baselines), what the scenario does
//! and when (its events, what holds throughout, the SLAs), the comparison table and the per-flow
//! table each with what its columns count, optionally another source's tables on the same
//! scenario (the simulator's beside the lab's), then the time charts ([`super::sections`]).

use std::{collections::BTreeMap, fmt::Write};

use super::{
    Report, ReportError,
    columns::{self, Source},
    context::{num, sla_groups},
    esc, headline,
    sections::{containers, latency, shares, zone_rtt, zone_shares},
};

const STYLE: &str = "body{font-family:sans-serif;font-size:16px;line-height:1.4;max-width:1100px;\
margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;font-size:15px}td,th{border:1px solid #ccc;padding:4px 8px;\
text-align:right}td{white-space:nowrap}td:first-child,th:first-child{text-align:left}\
table.flows td:nth-child(2),table.flows th:nth-child(2){text-align:left}\
svg{display:block;margin:1.2em 0;max-width:100%;height:auto}\
.headline{font-size:18px;background:#f3f6fa;border-left:4px solid #1f77b4;padding:.5em 1em}\
.headline li{margin:.2em 0}dl.columns{font-size:14px;color:#333;margin:.6em 0 1.4em}\
dl.columns dt{font-weight:bold;float:left;clear:left;margin-right:.5em}\
dl.columns dd{margin:0 0 .3em 0}.muted{color:#555;font-size:14px}";

pub(super) fn render(r: &Report, beside: Option<&Report>) -> Result<String, ReportError> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>loadshift {src}: {name}</title>\n\
         <style>{STYLE}</style></head><body>\n<h1>{name}</h1>\n<p>{src}, seed {seed}</p>\n",
        src = esc(&r.source),
        name = esc(&r.scenario),
        seed = r.seed
    );
    headline_block(&mut h, r);
    scenario_block(&mut h, r);
    for n in &r.notes {
        let _ = writeln!(h, "<p class=\"muted\">{}</p>", esc(n));
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
            let _ = writeln!(h, "<p class=\"muted\">{}</p>", esc(n));
        }
        headline_block(&mut h, b);
        comparison(&mut h, b);
        per_flow(&mut h, b);
        let _ = writeln!(
            h,
            "<p>The {src}'s full report is in <code>{src}/report.html</code>.</p>",
            src = esc(&b.source)
        );
    }
    let pooled = if r.slas.len() > 1 {
        " Every flow's requests are pooled here, while each flow's SLA applies to its own \
         requests (the per-flow table judges them one by one)."
    } else {
        ""
    };
    let _ = writeln!(
        h,
        "<h2>End-to-end latency over time</h2>\n<p>Per report interval, over the requests that \
         finished in it (warm-up included), one line per policy; the dashed horizontal line is \
         the SLA, the dashed vertical lines the scenario's events.{pooled}</p>"
    );
    latency(&mut h, r)?;
    h.push_str("<h2>Load share per host over time</h2>\n<p>Share of all service calls served on each host.</p>\n");
    shares(&mut h, r, "")?;
    if let Some(b) = beside {
        shares(&mut h, b, &format!(" ({})", b.source))?;
    }
    zone_shares(&mut h, r, "")?;
    if let Some(b) = beside {
        zone_shares(&mut h, b, &format!(" ({})", b.source))?;
    }
    zone_rtt(&mut h, r)?;
    containers(&mut h, r)?;
    h.push_str("</body></html>\n");
    Ok(h)
}

/// The headline ([`super::headline()`]): one line per policy under test; nothing with one run.
fn headline_block(h: &mut String, r: &Report) {
    let lines = headline::headline(r);
    if lines.is_empty() {
        return;
    }
    h.push_str("<div class=\"headline\"><ul>\n");
    for l in &lines {
        let _ = writeln!(h, "<li>{}</li>", esc(l));
    }
    let (_, base) = headline::pairs(r);
    let base: Vec<String> = base.iter().map(|b| esc(&b.policy)).collect();
    let _ = writeln!(
        h,
        "</ul><p class=\"muted\">p95 end-to-end latency after the warm-up (the table's p95 ms) \
         of each policy over that of {}: below 1 is faster. A container-seconds ratio follows \
         when the runs' container counts differ.</p></div>",
        base.join(", ")
    );
}

/// What the scenario does and when: its events (numbered as on the charts), what holds
/// throughout, and the SLAs.
fn scenario_block(h: &mut String, r: &Report) {
    if r.events.is_empty() && r.conditions.is_empty() && r.slas.is_empty() {
        return;
    }
    h.push_str("<h2>What happens in the scenario</h2>\n");
    if r.events.is_empty() {
        h.push_str("<p>Nothing changes at a single instant during the run.</p>\n");
    } else {
        h.push_str("<p>Events, marked on every chart below with their number:</p>\n<ol>\n");
        for e in &r.events {
            let _ = writeln!(h, "<li>{}</li>", esc(&e.caption()));
        }
        h.push_str("</ol>\n");
    }
    if !r.conditions.is_empty() {
        h.push_str("<p>Throughout the run:</p>\n<ul>\n");
        for c in &r.conditions {
            let _ = writeln!(h, "<li>{}</li>", esc(c));
        }
        h.push_str("</ul>\n");
    }
    if !r.slas.is_empty() {
        let groups = sla_groups(&r.slas);
        let every = r.slas.len() > 1 && groups.len() == 1;
        let slas: Vec<String> = groups
            .iter()
            .map(|(ms, p, flows)| {
                let who = if every {
                    "every flow".to_string()
                } else {
                    esc(&flows.join(", "))
                };
                format!("p{} ≤ {} ms for {who}", num(*p), num(*ms))
            })
            .collect();
        let scale = if r.sla_scale == 1.0 {
            String::new()
        } else {
            format!(
                " (the scenario's, times {} from --sla-scale)",
                num(r.sla_scale)
            )
        };
        let _ = writeln!(h, "<p>SLA{scale}: {}.</p>", slas.join("; "));
    }
    if !r.zones.is_empty() {
        let mut by_zone: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (host, zone) in &r.zones {
            by_zone.entry(zone).or_default().push(host);
        }
        let zones: Vec<String> = by_zone
            .iter()
            .map(|(z, hosts)| format!("{} ({})", esc(z), esc(&hosts.join(", "))))
            .collect();
        let _ = writeln!(h, "<p>Zones (hosts): {}.</p>", zones.join("; "));
    }
}

/// A legend of what each column counts, under its table.
fn column_legend(h: &mut String, cols: &[(&str, &str)]) {
    h.push_str("<dl class=\"columns\">\n");
    for (c, what) in cols {
        let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", esc(c), esc(what));
    }
    h.push_str("</dl>\n");
}

/// The comparison table of one report, and what its columns count.
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
    column_legend(h, &columns::comparison(Source::of(&r.source)));
}

/// One row per policy and flow; nothing when no summary is split by flow (the lab's).
fn per_flow(h: &mut String, r: &Report) {
    if r.runs.iter().all(|run| run.summary.flows.is_empty()) {
        return;
    }
    h.push_str("<h3>Per flow</h3>\n<p>The same figures over each flow's requests, against its own SLA.</p>\n\
                <table class=\"flows\"><tr><th>policy</th><th>flow</th><th>requests</th><th>mean ms</th><th>p90 ms</th><th>p95 ms</th><th>SLA violations %</th></tr>\n");
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
    column_legend(h, &columns::per_flow());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Event, context::zone_share};

    #[test]
    fn page_is_self_contained() {
        let page = render(&crate::report::tests::sample(), None).unwrap();
        assert!(page.contains("<table>") && page.matches("<svg").count() >= 5);
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
        assert_eq!(page.matches("<table").count(), 3);
        assert_eq!(page.matches("<h3>Per flow</h3>").count(), 1);
        assert!(page.contains("Beside it: sim") && page.contains("Inter-zone"));
        assert!(page.contains("load share per host: even (sim)"));
        assert!(!page.contains("<script") && !page.contains("src=\"http"));
        // Each table explains its columns in its source's terms.
        assert!(page.contains("warm-up included (so the three add up to more than requests)"));
        assert!(page.contains("the three add up to requests"));
    }

    #[test]
    fn one_row_per_policy_and_flow() {
        let page = render(&crate::report::tests::sample(), None).unwrap();
        assert_eq!(page.matches("<table").count(), 2);
        assert!(page.contains("<th>flow</th>"));
        assert!(page.contains(
            "<tr><td>even</td><td>login</td><td>400</td><td>5.00</td><td>8.00</td><td>10.00</td><td>1.00</td></tr>"
        ), "{page}");
        assert_eq!(page.matches("<td>search</td>").count(), 2);
    }

    #[test]
    fn every_time_chart_marks_the_events_and_latency_charts_the_sla() {
        let r = crate::report::tests::sample();
        assert_eq!(r.events.len(), 1);
        let page = render(&r, None).unwrap();
        let charts = page.matches("<svg").count();
        // p50 / p95 / p99 and two host-share charts; the sample's containers never change.
        assert_eq!(charts, 5);
        assert!(page.contains("<p>2 containers (all services) throughout, in every run"));
        assert_eq!(
            page.matches("(1) t=12 s: interference on h2 (cpu 0.1 → 0.7)")
                .count(),
            charts,
            "{page}"
        );
        assert!(page.contains("<li>t=12 s: interference on h2 (cpu 0.1 → 0.7)</li>"));
        // The sample's SLA (45 ms) lies within its p95 data (40-50 ms): drawn on that chart,
        // named in the legend of all three.
        assert_eq!(page.matches("SLA search: p95 ≤ 45 ms").count(), 3, "{page}");
        assert!(
            page.contains("<p>SLA: p95 ≤ 45 ms for search.</p>"),
            "{page}"
        );
        assert!(page.contains("<li>p2c-ewma: p95 0.75x even</li>"), "{page}");
    }

    #[test]
    fn the_zone_chart_is_drawn_only_for_zoned_scenarios() {
        let r = crate::report::tests::sample();
        let page = render(&r, None).unwrap();
        assert!(!page.contains("share of calls per zone"));
        let mut zoned = r.clone();
        zoned.zones = [("h1".into(), "us".into()), ("h2".into(), "eu".into())].into();
        zoned.events.push(Event {
            t_s: 20.0,
            label: "RTT us↔eu (10 → 40 ms)".into(),
        });
        let page = render(&zoned, None).unwrap();
        assert_eq!(
            page.matches("share of calls per zone: ").count(),
            2,
            "{page}"
        );
        assert!(page.contains("Zones (hosts): eu (h2); us (h1)."));
        assert_eq!(
            zone_share(&r.runs[0].intervals[0], &zoned.zones),
            [("eu".to_string(), 0.5), ("us".to_string(), 0.5)].into()
        );
    }
}
