//! The control plane's configuration file (YAML), validated before anything binds.
//!
//! ```yaml
//! listen: 127.0.0.1:7070          # proxy stream
//! operator_listen: 127.0.0.1:7071 # optional; default: the operator API shares `listen`
//! token_file: /etc/loadshift/token
//! actuator: webhook               # default dry-run
//! webhook: { url: http://127.0.0.1:9000/scale }
//! discovery: { file: /var/run/loadshift/endpoints.yaml }   # default: static lists only
//! planner_settings:               # every planner's tunables (default: the papers')
//!   table_store: { kind: redb, path: /var/lib/loadshift/perf.redb }
//! scaler_settings:                # every scaler's tunables (default: each scaler's own)
//!   hpa: { target_utilization: 0.7 }
//! applications:                   # services managed together (default: one of all services)
//!   shop:
//!     services: [checkout, cart]
//!     management: { kind: mo1, bounds_ms: { checkout: 100 } }
//!     flows: { buy: { entry: checkout, sla_ms: 300, percentile: 95 } }
//! services:
//!   checkout:
//!     planner: even
//!     scaler: hpa
//!     scaler_settings: { hpa: { max_replicas: 8 } }   # replaces the top-level section whole
//!     endpoints:
//!       - { addr: 10.0.0.1:8080, host: node-a, zone: z1, container: checkout-1 }
//! ```
//!
//! Planners and scalers run at their own intervals (`planner_settings.interval_ms` sets every
//! planner's; `scaler_settings.hpa.interval_ms` the HPA's), through the schedule the simulator
//! runs too (`loadshift_policy::schedule`).

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use loadshift_policy::{
    ManagementObjective, Objective,
    planners::{PlannerSettings, settings::TableStoreConfig},
    scalers::ScalerSettings,
    schedule::{Assignment, Choice, DEFAULT_APPLICATION},
};
use serde::{Deserialize, Serialize};

pub(crate) mod sections;

pub use sections::{ActuatorKind, FileDiscoveryConfig, WebhookConfig};

/// Everything `loadshift control` needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    #[serde(default)]
    pub actuator: ActuatorKind,
    /// Where the `webhook` actuator POSTs decisions. Default none.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Endpoints from a file re-read as it changes, over the services' static lists. Default
    /// none (static endpoints only).
    #[serde(default)]
    pub discovery: Option<FileDiscoveryConfig>,
    /// Tunables of every planner (`loadshift_policy::planners::PlannerSettings`), including
    /// `interval_ms` (every planner's period instead of its own) and `table_store` (where the
    /// performance hash table persists: memory, a `redb` file or Redis). Default: the papers'
    /// values, the table in memory.
    #[serde(default)]
    pub planner_settings: PlannerSettings,
    /// Tunables of every scaler (`loadshift_policy::scalers::ScalerSettings`: `hpa`, `imbres`,
    /// `queueflower`, `avg`) for every service without its own. Default: each scaler's defaults.
    #[serde(default)]
    pub scaler_settings: ScalerSettings,
    /// Applications by name: services managed together, their management objective and their
    /// flows. Application-scoped planners (`imbres-connect`) see a whole application. A service
    /// in none belongs to the application `default` with every other such service. Default none.
    #[serde(default)]
    pub applications: BTreeMap<String, ApplicationConfig>,
    /// Services by name. Default none.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
}

/// Services managed together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationConfig {
    /// Names of configured services; each belongs to one application. Required.
    pub services: Vec<String>,
    /// What the application's routing and blocking should achieve (MO1-MO3, Samani & Stadler);
    /// the operator API can change it. Default none.
    #[serde(default)]
    pub management: Option<ManagementObjective>,
    /// Request classes entering the application, by name: their entry service and end-to-end
    /// objective. Their end-to-end latency is what the entry proxies (callers of `entry` that
    /// front no service, such as gateways) measure. Default none.
    #[serde(default)]
    pub flows: BTreeMap<String, FlowConfig>,
}

/// One request class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// The service the flow enters at. Required.
    pub entry: String,
    /// End-to-end latency objective, milliseconds at `percentile`. Default none.
    #[serde(default)]
    pub sla_ms: Option<f64>,
    /// Percentile of `sla_ms`. Default 95.
    #[serde(default = "defaults::percentile")]
    pub percentile: f64,
}

/// One service and its static endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Planner registry name. Default `even`; `static` uses the endpoints' `weight`s.
    #[serde(default = "defaults::planner")]
    pub planner: String,
    /// Scaler registry name. Default `none`.
    #[serde(default = "defaults::scaler")]
    pub scaler: String,
    /// Scaler tunables of this service (`hpa: {...}`), replacing the top-level
    /// `scaler_settings` whole. Default: those.
    #[serde(default)]
    pub scaler_settings: Option<ScalerSettings>,
    /// Planner tunables of this service, replacing the top-level `planner_settings` whole
    /// (except `table_store`, which only the top level sets). Default: those.
    #[serde(default)]
    pub planner_settings: Option<PlannerSettings>,
    /// Latency objective handed to planners and scalers. Default none.
    #[serde(default)]
    pub objective: Option<Objective>,
    /// Static discovery: the service's containers. Default none.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
}

/// One container of a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    pub fn percentile() -> f64 {
        95.0
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

