//! What a reader needs from the scenario to read a report: the instants it changes something
//! (events: a step of a host's interference, of a flow's arrival rate or of an inter-zone RTT,
//! and the turns of linear ramps), what it holds steady or changes all the time (conditions:
//! constants, sinusoids, random levels, traces), the flows' SLAs and the zone of every host.
//! `loadshift sim` and `loadshift lab` both fill them through [`Report::describe_scenario`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Interval, Report};
use crate::scenario::{Arrival, Scenario, Schedule, schedule::Shape};

/// Something the scenario changes at one instant: a step of a host's interference, of a flow's
/// arrival rate or of an inter-zone RTT, or the turn of a linear ramp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Seconds since the start of the run.
    pub t_s: f64,
    /// What changed, e.g. `interference on h3 (cpu 0.1 → 0.6, membw 0.1 → 0.5)`.
    pub label: String,
}

impl Event {
    /// `t=30 s: <label>`, as the page and the charts caption it.
    pub fn caption(&self) -> String {
        format!("t={} s: {}", num(self.t_s), self.label)
    }
}

/// One flow's SLA as the runs judged it.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowSla {
    pub flow: String,
    /// The scenario's `sla.latency_ms` times the report's `sla_scale`.
    pub latency_ms: f64,
    /// Percentile the SLA is stated at.
    pub percentile: f64,
}

impl Report {
    /// Fills `events`, `conditions`, `slas` and `zones` from the scenario the runs ran. `s` is
    /// the scenario with its SLAs as judged (`--sla-scale` already applied), `until_s` the end of
    /// the run (later changes are left out), `rate_scale` the factor the runs applied to every
    /// arrival rate (the lab's scale-down; 1 in the simulator).
    pub fn describe_scenario(&mut self, s: &Scenario, until_s: f64, rate_scale: f64) {
        let mut t = Timeline::default();
        for h in &s.hosts {
            let i = &h.interference;
            let subject = Subject("interference on", h.name.clone());
            for (res, sch) in [("cpu", &i.cpu), ("membw", &i.membw), ("net", &i.net)] {
                t.schedule(&subject, res, sch, "", until_s);
            }
        }
        for r in &s.rtt {
            let [a, b] = &r.between;
            let subject = if a == b {
                Subject("RTT within", a.clone())
            } else {
                Subject("RTT", format!("{a}↔{b}"))
            };
            t.schedule(&subject, "", &r.ms, " ms", until_s);
        }
        for f in &s.flows {
            t.arrival(&f.name, &f.arrival, rate_scale, until_s);
        }
        self.events = t.events();
        self.conditions = t.conditions();
        self.slas = s
            .flows
            .iter()
            .map(|f| FlowSla {
                flow: f.name.clone(),
                latency_ms: f.sla.latency_ms,
                percentile: f.sla.percentile,
            })
            .collect();
        let zones: BTreeMap<String, String> = s
            .hosts
            .iter()
            .map(|h| (h.name.clone(), h.zone.clone()))
            .collect();
        let distinct = zones
            .values()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        self.zones = if distinct > 1 { zones } else { BTreeMap::new() };
    }
}

/// What changes: a kind (`interference on`, `RTT`, `RTT within`, `load of flow`) and a name
/// (a host, a zone pair, a zone, a flow).
#[derive(Clone, Debug, PartialEq)]
struct Subject(&'static str, String);

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0, self.1)
    }
}

/// Changes and conditions gathered per subject (a host's interference, a link, a flow's load).
#[derive(Default)]
struct Timeline {
    /// (time, subject, the parts that change then, e.g. `cpu 0.1 → 0.6`), in the scenario's
    /// order.
    changes: Vec<(f64, Subject, Vec<String>)>,
    /// Per subject in the scenario's order, what holds throughout, e.g. `cpu 0.1`.
    steady: Vec<(Subject, Vec<String>)>,
}

