//! Results of `loadshift sim` and `loadshift lab`, in one format: `summary.json` (stable schema,
//! documented in `docs/scenarios.md`), `timeseries.csv` (one row per interval, metric and key),
//! `report.html` (self-contained, inline SVG charts drawn with `plotters`) and a terminal table.
//!
//! A report explains itself: what the scenario changes and when (`context.rs`, through
//! [`Report::describe_scenario`]: events marked on every time chart, the SLAs drawn on the
//! latency charts, the zones), a headline ratio per policy against the baselines
//! ([`headline()`]) and what every column of its tables counts (`columns.rs`).

mod charts;
mod columns;
mod context;
mod csv;
mod headline;
mod html;
mod sections;
mod table;

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

pub use context::{Event, FlowSla};
pub use headline::headline;
pub use table::terminal_table;

/// Everything one `sim` or `lab` invocation measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    pub seed: u64,
    /// Factor every flow's SLA latency was multiplied by (`loadshift sim --sla-scale`; 1 when
    /// the SLAs are as the scenario wrote them).
    pub sla_scale: f64,
    /// `sim` or `lab`, and anything the reader must know (scale factor, duration).
    pub source: String,
    pub notes: Vec<String>,
    /// What the scenario changes at one instant during the run (steps of interference, load and
    /// RTT, turns of linear ramps), in time order: marked on every time chart and written to
    /// `summary.json`.
    pub events: Vec<Event>,
    /// What the scenario holds steady or changes all the time (constant interference, RTT and
    /// load, linear ramps, sinusoids, random levels, traces), one sentence per kind and value.
    pub conditions: Vec<String>,
    /// Every flow's SLA as the runs judged it (`sla_scale` applied), drawn on latency charts.
    pub slas: Vec<FlowSla>,
    /// Zone of every host when the scenario has more than one zone (the per-zone share chart);
    /// empty otherwise.
    pub zones: BTreeMap<String, String>,
    /// One run per policy, in the order they ran.
    pub runs: Vec<PolicyRun>,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            scenario: String::new(),
            seed: 0,
            sla_scale: 1.0,
            source: String::new(),
            notes: Vec::new(),
            events: Vec::new(),
            conditions: Vec::new(),
            slas: Vec::new(),
            zones: BTreeMap::new(),
            runs: Vec::new(),
        }
    }
}

/// One policy's run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyRun {
    /// `<planner>` or `<planner>+<scaler>`.
    pub policy: String,
    pub summary: PolicySummary,
    pub counts: Counts,
    /// One entry per `report_interval_s`.
    pub intervals: Vec<Interval>,
}

/// The per-policy object of `summary.json`. Field names are a stable interface.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySummary {
    /// Mean end-to-end latency of counted (post-warm-up, not blocked) requests.
    #[serde(default)]
    pub mean_ms: f64,
    /// End-to-end latency percentiles of the same requests.
    pub p50_ms: f64,
    #[serde(default)]
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Requests slower than their flow's SLA latency or failed, over requests not blocked, %.
    pub sla_violation_pct: f64,
    /// Blocked requests over offered requests, %.
    pub blocked_pct: f64,
    /// Container count integrated over the counted part of the run.
    pub container_seconds: f64,
    /// Planner iterations until the per-iteration p95 stays within 5% of its final value; `null`
    /// when it never settles.
    pub converge_iterations: Option<u32>,
    /// Seconds from the start of the run (warm-up included) from which every flow met its SLA
    /// at its percentile in every report interval to the end: the end of the last interval in
    /// which one did not, 0 when none missed it; `null` when the last interval missed it, when
    /// no flow has an SLA, and in the lab (not judged there). The rule: `summary::sla`.
    #[serde(default)]
    pub sla_met_at_s: Option<f64>,
    /// Plan changes pushed to proxies (one per service plan or per-proxy plan that changed).
    pub plan_pushes: u64,
    /// Offered requests after warm-up.
    pub requests: u64,
    /// Average normalised reward of the management objective (Samani & Stadler eq. 6), for
    /// scenarios with one when a system model is at hand; `null` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anr: Option<f64>,
    /// `hpa-best` only: the HPA target utilisation it chose for this seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpa_target: Option<f64>,
    /// `requests`, `mean_ms`, `p90_ms`, `p95_ms` and `sla_violation_pct` per flow (request
    /// type), keyed by flow name: where a policy wins or loses by request type. Empty in the lab, which does not split its summary by flow.
    #[serde(default)]
    pub flows: BTreeMap<String, FlowSummary>,
}

