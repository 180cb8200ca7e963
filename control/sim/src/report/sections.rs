//! The time-chart sections of `report.html`, every chart with the scenario's events marked:
//! latency percentiles with the SLA drawn, load share per host, share of calls per zone
//! (scenarios with zones), the inter-zone RTT calls took (lab runs with zones) and containers.

use std::{collections::BTreeMap, fmt::Write};

use super::{
    Interval, PolicyRun, Report, ReportError,
    charts::{self, Chart, Level, Series, YAxis},
    context::{num, sla_groups, zone_share},
    esc,
};

/// Hosts drawn per load-share chart; more would be unreadable (the CSV has them all).
const MAX_HOSTS: usize = 10;
/// Distinct SLAs drawn one line each; with more, only the strictest.
const MAX_SLA_LINES: usize = 3;

/// Containers over time, one line per policy; a sentence instead when no run's count changes
/// and all runs have the same (no scaler).
pub(super) fn containers(h: &mut String, r: &Report) -> Result<(), ReportError> {
    h.push_str("<h2>Containers over time</h2>\n");
    let counts: Vec<u32> = r
        .runs
        .iter()
        .flat_map(|run| run.intervals.iter().map(Interval::total_containers))
        .collect();
    if let Some(&n) = counts.first()
        && counts.iter().all(|&c| c == n)
    {
        let _ = writeln!(
            h,
            "<p>{n} containers (all services) throughout, in every run: nothing scaled.</p>"
        );
        return Ok(());
    }
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
    h.push_str(&charts::draw(&Chart {
        title: "containers (all services)",
        y_desc: "containers",
        series: &series,
        y: YAxis::FromZero,
        levels: &[],
        events: &r.events,
    })?);
    Ok(())
}

/// The SLA lines of the latency charts: one per distinct SLA naming its flows, or the strictest
/// alone when there are more than [`MAX_SLA_LINES`].
pub(super) fn sla_levels(r: &Report) -> Vec<Level> {
    let mut groups = sla_groups(&r.slas);
    let scale = if r.sla_scale == 1.0 {
        String::new()
    } else {
        format!(" (x{})", num(r.sla_scale))
    };
    let every = r.slas.len() > 1 && groups.len() == 1;
    let name = |(ms, p, flows): &(f64, f64, Vec<&str>), prefix: &str| Level {
        name: format!(
            "{prefix} {}: p{} ≤ {} ms{scale}",
            if every {
                "(every flow)".to_string()
            } else {
                flows.join(", ")
            },
            num(*p),
            num(*ms)
        ),
        y: *ms,
    };
    if groups.len() > MAX_SLA_LINES {
        groups.sort_by(|a, b| a.0.total_cmp(&b.0));
        return vec![name(&groups[0], "strictest SLA,")];
    }
    groups.iter().map(|g| name(g, "SLA")).collect()
}

/// p50 / p95 / p99 over time, one line per policy, the SLA drawn.
pub(super) fn latency(h: &mut String, r: &Report) -> Result<(), ReportError> {
    let levels = sla_levels(r);
    for (label, pick) in [
        ("p50", (|i: &Interval| i.p50_ms) as fn(&Interval) -> f64),
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
        h.push_str(&charts::draw(&Chart {
            title: &format!("{label} end-to-end latency per interval"),
            y_desc: &format!("{label} latency (ms)"),
            series: &series,
            y: YAxis::Fit,
            levels: &levels,
            events: &r.events,
        })?);
    }
    Ok(())
}

/// Share charts, one per policy on one y scale so they compare at a glance; `suffix` names the
/// source in the titles.
fn share_charts(
    h: &mut String,
    r: &Report,
    what: &str,
    suffix: &str,
    series: impl Fn(&PolicyRun) -> Vec<Series>,
) -> Result<(), ReportError> {
    let per_run: Vec<Vec<Series>> = r.runs.iter().map(&series).collect();
    let top = per_run
        .iter()
        .flatten()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let top = (top * 1.1).clamp(0.01, 1.0);
    for (run, series) in r.runs.iter().zip(&per_run) {
        h.push_str(&charts::draw(&Chart {
            title: &format!("{what}: {}{suffix}", run.policy),
            y_desc: "share of calls",
            series,
            y: YAxis::UpTo(top),
            levels: &[],
            events: &r.events,
        })?);
    }
    Ok(())
}

/// One load-share chart per policy, one line per host.
pub(super) fn shares(h: &mut String, r: &Report, suffix: &str) -> Result<(), ReportError> {
    share_charts(h, r, "load share per host", suffix, host_series)
}

/// One chart per policy of the share of calls served per zone; nothing without zones.
pub(super) fn zone_shares(h: &mut String, r: &Report, suffix: &str) -> Result<(), ReportError> {
    if r.zones.is_empty() {
        return Ok(());
    }
    let _ = writeln!(
        h,
        "<h2>Share of calls per zone over time{}</h2>\n<p>Share of all service calls served in \
         each zone (its hosts' shares added up).</p>",
        esc(suffix)
    );
    share_charts(h, r, "share of calls per zone", suffix, |run| {
        zone_series(run, &r.zones)
    })
}

/// One series per zone that served calls in some interval.
fn zone_series(run: &PolicyRun, zones: &BTreeMap<String, String>) -> Vec<Series> {
    let per: Vec<(f64, BTreeMap<String, f64>)> = run
        .intervals
        .iter()
        .map(|iv| (iv.t_s, zone_share(iv, zones)))
        .collect();
    let mut names: Vec<&String> = per.iter().flat_map(|(_, m)| m.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|z| Series {
            name: z.clone(),
            points: per
                .iter()
                .map(|(t, m)| (*t, m.get(z).copied().unwrap_or(0.0)))
                .collect(),
        })
        .collect()
}

/// The RTT calls between zones took, one chart per policy, one line per zone pair; nothing when
/// no interval measured any.
pub(super) fn zone_rtt(h: &mut String, r: &Report) -> Result<(), ReportError> {
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
        h.push_str(&charts::draw(&Chart {
            title: &format!("inter-zone RTT: {}", run.policy),
            y_desc: "RTT (ms)",
            series: &series,
            y: YAxis::Fit,
            levels: &[],
            events: &r.events,
        })?);
    }
    Ok(())
}

/// One series per host, the `MAX_HOSTS` hosts whose share moved the most first.
fn host_series(run: &PolicyRun) -> Vec<Series> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::FlowSla;

    #[test]
    fn flows_with_different_slas_get_a_line_each_or_the_strictest() {
        let mut r = crate::report::tests::sample();
        let sla = |flow: &str, ms: f64| FlowSla {
            flow: flow.into(),
            latency_ms: ms,
            percentile: 95.0,
        };
        r.slas = vec![sla("a", 100.0), sla("b", 100.0), sla("c", 50.0)];
        let names: Vec<String> = sla_levels(&r).into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["SLA a, b: p95 ≤ 100 ms", "SLA c: p95 ≤ 50 ms"]);
        r.slas = vec![sla("a", 100.0), sla("b", 100.0)];
        let names: Vec<String> = sla_levels(&r).into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["SLA (every flow): p95 ≤ 100 ms"]);
        r.slas = (1..=4)
            .map(|k| sla(&format!("f{k}"), 10.0 * k as f64))
            .collect();
        r.sla_scale = 0.5;
        let names: Vec<String> = sla_levels(&r).into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["strictest SLA, f1: p95 ≤ 10 ms (x0.5)"]);
    }
}
