//! Semantic checks of a parsed scenario. Every error names the field path, the value and why it
//! is refused, e.g. `services[2].calls[0].service: "ratings" is not a declared service`.

use std::collections::{HashMap, HashSet};

use super::{Dist, Scenario, ScenarioError, Schedule};

type R = Result<(), ScenarioError>;

/// Most time-series rows a run may produce (keeps a typo from exhausting memory).
const MAX_INTERVALS: f64 = 100_000.0;

fn bad(path: impl Into<String>, value: impl std::fmt::Debug, reason: &str) -> ScenarioError {
    ScenarioError::invalid(path, value, reason)
}

fn positive(path: &str, v: f64) -> R {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(bad(path, v, "must be a finite number > 0"))
    }
}

fn unit(path: &str, v: f64) -> R {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(bad(path, v, "must be in [0, 1]"))
    }
}

fn unique<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> R {
    let mut seen = HashSet::new();
    for (i, n) in names.enumerate() {
        if n.is_empty() {
            return Err(bad(format!("{what}[{i}].name"), n, "must not be empty"));
        }
        if !seen.insert(n) {
            return Err(bad(format!("{what}[{i}].name"), n, "is declared twice"));
        }
    }
    Ok(())
}

fn schedule(path: &str, s: &Schedule, lo: f64, hi: f64) -> R {
    s.check().map_err(|r| bad(path, s, &r))?;
    let (a, b) = s.range();
    if a < lo || b > hi {
        return Err(bad(
            path,
            s,
            &format!("takes values in [{a}, {b}], outside [{lo}, {hi}]"),
        ));
    }
    Ok(())
}