/// One flow's part of a [`PolicySummary`]: its figures computed exactly like the policy-wide
/// ones, over its own requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSummary {
    /// Offered requests of the flow after warm-up; the flows' sum is the policy's `requests`.
    pub requests: u64,
    /// Mean end-to-end latency of the flow's counted (post-warm-up, not blocked) requests.
    pub mean_ms: f64,
    /// Nearest-rank percentiles of the same latencies.
    pub p90_ms: f64,
    pub p95_ms: f64,
    /// Of those, slower than the flow's own SLA latency (times `--sla-scale`) or failed, %.
    pub sla_violation_pct: f64,
}

/// Where every offered request ended up. `completed + failed + blocked == offered`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub offered: u64,
    pub completed: u64,
    /// Errors, timeouts and requests still unfinished when the run ended.
    pub failed: u64,
    pub blocked: u64,
    /// Of `failed`: still in flight at the end of the drain.
    pub unfinished: u64,
    /// Service calls (hops) made, all requests.
    pub calls: u64,
}

/// One row of the time series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Interval {
    /// End of the interval, seconds since the start.
    pub t_s: f64,
    /// Requests finished in the interval.
    pub requests: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Share of all service calls per host.
    pub host_share: BTreeMap<String, f64>,
    /// Per service: share of its calls per host.
    pub service_host_share: BTreeMap<String, BTreeMap<String, f64>>,
    /// Containers per service at the end of the interval.
    pub containers: BTreeMap<String, u32>,
    /// Round-trip time calls between zones took, per `<caller zone>-><callee zone>` pair that
    /// carried traffic in the interval, ms (measured at the lab's zone relays; empty in the sim
    /// and in single-zone scenarios).
    pub zone_rtt_ms: BTreeMap<String, f64>,
}

impl Interval {
    /// Containers over all services.
    pub fn total_containers(&self) -> u32 {
        self.containers.values().sum()
    }
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("encoding summary.json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("drawing {chart}: {reason}")]
    Chart { chart: String, reason: String },
}

#[derive(Serialize)]
struct SummaryFile<'a> {
    scenario: &'a str,
    seed: u64,
    sla_scale: f64,
    policies: BTreeMap<&'a str, &'a PolicySummary>,
    events: &'a [Event],
}

impl Report {
    /// The `summary.json` document.
    pub fn summary_json(&self) -> Result<String, ReportError> {
        let file = SummaryFile {
            scenario: &self.scenario,
            seed: self.seed,
            sla_scale: self.sla_scale,
            policies: self
                .runs
                .iter()
                .map(|r| (r.policy.as_str(), &r.summary))
                .collect(),
            events: &self.events,
        };
        Ok(serde_json::to_string_pretty(&file)?)
    }

    /// Writes `summary.json`, `timeseries.csv` and `report.html` into `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        self.write_beside(dir, None)
    }

    /// As [`Report::write`], with another source's report on the same scenario shown beside this
    /// one in `report.html` (the simulator's next to the lab's) and written whole into
    /// `dir/<its source>/`.
    pub fn write_beside(&self, dir: &Path, beside: Option<&Report>) -> Result<(), ReportError> {
        if let Some(b) = beside {
            b.write(&dir.join(&b.source))?;
        }
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| ReportError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let p = dir.join("summary.json");
        std::fs::write(&p, self.summary_json()? + "\n").map_err(io(&p))?;
        let p = dir.join("timeseries.csv");
        std::fs::write(&p, csv::timeseries(self)).map_err(io(&p))?;
        let p = dir.join("report.html");
        std::fs::write(&p, html::render(self, beside)?).map_err(io(&p))?;
        Ok(())
    }
}