impl Timeline {
    /// Records a change of `subject` at `t` if it falls inside the run; whether it did.
    fn change(&mut self, t: f64, until_s: f64, subject: &Subject, part: String) -> bool {
        let inside = t > 0.0 && t < until_s;
        if inside {
            match self
                .changes
                .iter_mut()
                .find(|(at, s, _)| *at == t && s == subject)
            {
                Some((_, _, parts)) => parts.push(part),
                None => self.changes.push((t, subject.clone(), vec![part])),
            }
        }
        inside
    }

    fn steady(&mut self, subject: &Subject, part: String) {
        match self.steady.iter_mut().find(|(s, _)| s == subject) {
            Some((_, parts)) => parts.push(part),
            None => self.steady.push((subject.clone(), vec![part])),
        }
    }

    /// One sentence per kind of subject and what holds, naming every subject it holds for
    /// (`interference on h1, h2: cpu 0.1, membw 0.1`): a generated scenario's dozen noisy hosts
    /// make one line, not twelve.
    fn conditions(&self) -> Vec<String> {
        let mut same: Vec<(&str, String, Vec<&str>)> = Vec::new();
        for (Subject(kind, name), parts) in &self.steady {
            let parts = parts.join(", ");
            match same.iter_mut().find(|(k, p, _)| k == kind && *p == parts) {
                Some((_, _, names)) => names.push(name),
                None => same.push((kind, parts, vec![name])),
            }
        }
        same.into_iter()
            .map(|(kind, parts, names)| format!("{kind} {}: {parts}", names.join(", ")))
            .collect()
    }

    /// One schedule of `subject`: `what` names the resource (empty for an RTT), `unit` follows
    /// every value.
    fn schedule(
        &mut self,
        subject: &Subject,
        what: &str,
        sch: &Schedule,
        unit: &str,
        until_s: f64,
    ) {
        let sep = if what.is_empty() { "" } else { " " };
        let name = format!("{what}{sep}");
        match sch {
            Schedule::Constant(v) if *v == 0.0 => {}
            Schedule::Constant(v) => self.steady(subject, format!("{name}{}{unit}", num(*v))),
            Schedule::Shaped(Shape::Steps(p)) => {
                let mut changed = false;
                for w in p.windows(2) {
                    if w[1].1 != w[0].1 {
                        let part = format!("{name}{} → {}{unit}", num(w[0].1), num(w[1].1));
                        changed |= self.change(w[1].0, until_s, subject, part);
                    }
                }
                // The events name the value before each step; without one in the run, the
                // first value holds throughout.
                let v0 = sch.at(0.0);
                if !changed && v0 != 0.0 {
                    self.steady(subject, format!("{name}{}{unit}", num(v0)));
                }
            }
            Schedule::Shaped(Shape::Linear(p)) => {
                let slope = |a: (f64, f64), b: (f64, f64)| {
                    if b.0 > a.0 {
                        (b.1 - a.1) / (b.0 - a.0)
                    } else {
                        0.0
                    }
                };
                for (i, &(t, v)) in p.iter().enumerate() {
                    let before = if i > 0 { slope(p[i - 1], p[i]) } else { 0.0 };
                    let after = p.get(i + 1).map_or(0.0, |&next| slope(p[i], next));
                    if before == after {
                        continue;
                    }
                    let then = match p.get(i + 1) {
                        Some(&(tn, vn)) if vn != v => format!(
                            ", then {} to {}{unit} by {} s",
                            if vn > v { "rising" } else { "falling" },
                            num(vn),
                            num(tn)
                        ),
                        _ => ", then steady".into(),
                    };
                    self.change(t, until_s, subject, format!("{name}{}{unit}{then}", num(v)));
                }
                let points: Vec<String> = p
                    .iter()
                    .map(|&(t, v)| format!("{}{unit} at {} s", num(v), num(t)))
                    .collect();
                self.steady(
                    subject,
                    format!("{name}linear between {}", points.join(", ")),
                );
            }
            Schedule::Shaped(Shape::Sinusoid(s)) => {
                let phase = if s.phase_s == 0.0 {
                    String::new()
                } else {
                    format!(", shifted {} s", num(s.phase_s))
                };
                let part = format!(
                    "{name}sinusoid {} ± {}{unit}, period {} s{phase}",
                    num(s.mean),
                    num(s.amplitude.abs()),
                    num(s.period_s)
                );
                self.steady(subject, part);
            }
        }
    }