pub(super) fn validate(s: &Scenario) -> R {
    if s.name.is_empty() {
        return Err(bad("name", &s.name, "must not be empty"));
    }
    positive("duration_s", s.duration_s)?;
    if !(s.warmup_s.is_finite() && s.warmup_s >= 0.0 && s.warmup_s < s.duration_s) {
        return Err(bad(
            "warmup_s",
            s.warmup_s,
            "must be >= 0 and below duration_s",
        ));
    }
    positive("report_interval_s", s.report_interval_s)?;
    if s.duration_s / s.report_interval_s > MAX_INTERVALS {
        return Err(bad(
            "report_interval_s",
            s.report_interval_s,
            &format!("gives more than {MAX_INTERVALS} time-series rows over duration_s"),
        ));
    }

    unique("zones", s.zones.iter().map(|z| z.name.as_str()))?;
    let zones: HashSet<String> = s.zone_names().into_iter().collect();
    for (i, r) in s.rtt.iter().enumerate() {
        for (k, z) in r.between.iter().enumerate() {
            if !zones.contains(z) {
                return Err(bad(
                    format!("rtt[{i}].between[{k}]"),
                    z,
                    "is not a declared zone",
                ));
            }
        }
        schedule(&format!("rtt[{i}].ms"), &r.ms, 0.0, f64::MAX)?;
    }

    if s.hosts.is_empty() {
        return Err(bad(
            "hosts",
            Vec::<()>::new(),
            "must list at least one host",
        ));
    }
    unique("hosts", s.hosts.iter().map(|h| h.name.as_str()))?;
    for (i, h) in s.hosts.iter().enumerate() {
        if !zones.contains(&h.zone) {
            return Err(bad(
                format!("hosts[{i}].zone"),
                &h.zone,
                "is not a declared zone",
            ));
        }
        if h.cores == 0 {
            return Err(bad(format!("hosts[{i}].cores"), h.cores, "must be >= 1"));
        }
        schedule(
            &format!("hosts[{i}].interference.cpu"),
            &h.interference.cpu,
            0.0,
            1.0,
        )?;
        schedule(
            &format!("hosts[{i}].interference.membw"),
            &h.interference.membw,
            0.0,
            1.0,
        )?;
        schedule(
            &format!("hosts[{i}].interference.net"),
            &h.interference.net,
            0.0,
            1.0,
        )?;
    }
    let hosts: HashSet<&str> = s.hosts.iter().map(|h| h.name.as_str()).collect();

    if s.services.is_empty() {
        return Err(bad(
            "services",
            Vec::<()>::new(),
            "must list at least one service",
        ));
    }
    unique("services", s.services.iter().map(|x| x.name.as_str()))?;
    let index: HashMap<&str, usize> = s
        .services
        .iter()
        .enumerate()
        .map(|(i, x)| (x.name.as_str(), i))
        .collect();
    for (i, svc) in s.services.iter().enumerate() {
        let p = format!("services[{i}]");
        positive(
            &format!("{p}.service_time.mean_ms"),
            svc.service_time.mean_ms,
        )?;
        if svc.service_time.dist == Dist::Lognormal {
            positive(&format!("{p}.service_time.sigma"), svc.service_time.sigma)?;
        }
        if svc.concurrency == 0 {
            return Err(bad(
                format!("{p}.concurrency"),
                svc.concurrency,
                "must be >= 1",
            ));
        }
        for h in svc.replicas.keys() {
            if !hosts.contains(h.as_str()) {
                return Err(bad(
                    format!("{p}.replicas.{h}"),
                    h,
                    "is not a declared host",
                ));
            }
        }
        if svc.replicas.values().sum::<u32>() == 0 {
            return Err(bad(
                format!("{p}.replicas"),
                &svc.replicas,
                "must place at least one container",
            ));
        }
        unit(&format!("{p}.error_rate"), svc.error_rate)?;
        for (j, c) in svc.calls.iter().enumerate() {
            let cp = format!("{p}.calls[{j}]");
            if !index.contains_key(c.service.as_str()) {
                return Err(bad(
                    format!("{cp}.service"),
                    &c.service,
                    "is not a declared service",
                ));
            }
            unit(&format!("{cp}.probability"), c.probability)?;
        }
        if let Some(o) = &svc.objective {
            positive(&format!("{p}.objective.latency_ms"), o.latency_ms)?;
            percentile(&format!("{p}.objective.percentile"), o.percentile)?;
        }
    }
    acyclic(s, &index)?;

    if s.flows.is_empty() {
        return Err(bad(
            "flows",
            Vec::<()>::new(),
            "must list at least one flow",
        ));
    }
    unique("flows", s.flows.iter().map(|f| f.name.as_str()))?;
    for (i, f) in s.flows.iter().enumerate() {
        let p = format!("flows[{i}]");
        if !index.contains_key(f.entry.as_str()) {
            return Err(bad(
                format!("{p}.entry"),
                &f.entry,
                "is not a declared service",
            ));
        }
        let entry = index[f.entry.as_str()];
        if s.services[entry].optional {
            return Err(bad(
                format!("services[{entry}].optional"),
                true,
                &format!(
                    "is refused for an entry service (flow {:?} enters here): no caller goes on \
                     without it",
                    f.name
                ),
            ));
        }
        if let Some(z) = &f.zone
            && !zones.contains(z)
        {
            return Err(bad(format!("{p}.zone"), z, "is not a declared zone"));
        }
        f.arrival
            .check()
            .map_err(|r| bad(format!("{p}.arrival"), &f.arrival, &r))?;
        positive(&format!("{p}.sla.latency_ms"), f.sla.latency_ms)?;
        percentile(&format!("{p}.sla.percentile"), f.sla.percentile)?;
        positive(&format!("{p}.timeout_ms"), f.timeout_ms)?;
    }

    for (name, sp) in &s.policy.services {
        if !index.contains_key(name.as_str()) {
            return Err(bad(
                format!("policy.services.{name}"),
                name,
                "is not a declared service",
            ));
        }
        settings(
            &format!("policy.services.{name}"),
            sp.planner_settings.as_ref(),
            sp.scaler_settings.as_ref(),
        )?;
    }
    settings(
        "policy",
        Some(&s.policy.planner_settings),
        Some(&s.policy.scaler_settings),
    )?;
    if let Some(m) = &s.policy.management {
        let known: Vec<&str> = s.services.iter().map(|x| x.name.as_str()).collect();
        m.validate(&known).map_err(|e| {
            bad(
                format!("policy.management.{}", e.field),
                &e.value,
                &e.reason,
            )
        })?;
    }
    let m = &s.interference;
    for (k, v) in [
        ("a_cpu", m.a_cpu),
        ("a_membw", m.a_membw),
        ("a_net", m.a_net),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(bad(
                format!("interference.{k}"),
                v,
                "must be finite and >= 0",
            ));
        }
    }
    if !(m.cap > 0.0 && m.cap < 1.0) {
        return Err(bad("interference.cap", m.cap, "must be in (0, 1)"));
    }
    let t = &s.telemetry;
    if t.slots == 0 || t.slots > 1000 {
        return Err(bad("telemetry.slots", t.slots, "must be in [1, 1000]"));
    }
    if t.slot_ms == 0 || t.ewma_tau_ms == 0 {
        return Err(bad(
            "telemetry",
            (t.slot_ms, t.ewma_tau_ms),
            "slot_ms and ewma_tau_ms must be >= 1",
        ));
    }
    // The proxy's own checks, so a scenario is refused exactly where a proxy config would be.
    s.ejection
        .validate()
        .map_err(|e| bad(format!("ejection.{}", e.field), e.value, e.reason))?;
    s.slow_start
        .validate()
        .map_err(|e| bad(format!("slow_start.{}", e.field), e.value, e.reason))?;
    Ok(())
}