/// `s` as HTML text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small two-policy, two-flow report for the writers' tests.
    pub(crate) fn sample() -> Report {
        let flow = |requests: u64, p95_ms: f64| FlowSummary {
            requests,
            mean_ms: p95_ms / 2.0,
            p90_ms: p95_ms * 0.8,
            p95_ms,
            sla_violation_pct: 1.0,
        };
        let run = |name: &str, p95: f64| PolicyRun {
            policy: name.into(),
            summary: PolicySummary {
                mean_ms: 12.0,
                p50_ms: 10.0,
                p90_ms: p95 * 0.8,
                p95_ms: p95,
                p99_ms: p95 * 1.5,
                sla_violation_pct: 1.0,
                blocked_pct: 0.0,
                container_seconds: 600.0,
                converge_iterations: Some(3),
                sla_met_at_s: Some(15.0),
                plan_pushes: 12,
                requests: 1000,
                anr: None,
                hpa_target: None,
                flows: [
                    ("login".into(), flow(400, p95 / 4.0)),
                    ("search".into(), flow(600, p95)),
                ]
                .into(),
            },
            counts: Counts {
                offered: 1000,
                completed: 990,
                failed: 10,
                ..Default::default()
            },
            intervals: (1..=6)
                .map(|k| Interval {
                    t_s: 5.0 * k as f64,
                    requests: 160,
                    p50_ms: 10.0,
                    p95_ms: p95 + 10.0 / k as f64,
                    p99_ms: p95 * 1.5,
                    host_share: [("h1".into(), 0.5), ("h2".into(), 0.5)].into(),
                    service_host_share: [(
                        "a".into(),
                        [("h1".into(), 0.5), ("h2".into(), 0.5)].into(),
                    )]
                    .into(),
                    containers: [("a".into(), 2)].into(),
                    zone_rtt_ms: BTreeMap::new(),
                })
                .collect(),
        };
        Report {
            scenario: "t".into(),
            seed: 7,
            sla_scale: 1.0,
            source: "sim".into(),
            notes: vec!["note".into()],
            events: vec![Event {
                t_s: 12.0,
                label: "interference on h2 (cpu 0.1 → 0.7)".into(),
            }],
            conditions: vec!["load of flow search: 200 req/s, Poisson".into()],
            slas: vec![FlowSla {
                flow: "search".into(),
                latency_ms: 45.0,
                percentile: 95.0,
            }],
            zones: BTreeMap::new(),
            runs: vec![run("even", 40.0), run("p2c-ewma", 30.0)],
        }
    }

    #[test]
    fn summary_has_the_documented_schema() {
        let v: serde_json::Value = serde_json::from_str(&sample().summary_json().unwrap()).unwrap();
        assert_eq!(v["scenario"], "t");
        // `events` is the one field added since the first schema: old readers ignore it.
        assert_eq!(
            v["events"],
            serde_json::json!([{"t_s": 12.0, "label": "interference on h2 (cpu 0.1 → 0.7)"}])
        );
        assert_eq!(v.as_object().unwrap().len(), 5);
        assert_eq!(v["seed"], 7);
        assert_eq!(v["sla_scale"], 1.0);
        let p = &v["policies"]["even"];
        for k in [
            "mean_ms",
            "p50_ms",
            "p90_ms",
            "p95_ms",
            "p99_ms",
            "sla_violation_pct",
            "blocked_pct",
            "container_seconds",
            "converge_iterations",
            "sla_met_at_s",
            "plan_pushes",
            "requests",
            "flows",
        ] {
            assert!(p.get(k).is_some(), "missing {k}");
        }
        assert_eq!(p["sla_met_at_s"], 15.0);
        // `hpa_target` only appears on `hpa-best` runs.
        assert_eq!(p.as_object().unwrap().len(), 13);
        let login = &p["flows"]["login"];
        assert_eq!(login.as_object().unwrap().len(), 5, "{login}");
        assert_eq!(
            (&login["requests"], &login["p95_ms"], &login["p90_ms"]),
            (
                &serde_json::json!(400),
                &serde_json::json!(10.0),
                &serde_json::json!(8.0)
            )
        );
        for k in ["mean_ms", "sla_violation_pct"] {
            assert!(login[k].is_number(), "{k}: {login}");
        }
        // Never met is written as null, not left out.
        let mut r = sample();
        r.runs[0].summary.sla_met_at_s = None;
        let v: serde_json::Value = serde_json::from_str(&r.summary_json().unwrap()).unwrap();
        assert!(v["policies"]["even"]["sla_met_at_s"].is_null());
        assert_eq!(v["policies"]["even"].as_object().unwrap().len(), 13);
        let mut r = sample();
        r.runs[0].summary.hpa_target = Some(0.6);
        let v: serde_json::Value = serde_json::from_str(&r.summary_json().unwrap()).unwrap();
        assert_eq!(v["policies"]["even"]["hpa_target"], 0.6);
    }

    #[test]
    fn policy_summaries_read_back_with_or_without_flows() {
        let s = &sample().runs[0].summary;
        let text = serde_json::to_string(s).unwrap();
        let back: PolicySummary = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, s);
        // A summary written before `flows` existed still reads, with no flows.
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v.as_object_mut().unwrap().remove("flows");
        let old: PolicySummary = serde_json::from_value(v).unwrap();
        assert!(old.flows.is_empty());
    }

    #[test]
    fn writes_all_three_files() {
        let dir = std::env::temp_dir().join(format!("loadshift-report-{}", std::process::id()));
        sample().write(&dir).unwrap();
        for f in ["summary.json", "timeseries.csv", "report.html"] {
            assert!(std::fs::metadata(dir.join(f)).unwrap().len() > 100, "{f}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
