//! Validation of a parsed [`ProxyConfig`]: everything serde cannot check, with errors that name
//! the field, the value and the reason.

use std::collections::HashSet;

use super::{ConfigError, Mode, ProxyConfig, invalid};

impl ProxyConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers == 0 || self.workers > 256 {
            return Err(invalid(
                "workers",
                self.workers,
                "must be between 1 and 256",
            ));
        }
        match (self.mode, &self.inbound) {
            (Mode::Sidecar, None) => {
                return Err(invalid(
                    "inbound",
                    "missing",
                    "sidecar mode needs an inbound listener and app",
                ));
            }
            (Mode::Standalone, Some(_)) => {
                return Err(invalid(
                    "inbound",
                    "set",
                    "only sidecar mode has an inbound side",
                ));
            }
            _ => {}
        }
        if http::HeaderName::from_bytes(self.priority_header.as_bytes()).is_err() {
            return Err(invalid(
                "priority_header",
                &self.priority_header,
                "not a valid header name",
            ));
        }
        if let Some(o) = &self.otel {
            o.validate(self.forwarding.enabled)?;
        }
        self.validate_tls()?;
        let mut names = HashSet::new();
        let mut authorities = HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let f = |k: &str| format!("services[{i}].{k}");
            if s.name.is_empty() || s.name.contains(char::is_whitespace) {
                return Err(invalid(
                    f("name"),
                    format!("{:?}", s.name),
                    "must be non-empty without spaces",
                ));
            }
            if !names.insert(s.name.as_str()) {
                return Err(invalid(f("name"), &s.name, "duplicate service name"));
            }
            for a in s.authority_list() {
                if !authorities.insert(a.to_ascii_lowercase()) {
                    return Err(invalid(
                        f("authorities"),
                        a,
                        "authority already routes to another service",
                    ));
                }
            }
            let mut addrs = HashSet::new();
            for (j, e) in s.endpoints.iter().enumerate() {
                if e.addr.port() == 0 {
                    return Err(invalid(
                        format!("services[{i}].endpoints[{j}].addr"),
                        e.addr,
                        "port 0 is not an endpoint",
                    ));
                }
                if !addrs.insert(e.addr) {
                    return Err(invalid(
                        format!("services[{i}].endpoints[{j}].addr"),
                        e.addr,
                        "duplicate endpoint",
                    ));
                }
            }
        }
        if let Some(d) = &self.default_service
            && !names.contains(d.as_str())
        {
            return Err(invalid("default_service", d, "no service has that name"));
        }
        let t = &self.timeouts;
        if t.connect_ms == 0 {
            return Err(invalid("timeouts.connect_ms", 0, "must be > 0"));
        }
        for (field, v) in [
            ("timeouts.header_read_ms", t.header_read_ms),
            ("timeouts.body_progress_ms", t.body_progress_ms),
            ("timeouts.send_progress_ms", t.send_progress_ms),
            ("timeouts.upgraded_idle_ms", t.upgraded_idle_ms),
        ] {
            if v == 0 {
                return Err(invalid(field, 0, "must be > 0"));
            }
        }
        let o = &self.overload;
        if !(o.memory_fraction_of_limit > 0.0 && o.memory_fraction_of_limit <= 1.0) {
            return Err(invalid(
                "overload.memory_fraction_of_limit",
                o.memory_fraction_of_limit,
                "must be in (0, 1]",
            ));
        }
        if o.max_memory_mb.is_some_and(|m| m > 1 << 40) {
            return Err(invalid(
                "overload.max_memory_mb",
                o.max_memory_mb.unwrap_or_default(),
                "must be at most 2^40 MiB",
            ));
        }
        if self.limits.min_fds < super::RESERVED_FDS + 2 {
            return Err(invalid(
                "limits.min_fds",
                self.limits.min_fds,
                "must leave room for at least one connection beyond the 256 reserved descriptors",
            ));
        }
        if self.pool.max_per_endpoint == 0 {
            return Err(invalid("pool.max_per_endpoint", 0, "must be > 0"));
        }
        self.ejection
            .validate()
            .map_err(|e| invalid(format!("ejection.{}", e.field), e.value, e.reason))?;
        self.slow_start
            .validate()
            .map_err(|e| invalid(format!("slow_start.{}", e.field), e.value, e.reason))?;
        let r = &self.retries;
        if !(0.0..=10.0).contains(&r.budget_ratio) {
            return Err(invalid(
                "retries.budget_ratio",
                r.budget_ratio,
                "must be in [0, 10]",
            ));
        }
        if r.max_attempts == 0 {
            return Err(invalid(
                "retries.max_attempts",
                0,
                "must be >= 1 (1 = no retries)",
            ));
        }
        let tm = &self.telemetry;
        if tm.slots == 0 || tm.slots > 3600 {
            return Err(invalid(
                "telemetry.slots",
                tm.slots,
                "must be between 1 and 3600",
            ));
        }
        if tm.slot_ms == 0 || tm.ewma_tau_ms == 0 || tm.host_sample_ms == 0 {
            return Err(invalid(
                "telemetry",
                "0",
                "slot_ms, ewma_tau_ms and host_sample_ms must be > 0",
            ));
        }
        if let Some(c) = &self.control {
            if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
                return Err(invalid(
                    "control.url",
                    &c.url,
                    "must start with http:// or https://",
                ));
            }
            if c.report_interval_ms == 0 {
                return Err(invalid("control.report_interval_ms", 0, "must be > 0"));
            }
            if c.backoff_min_ms == 0 || c.backoff_min_ms > c.backoff_max_ms {
                return Err(invalid(
                    "control.backoff_min_ms",
                    c.backoff_min_ms,
                    "must be > 0 and <= control.backoff_max_ms",
                ));
            }
        }
        if let Some(ls) = &self.local_shift {
            if self.control.is_some() {
                return Err(invalid(
                    "local_shift",
                    "set",
                    "local shifting runs only without a control plane (the control plane's imbres-shift planner does it there)",
                ));
            }
            ls.validate().map_err(|e| ConfigError::Invalid {
                field: "local_shift".into(),
                value: e.to_string(),
                reason: "out of range",
            })?;
        }
        Ok(())
    }
}