fn percentile(path: &str, v: f64) -> R {
    if v > 0.0 && v <= 100.0 {
        Ok(())
    } else {
        Err(bad(path, v, "must be in (0, 100]"))
    }
}

/// A call graph with a cycle would never finish a request.
fn acyclic(s: &Scenario, index: &HashMap<&str, usize>) -> R {
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; s.services.len()];
    for root in 0..s.services.len() {
        if state[root] != 0 {
            continue;
        }
        // Iterative DFS: (service, next call index).
        let mut stack = vec![(root, 0usize)];
        state[root] = 1;
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(c) = s.services[v].calls.get(*next) {
                let j = *next;
                *next += 1;
                let w = index[c.service.as_str()];
                match state[w] {
                    0 => {
                        state[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => {
                        let pos = stack.iter().position(|&(x, _)| x == w).unwrap_or(0);
                        let mut cycle: Vec<&str> = stack[pos..]
                            .iter()
                            .map(|&(x, _)| s.services[x].name.as_str())
                            .collect();
                        cycle.push(&s.services[w].name);
                        return Err(bad(
                            format!("services[{v}].calls[{j}].service"),
                            &c.service,
                            &format!("closes a cycle in the call graph ({})", cycle.join(" -> ")),
                        ));
                    }
                    _ => {}
                }
            } else {
                state[v] = 2;
                stack.pop();
            }
        }
    }
    Ok(())
}

/// Planner and scaler tunables under `path`: each field named in the error.
fn settings(
    path: &str,
    planner: Option<&loadshift_policy::planners::PlannerSettings>,
    scaler: Option<&loadshift_policy::scalers::ScalerSettings>,
) -> Result<(), ScenarioError> {
    if let Some(p) = planner {
        p.validate().map_err(|e| ScenarioError::Invalid {
            path: format!("{path}.planner_settings.{}", e.field),
            value: e.value,
            reason: e.reason,
        })?;
    }
    if let Some(sc) = scaler {
        sc.validate().map_err(|e| ScenarioError::Invalid {
            path: format!("{path}.scaler_settings.{}", e.field),
            value: e.value,
            reason: e.reason,
        })?;
    }
    Ok(())
}