    /// One flow's arrival process, its rates times `scale` (with the scenario's beside them when
    /// scaled).
    fn arrival(&mut self, flow: &str, a: &Arrival, scale: f64, until_s: f64) {
        let rate = |r: f64| {
            if scale == 1.0 {
                format!("{} req/s", num(r))
            } else {
                format!(
                    "{} req/s (scenario {} x {})",
                    num(r * scale),
                    num(r),
                    num(scale)
                )
            }
        };
        let subject = Subject("load of flow", flow.to_string());
        let steady = match a {
            Arrival::Constant { rate: r } => format!("{}, evenly spaced", rate(*r)),
            Arrival::Poisson { rate: r } => format!("{}, Poisson", rate(*r)),
            Arrival::Step { steps } => {
                for w in steps.windows(2) {
                    if w[1].1 != w[0].1 {
                        let part = if scale == 1.0 {
                            format!("{} → {} req/s", num(w[0].1), num(w[1].1))
                        } else {
                            format!(
                                "{} → {} req/s, scenario x {}",
                                num(w[0].1 * scale),
                                num(w[1].1 * scale),
                                num(scale)
                            )
                        };
                        self.change(w[1].0, until_s, &subject, part);
                    }
                }
                match steps.first() {
                    Some(&(_, r)) => format!("{} at the start, Poisson", rate(r)),
                    None => return,
                }
            }
            Arrival::Sinusoid {
                a,
                b,
                period_s,
                phase_s,
            } => {
                let phase = if *phase_s == 0.0 {
                    String::new()
                } else {
                    format!(", shifted {} s", num(*phase_s))
                };
                format!(
                    "sinusoid {} ± {} req/s, period {} s{phase}, Poisson{}",
                    num(a * scale),
                    num(b.abs() * scale),
                    num(*period_s),
                    if scale == 1.0 {
                        String::new()
                    } else {
                        format!(" (scenario x {})", num(scale))
                    }
                )
            }
            Arrival::RandomLevel { levels, every_s } => {
                let l: Vec<String> = levels.iter().map(|r| num(r * scale)).collect();
                format!(
                    "a rate drawn from {{{}}} req/s every {} s, Poisson",
                    l.join(", "),
                    num(*every_s)
                )
            }
            Arrival::Trace { file, .. } => format!("the trace {file}, Poisson"),
        };
        self.steady(&subject, steady);
    }

    /// The changes as events in time order (at one instant, in the scenario's order), one per
    /// subject and instant.
    fn events(&self) -> Vec<Event> {
        let mut events: Vec<Event> = self
            .changes
            .iter()
            .map(|(t, subject, parts)| Event {
                t_s: *t,
                label: format!("{subject} ({})", parts.join(", ")),
            })
            .collect();
        events.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        events
    }
}

/// Per zone, the interval's share of calls served on its hosts (hosts the map does not know
/// count under `?`).
pub(super) fn zone_share(iv: &Interval, zones: &BTreeMap<String, String>) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for (host, share) in &iv.host_share {
        let zone = zones.get(host).map_or("?", String::as_str);
        *out.entry(zone.to_string()).or_default() += share;
    }
    out
}

/// The flows' SLAs grouped by (latency, percentile), in the flows' order: `(latency_ms,
/// percentile, flows)`.
pub(super) fn sla_groups(slas: &[FlowSla]) -> Vec<(f64, f64, Vec<&str>)> {
    let mut groups: Vec<(f64, f64, Vec<&str>)> = Vec::new();
    for s in slas {
        match groups
            .iter_mut()
            .find(|g| g.0 == s.latency_ms && g.1 == s.percentile)
        {
            Some(g) => g.2.push(&s.flow),
            None => groups.push((s.latency_ms, s.percentile, vec![&s.flow])),
        }
    }
    groups
}

