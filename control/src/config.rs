//! The control plane's configuration file (YAML), validated before anything binds.
//!
//! ```yaml
//! listen: 127.0.0.1:7070          # proxy stream
//! operator_listen: 127.0.0.1:7071 # optional; default: the operator API shares `listen`
//! token_file: /etc/loadshift/token
//! actuator: webhook               # default dry-run
//! webhook: { url: http://127.0.0.1:9000/scale }
//! discovery: { file: /var/run/loadshift/endpoints.yaml }   # default: static lists only
//! services:
//!   checkout:
//!     planner: even
//!     scaler: hpa
//!     scaler_settings: { hpa: { max_replicas: 8 } }
//!     endpoints:
//!       - { addr: 10.0.0.1:8080, host: node-a, zone: z1, container: checkout-1 }
//! ```

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{actuators::WebhookConfig, discovery::FileDiscoveryConfig};
use loadshift_policy::{
    Objective, planners,
    scalers::{self, ScalerSettings},
};

/// Everything `loadshift control` needs.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Address of the proxy API (`ProxyControl`). Port 0 picks a free port. Required.
    pub listen: SocketAddr,
    /// Separate address for the operator API; default: served on `listen`.
    #[serde(default)]
    pub operator_listen: Option<SocketAddr>,
    /// Plain HTTP listener for `/metrics` (Prometheus text) and `/live`; default: none.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// File holding the bearer token both APIs require (surrounding whitespace ignored). Required.
    pub token_file: PathBuf,
    /// Planner loop period, milliseconds. Default 5000 (the papers' 5 s control interval).
    #[serde(default = "defaults::planner_interval_ms")]
    pub planner_interval_ms: u64,
    /// Scale loop period, milliseconds. Default 60000.
    #[serde(default = "defaults::scale_interval_ms")]
    pub scale_interval_ms: u64,
    /// Reports older than this are left out of planner snapshots, milliseconds. Default 10000.
    #[serde(default = "defaults::report_stale_ms")]
    pub report_stale_ms: u64,
    /// Planner-round samples kept per service for `GetState` history (the bounded window of
    /// past telemetry). Default 60 (5 minutes at the default planner interval).
    #[serde(default = "defaults::windows_kept")]
    pub windows_kept: usize,
    /// Scale decisions kept for `ListScaleDecisions`. Default 1000.
    #[serde(default = "defaults::decisions_kept")]
    pub decisions_kept: usize,
    /// Actuator for scale decisions: `dry-run` (logged, counted, listed; nothing changes) or
    /// `webhook` (needs the `webhook` section). Default `dry-run`.
    #[serde(default = "defaults::actuator")]
    pub actuator: String,
    /// Where the `webhook` actuator POSTs decisions. Default none.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Endpoints from a file re-read as it changes, over the services' static lists. Default
    /// none (static endpoints only).
    #[serde(default)]
    pub discovery: Option<FileDiscoveryConfig>,
    /// Services by name. Default none.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
}

/// One service and its static endpoints.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Planner registry name. Default `even`; `static` uses the endpoints' `weight`s.
    #[serde(default = "defaults::planner")]
    pub planner: String,
    /// Scaler registry name. Default `none`.
    #[serde(default = "defaults::scaler")]
    pub scaler: String,
    /// Scaler tunables (`hpa: {...}`). Default: each scaler's defaults.
    #[serde(default)]
    pub scaler_settings: ScalerSettings,
    /// Latency objective handed to planners and scalers. Default none.
    #[serde(default)]
    pub objective: Option<Objective>,
    /// Static discovery: the service's containers. Default none.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
}

/// One container of a service.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `ip:port`. Required.
    pub addr: SocketAddr,
    /// Node label. Default `""`.
    #[serde(default)]
    pub host: String,
    /// Zone label. Default `""`.
    #[serde(default)]
    pub zone: String,
    /// Container id; matched against proxies' `Hello.container` to find the container's own
    /// inbound latency. Default: the address.
    #[serde(default)]
    pub container: Option<String>,
    /// Weight for the `static` planner. Default 1.
    #[serde(default = "defaults::weight")]
    pub weight: f64,
}