pub(crate) fn invalid(
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
            report_stale_ms: defaults::report_stale_ms(),
            windows_kept: defaults::windows_kept(),
            decisions_kept: defaults::decisions_kept(),
            actuator: ActuatorKind::DryRun,
            webhook: None,
            discovery: None,
            planner_settings: PlannerSettings::default(),
            scaler_settings: ScalerSettings::default(),
            applications: BTreeMap::new(),
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
        if self.report_stale_ms == 0 {
            return Err(invalid("report_stale_ms", 0, "must be > 0"));
        }
        if let Err(e) = self.planner_settings.validate() {
            return Err(invalid(
                format!("planner_settings.{}", e.field),
                e.value,
                e.reason,
            ));
        }
        if let Err(e) = self.scaler_settings.validate() {
            return Err(invalid(
                format!("scaler_settings.{}", e.field),
                e.value,
                e.reason,
            ));
        }
        match (&self.webhook, self.actuator) {
            (Some(w), _) => w.validate()?,
            (None, ActuatorKind::Webhook) => {
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
            if loadshift_policy::planners::scope_kind(&s.planner).is_none() {
                return Err(invalid(
                    f("planner"),
                    &s.planner,
                    format!(
                        "unknown planner; known: {}",
                        loadshift_policy::planners::NAMES.join(", ")
                    ),
                ));
            }
            if loadshift_policy::scalers::scope_kind(&s.scaler).is_none() {
                return Err(invalid(
                    f("scaler"),
                    &s.scaler,
                    format!(
                        "unknown scaler; known: {}",
                        loadshift_policy::scalers::NAMES.join(", ")
                    ),
                ));
            }
            if let Some(ps) = &s.planner_settings {
                if let Err(e) = ps.validate() {
                    return Err(invalid(
                        format!("{}.{}", f("planner_settings"), e.field),
                        e.value,
                        e.reason,
                    ));
                }
                if ps.table_store != TableStoreConfig::Memory {
                    return Err(invalid(
                        format!("{}.table_store", f("planner_settings")),
                        format!("{:?}", ps.table_store),
                        "set the store in the top-level planner_settings: one control plane keeps one table",
                    ));
                }
            }
            if let Some(Err(e)) = s.scaler_settings.as_ref().map(ScalerSettings::validate) {
                return Err(invalid(
                    format!("{}.{}", f("scaler_settings"), e.field),
                    e.value,
                    e.reason,
                ));
            }
            if let Some(Err(e)) = s.objective.as_ref().map(Objective::validate) {
                return Err(invalid(
                    format!("{}.{}", f("objective"), e.field),
                    e.value,
                    e.reason,
                ));
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
        self.validate_applications()?;
        self.assignment()
            .tasks()
            .map_err(|e| invalid("services", "(policies)", e.to_string()))?;
        Ok(())
    }

    fn validate_applications(&self) -> Result<(), ConfigError> {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (app, a) in &self.applications {
            let f = |k: &str| format!("applications.{app}.{k}");
            if app.is_empty() || app == DEFAULT_APPLICATION {
                return Err(invalid(
                    "applications",
                    format!("{app:?}"),
                    format!(
                        "application names must be non-empty and not {DEFAULT_APPLICATION:?} (the services outside every application)"
                    ),
                ));
            }
            if a.services.is_empty() {
                return Err(invalid(
                    f("services"),
                    "[]",
                    "an application needs services",
                ));
            }
            for (i, svc) in a.services.iter().enumerate() {
                if !self.services.contains_key(svc) {
                    return Err(invalid(
                        format!("{}[{i}]", f("services")),
                        svc,
                        "is not a configured service",
                    ));
                }
                if let Some(other) = seen.insert(svc, app) {
                    return Err(invalid(
                        format!("{}[{i}]", f("services")),
                        svc,
                        format!("is already in application {other}; a service belongs to one"),
                    ));
                }
            }
            let members: Vec<&str> = a.services.iter().map(String::as_str).collect();
            if let Some(Err(e)) = a.management.as_ref().map(|m| m.validate(&members)) {
                return Err(invalid(
                    format!("{}.{}", f("management"), e.field),
                    e.value,
                    e.reason,
                ));
            }
            for (name, flow) in &a.flows {
                let ff = |k: &str| format!("{}.{name}.{k}", f("flows"));
                if !members.contains(&flow.entry.as_str()) {
                    return Err(invalid(
                        ff("entry"),
                        &flow.entry,
                        "is not a service of the application",
                    ));
                }
                if let Some(sla) = flow.sla_ms {
                    let o = Objective {
                        sla_ms: sla,
                        percentile: flow.percentile,
                    };
                    if let Err(e) = o.validate() {
                        let field = if e.field == "sla_ms" {
                            "sla_ms"
                        } else {
                            "percentile"
                        };
                        return Err(invalid(ff(field), e.value, e.reason));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every service's planner and scaler with their settings, and the applications: what the
    /// control loop's schedule is built from.
    pub fn assignment(&self) -> Assignment {
        Assignment {
            applications: self
                .applications
                .iter()
                .map(|(n, a)| (n.clone(), a.services.iter().cloned().collect()))
                .collect(),
            services: self
                .services
                .iter()
                .map(|(n, s)| {
                    let choice = Choice {
                        planner: s.planner.clone(),
                        planner_settings: s
                            .planner_settings
                            .clone()
                            .unwrap_or_else(|| self.planner_settings.clone()),
                        scaler: s.scaler.clone(),
                        scaler_settings: s
                            .scaler_settings
                            .clone()
                            .unwrap_or_else(|| self.scaler_settings.clone()),
                    };
                    (n.clone(), choice)
                })
                .collect(),
        }
    }

    pub fn report_stale(&self) -> Duration {
        Duration::from_millis(self.report_stale_ms)
    }
}

#[cfg(test)]
mod tests;