impl super::Otel {
    fn validate(&self, forwarding: bool) -> Result<(), ConfigError> {
        let uri: Option<http::Uri> = self.endpoint.parse().ok();
        if !uri.as_ref().is_some_and(|u| {
            u.scheme_str() == Some("http") && u.host().is_some() && u.port_u16().is_some()
        }) {
            return Err(invalid(
                "otel.endpoint",
                &self.endpoint,
                "must be http://host:port (the collector's OTLP/gRPC listener)",
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid(
                "otel.sample_ratio",
                self.sample_ratio,
                "must be between 0 and 1",
            ));
        }
        if self.max_queue == 0 || self.max_batch == 0 || self.max_batch > self.max_queue {
            return Err(invalid(
                "otel.max_batch",
                format!("{} (max_queue {})", self.max_batch, self.max_queue),
                "both must be positive, max_batch at most max_queue",
            ));
        }
        if self.flush_ms == 0 || self.timeout_ms == 0 {
            return Err(invalid(
                "otel.flush_ms",
                format!("{} / timeout_ms {}", self.flush_ms, self.timeout_ms),
                "flush_ms and timeout_ms must be positive",
            ));
        }
        if !forwarding {
            return Err(invalid(
                "otel",
                "set",
                "spans need the trace fields: forwarding.enabled must be true",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: &str = "outbound: { listen: 127.0.0.1:0 }\nservices:\n  - name: web\n    endpoints: [{ addr: 127.0.0.1:8080 }]\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = ProxyConfig::parse(MIN).unwrap();
        assert_eq!(c.mode, Mode::Standalone);
        assert_eq!(c.workers, 1);
        assert_eq!(c.services[0].authority_list(), vec!["web"]);
        assert_eq!(c.timeouts.connect_ms, 1000);
        assert!(!c.slow_start.is_on() && c.ejection.latency().is_none());
        let on = ProxyConfig::parse(&format!(
            "{MIN}slow_start: {{ window_ms: 30000 }}\nejection: {{ latency: {{ enabled: true }} }}\n"
        ))
        .unwrap();
        assert_eq!(on.slow_start.window_ms, 30_000);
        assert_eq!(on.slow_start.min_weight, 0.1);
        assert_eq!(on.ejection.latency().map(|l| l.k), Some(3.0));
        assert_eq!(on.ejection.consecutive_failures, 5);
    }

    #[test]
    fn errors_name_field_value_and_reason() {
        let cases = [
            (MIN.replace("8080", "0"), "services[0].endpoints[0].addr"),
            (format!("{MIN}workers: 0\n"), "workers = 0"),
            (format!("{MIN}mode: sidecar\n"), "inbound"),
            (
                format!("{MIN}default_service: nope\n"),
                "default_service = nope",
            ),
            (
                format!("{MIN}retries: {{ budget_ratio: -1 }}\n"),
                "retries.budget_ratio = -1",
            ),
            (format!("{MIN}bogus: 1\n"), "unknown field `bogus`"),
            (
                format!("{MIN}timeouts: {{ upgraded_idle_ms: 0 }}\n"),
                "timeouts.upgraded_idle_ms = 0: must be > 0",
            ),
            (
                format!("{MIN}ejection: {{ base_ms: 2000, max_ms: 1000 }}\n"),
                "ejection.base_ms = 2000: must be <= ejection.max_ms",
            ),
            (
                format!("{MIN}ejection: {{ latency: {{ k: 0.5 }} }}\n"),
                "ejection.latency.k = 0.5: must be finite and > 1",
            ),
            (
                format!(
                    "{MIN}ejection: {{ latency: {{ enabled: true, max_ejected_fraction: 1.5 }} }}\n"
                ),
                "ejection.latency.max_ejected_fraction = 1.5: must be in (0, 1]",
            ),
            (
                format!("{MIN}ejection: {{ latency: {{ min_endpoints: 1 }} }}\n"),
                "ejection.latency.min_endpoints = 1",
            ),
            (
                format!("{MIN}ejection: {{ latency: {{ interval: 5 }} }}\n"),
                "unknown field `interval`",
            ),
            (
                format!("{MIN}slow_start: {{ window_ms: 30000, min_weight: 0 }}\n"),
                "slow_start.min_weight = 0: must be in (0, 1]",
            ),
            (
                format!("{MIN}slow_start: {{ aggression: 0 }}\n"),
                "slow_start.aggression = 0: must be finite and > 0",
            ),
            (
                format!("{MIN}otel: {{ endpoint: \"localhost:4317\" }}\n"),
                "otel.endpoint = localhost:4317: must be http://host:port",
            ),
            (
                format!("{MIN}otel: {{ endpoint: \"http://c:4317\", sample_ratio: 1.5 }}\n"),
                "otel.sample_ratio = 1.5",
            ),
            (
                format!(
                    "{MIN}otel: {{ endpoint: \"http://c:4317\" }}\nforwarding: {{ enabled: false }}\n"
                ),
                "forwarding.enabled must be true",
            ),
        ];
        for (text, want) in cases {
            let e = ProxyConfig::parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,300}") {
            let _ = ProxyConfig::parse(&s);
        }
    }
}