mod defaults {
    pub fn planner_interval_ms() -> u64 {
        5000
    }
    pub fn scale_interval_ms() -> u64 {
        60_000
    }
    pub fn report_stale_ms() -> u64 {
        10_000
    }
    pub fn windows_kept() -> usize {
        60
    }
    pub fn decisions_kept() -> usize {
        1000
    }
    pub fn actuator() -> String {
        "dry-run".into()
    }
    pub fn planner() -> String {
        "even".into()
    }
    pub fn scaler() -> String {
        "none".into()
    }
    pub fn weight() -> f64 {
        1.0
    }
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path:?}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path:?}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("{field} = {value}: {reason}")]
    Invalid {
        field: String,
        value: String,
        reason: String,
    },
}

fn invalid(
    field: impl Into<String>,
    value: impl ToString,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl ControlConfig {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Self = serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// A config with defaults, for tests and embedding.
    pub fn new(listen: SocketAddr, token_file: impl Into<PathBuf>) -> Self {
        Self {
            listen,
            operator_listen: None,
            metrics_listen: None,
            token_file: token_file.into(),
            planner_interval_ms: defaults::planner_interval_ms(),
            scale_interval_ms: defaults::scale_interval_ms(),
            report_stale_ms: defaults::report_stale_ms(),
            windows_kept: defaults::windows_kept(),
            decisions_kept: defaults::decisions_kept(),
            actuator: defaults::actuator(),
            webhook: None,
            discovery: None,
            services: BTreeMap::new(),
        }
    }

    /// Checks every field that parsing alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.operator_listen == Some(self.listen) && self.listen.port() != 0 {
            return Err(invalid(
                "operator_listen",
                self.listen,
                "equals listen; omit it to serve the operator API on the same listener",
            ));
        }
        for (field, v) in [
            ("planner_interval_ms", self.planner_interval_ms),
            ("scale_interval_ms", self.scale_interval_ms),
            ("report_stale_ms", self.report_stale_ms),
        ] {
            if v == 0 {
                return Err(invalid(field, v, "must be > 0"));
            }
        }
        if !crate::actuators::NAMES.contains(&self.actuator.as_str()) {
            return Err(invalid(
                "actuator",
                &self.actuator,
                format!(
                    "unknown actuator; known: {}",
                    crate::actuators::NAMES.join(", ")
                ),
            ));
        }
        match (&self.webhook, self.actuator.as_str()) {
            (Some(w), _) => w.validate()?,
            (None, "webhook") => {
                return Err(invalid(
                    "webhook",
                    "(missing)",
                    "actuator: webhook needs a webhook section with its url",
                ));
            }
            (None, _) => {}
        }
        if let Some(d) = &self.discovery {
            d.validate()?;
        }
        for (name, s) in &self.services {
            let f = |k: &str| format!("services.{name}.{k}");
            if name.is_empty() {
                return Err(invalid(
                    "services",
                    "\"\"",
                    "service names must not be empty",
                ));
            }
            if !planners::NAMES.contains(&s.planner.as_str()) {
                return Err(invalid(
                    f("planner"),
                    &s.planner,
                    format!("unknown planner; known: {}", planners::NAMES.join(", ")),
                ));
            }
            if !scalers::NAMES.contains(&s.scaler.as_str()) {
                return Err(invalid(
                    f("scaler"),
                    &s.scaler,
                    format!("unknown scaler; known: {}", scalers::NAMES.join(", ")),
                ));
            }
            if let Err(e) = s.scaler_settings.validate() {
                return Err(invalid(
                    format!("{}.{}", f("scaler_settings"), e.field),
                    e.value,
                    e.reason,
                ));
            }
            if let Some(o) = &s.objective {
                if !(o.sla_ms.is_finite() && o.sla_ms > 0.0) {
                    return Err(invalid(
                        f("objective.sla_ms"),
                        o.sla_ms,
                        "must be finite and > 0",
                    ));
                }
                if !(o.percentile > 0.0 && o.percentile <= 100.0) {
                    return Err(invalid(
                        f("objective.percentile"),
                        o.percentile,
                        "must be in (0, 100]",
                    ));
                }
            }
            let mut seen = HashSet::new();
            for (i, e) in s.endpoints.iter().enumerate() {
                if !seen.insert(e.addr) {
                    return Err(invalid(
                        format!("{}[{i}].addr", f("endpoints")),
                        e.addr,
                        "listed twice",
                    ));
                }
                if !(e.weight.is_finite() && e.weight >= 0.0) {
                    return Err(invalid(
                        format!("{}[{i}].weight", f("endpoints")),
                        e.weight,
                        "must be finite and >= 0",
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn planner_interval(&self) -> Duration {
        Duration::from_millis(self.planner_interval_ms)
    }

    pub fn scale_interval(&self) -> Duration {
        Duration::from_millis(self.scale_interval_ms)
    }

    pub fn report_stale(&self) -> Duration {
        Duration::from_millis(self.report_stale_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<ControlConfig, String> {
        let c: ControlConfig = serde_yaml_ng::from_str(y).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn defaults_apply() {
        let c = parse("listen: 127.0.0.1:0\ntoken_file: /t\nservices:\n  a:\n    endpoints:\n      - addr: 127.0.0.1:1\n").unwrap();
        assert_eq!(c.planner_interval(), Duration::from_secs(5));
        assert_eq!(c.scale_interval(), Duration::from_secs(60));
        assert_eq!(c.services["a"].planner, "even");
        assert_eq!(c.services["a"].scaler, "none");
        assert_eq!(c.services["a"].endpoints[0].weight, 1.0);
    }

    #[test]
    fn errors_name_field_value_and_reason() {
        let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nservices:\n  a:\n    planner: magic\n")
            .unwrap_err();
        assert!(
            e.contains("services.a.planner")
                && e.contains("magic")
                && e.contains("unknown planner"),
            "{e}"
        );
        let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nplanner_interval_ms: 0\n").unwrap_err();
        assert!(e.contains("planner_interval_ms = 0: must be > 0"), "{e}");
        let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nservices:\n  a:\n    endpoints:\n      - {addr: 127.0.0.1:1, weight: -1}\n").unwrap_err();
        assert!(e.contains("services.a.endpoints[0].weight = -1"), "{e}");
        let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nbogus: 1\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nactuator: webhook\n").unwrap_err();
        assert!(
            e.contains("webhook") && e.contains("needs a webhook section"),
            "{e}"
        );
        let e = parse(
            "listen: 127.0.0.1:0\ntoken_file: /t\nactuator: webhook\nwebhook: {url: https://h/}\n",
        )
        .unwrap_err();
        assert!(e.contains("webhook.url") && e.contains("https"), "{e}");
        let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\ndiscovery: {file: /e, poll_ms: 0}\n")
            .unwrap_err();
        assert!(e.contains("discovery.poll_ms = 0"), "{e}");
        let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nservices:\n  a:\n    scaler: hpa\n    scaler_settings: {hpa: {min_replicas: 4, max_replicas: 2}}\n").unwrap_err();
        assert!(
            e.contains("services.a.scaler_settings.hpa.max_replicas = 2"),
            "{e}"
        );
        let c = parse("listen: 127.0.0.1:0\ntoken_file: /t\nactuator: webhook\nwebhook: {url: 'http://127.0.0.1:9/scale'}\ndiscovery: {file: /e}\nservices:\n  a:\n    scaler: hpa\n    scaler_settings: {hpa: {max_replicas: 3}}\n").unwrap();
        assert_eq!(c.services["a"].scaler_settings.hpa.max_replicas, 3);
        assert_eq!(c.discovery.map(|d| d.poll_ms), Some(1000));
    }

    proptest::proptest! {
        /// The parser and the validator take any text without panicking.
        #[test]
        fn arbitrary_yaml_never_panics(head in "(listen|token_file|services|planner_interval_ms|operator_listen): ", body in ".{0,80}") {
            let _ = parse(&format!("{head}{body}"));
            let _ = parse(&format!("listen: 127.0.0.1:0\ntoken_file: /t\nservices:\n  a:\n    {head}{body}\n"));
        }
    }

    #[test]
    fn example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/control.example.yaml");
        let c = ControlConfig::load(&path).unwrap();
        assert!(!c.services.is_empty());
    }
}