/// A number as a reader wants it: three significant digits or more (none after the point from
/// 100 on, one from 10 on, three below), no trailing zeros.
pub(super) fn num(v: f64) -> String {
    let decimals = match v.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        _ => 3,
    };
    let s = format!("{v:.decimals$}");
    if decimals == 0 {
        return if s == "-0" { "0".into() } else { s };
    }
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str) -> Scenario {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scenarios")
            .join(name);
        Scenario::load(&p).unwrap()
    }

    #[test]
    fn imbalance_names_the_noisy_host_and_its_onset() {
        let s = load("imbalance.yaml");
        let mut r = Report::default();
        r.describe_scenario(&s, s.duration_s, 1.0);
        assert_eq!(
            r.events,
            [Event {
                t_s: 30.0,
                label: "interference on h3 (cpu 0.1 → 0.6, membw 0.1 → 0.5, net 0 → 0.3)".into()
            }]
        );
        assert_eq!(
            r.events[0].caption(),
            "t=30 s: interference on h3 (cpu 0.1 → 0.6, membw 0.1 → 0.5, net 0 → 0.3)"
        );
        // Hosts with the same background share a line; h3's values before the onset are in
        // the event, not repeated.
        assert_eq!(
            r.conditions,
            [
                "interference on h1, h2: cpu 0.1, membw 0.1",
                "load of flow social: 600 req/s, Poisson"
            ]
        );
        assert_eq!(
            r.slas,
            [FlowSla {
                flow: "social".into(),
                latency_ms: 150.0,
                percentile: 95.0
            }]
        );
        assert!(r.zones.is_empty());
        // A run that ends before the onset has no event; the lab's rates are scaled.
        r.describe_scenario(&s, 30.0, 0.5);
        assert!(r.events.is_empty());
        assert!(
            r.conditions
                .contains(&"interference on h1, h2, h3: cpu 0.1, membw 0.1".to_string()),
            "{:?}",
            r.conditions
        );
        assert!(
            r.conditions.contains(
                &"load of flow social: 300 req/s (scenario 600 x 0.5), Poisson".to_string()
            )
        );
    }

    #[test]
    fn multicloud_marks_rtt_steps_and_ramp_turns_and_knows_its_zones() {
        let s = load("multicloud.yaml");
        let mut r = Report::default();
        r.describe_scenario(&s, s.duration_s, 1.0);
        let captions: Vec<String> = r.events.iter().map(Event::caption).collect();
        assert_eq!(
            captions,
            [
                "t=200 s: RTT eu↔asia (40 → 20 ms)",
                "t=300 s: RTT us↔eu (40 ms, then falling to 15 ms by 600 s)",
                "t=400 s: RTT eu↔asia (20 → 10 ms)",
            ]
        );
        assert_eq!(r.zones["eu-1"], "eu");
        assert_eq!(r.zones.len(), 3);
        for c in [
            "interference on asia-1: cpu sinusoid 0.4 ± 0.3, period 600 s",
            "RTT within us, eu, asia: 0.3 ms",
            "RTT us↔eu: linear between 10 ms at 0 s, 40 ms at 300 s, 15 ms at 600 s",
        ] {
            assert!(
                r.conditions.iter().any(|x| x == c),
                "{c}: {:?}",
                r.conditions
            );
        }
    }

    #[test]
    fn load_steps_are_events() {
        let s = Scenario::parse(
            "name: t
duration_s: 100
hosts: [{name: h}]
services: [{name: a, service_time: {dist: constant, mean_ms: 1}, replicas: {h: 1}}]
flows:
  - {name: f, entry: a, arrival: {process: step, steps: [[0, 10], [40, 20], [60, 20]]}, sla: {latency_ms: 5}}
",
            None,
        )
        .unwrap();
        let mut r = Report::default();
        r.describe_scenario(&s, 100.0, 1.0);
        assert_eq!(
            r.events,
            [Event {
                t_s: 40.0,
                label: "load of flow f (10 → 20 req/s)".into()
            }]
        );
        assert_eq!(num(0.30000000000000004), "0.3");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(116.4), "116");
        assert_eq!(
            (num(54.496), num(10.5), num(0.363)),
            ("54.5".into(), "10.5".into(), "0.363".into())
        );
    }
}
