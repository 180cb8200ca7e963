//! Scenario files: the system `loadshift sim` and `loadshift lab` run, in YAML (`docs/scenarios.md`).
//!
//! A scenario names services and their call graph, hosts with their interference over time, where
//! each service's containers run, zones with the round-trip time between them, request classes
//! (flows) with an arrival process and an SLA, the policy (planner / scaler) per service, and the
//! run's duration, warm-up and seed. An optional `generate` section synthesises a large
//! Alibaba-like call graph so a file with hundreds of services stays a few lines long.
//!
//! [`Scenario::load`] parses, loads traces, expands `generate` and validates; every validation error
//! names the field path, the value and the reason.

pub mod arrival;
pub mod dist;
pub mod generate;
pub mod interference;
pub mod schedule;
#[cfg(test)]
mod tests;
mod validate;

use std::{collections::BTreeMap, path::Path};

use loadshift_policy::{ManagementObjective, planners::PlannerSettings, scalers::ScalerSettings};
use serde::{Deserialize, Serialize};

pub use arrival::{Arrival, ArrivalState};
pub use dist::{Dist, ServiceTime};
pub use generate::Generate;
pub use interference::InterferenceModel;
pub use schedule::Schedule;

/// The zone every host is in when a scenario declares none.
pub const DEFAULT_ZONE: &str = "default";

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports.
    pub name: String,
    /// What the scenario reproduces. Default empty.
    #[serde(default)]
    pub description: String,
    /// RNG seed; the same seed gives the same run. Default 1.
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Simulated seconds during which requests arrive, > 0.
    pub duration_s: f64,
    /// Requests arriving before this many seconds are not counted in the results. Default 0.
    #[serde(default)]
    pub warmup_s: f64,
    /// Width of one row of the time series, seconds. Default 5.
    #[serde(default = "d_interval")]
    pub report_interval_s: f64,
    /// Zones; empty means one zone named `default`.
    #[serde(default)]
    pub zones: Vec<Zone>,
    /// Round-trip time between zones (and within one, with both names equal). Missing pairs: 0.
    #[serde(default)]
    pub rtt: Vec<ZoneRtt>,
    #[serde(default)]
    pub hosts: Vec<Host>,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub flows: Vec<Flow>,
    /// Planner and scaler, globally and per service.
    #[serde(default)]
    pub policy: PolicySpec,
    /// Where the simulator starts a container a scaler adds. Default `round-robin`.
    #[serde(default)]
    pub placement: Placement,
    #[serde(default)]
    pub interference: InterferenceModel,
    #[serde(default)]
    pub telemetry: TelemetrySpec,
    /// Failure and latency-outlier ejection in every simulated proxy: the proxy config's
    /// `ejection` section, the same type. Default: the proxy's defaults (latency detector off).
    #[serde(default)]
    pub ejection: loadshift_core::outlier::Ejection,
    /// Slow start in every simulated proxy: the proxy config's `slow_start` section, the same
    /// type. Default: the proxy's (off).
    #[serde(default)]
    pub slow_start: loadshift_core::balance::slow_start::SlowStart,
    /// Synthesise services, hosts and flows (added to the ones listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<Generate>,
}

fn d_seed() -> u64 {
    1
}
fn d_interval() -> f64 {
    5.0
}

/// Where the simulated actuator starts a container a scaler adds (the initial containers are
/// where `replicas` puts them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Over the hosts in scenario order, each placement continuing after the previous one (of any
    /// service): spreads containers the way a scheduler unaware of interference does.
    #[default]
    RoundRobin,
    /// The host with the most cores not yet taken by container servers; ties to the first.
    MostFreeCores,
}

/// A zone, region or cloud.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
}

/// Round-trip time between two zones over time, milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneRtt {
    /// The two zones (order does not matter; equal names set the intra-zone RTT).
    pub between: [String; 2],
    pub ms: Schedule,
}

/// A machine that runs containers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    /// Zone name. Default `default`.
    #[serde(default = "d_zone")]
    pub zone: String,
    /// CPU cores (for self-load interference and scaler placement). Default 8.
    #[serde(default = "d_cores")]
    pub cores: u32,
    /// Background utilisation by neighbours outside the scenario.
    #[serde(default)]
    pub interference: HostInterference,
}

fn d_zone() -> String {
    DEFAULT_ZONE.to_string()
}
fn d_cores() -> u32 {
    8
}

/// Utilisation schedules in [0, 1] of one host's shared resources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInterference {
    /// Default 0.
    #[serde(default)]
    pub cpu: Schedule,
    /// Memory bandwidth. Default 0.
    #[serde(default)]
    pub membw: Schedule,
    /// Network. Default 0.
    #[serde(default)]
    pub net: Schedule,
}

/// One microservice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    pub service_time: ServiceTime,
    /// Requests one container serves at once (servers of its queue). Default 1.
    #[serde(default = "d_concurrency")]
    pub concurrency: u32,
    /// Initial containers per host name.
    pub replicas: BTreeMap<String, u32>,
    /// How the calls below run after the container's own work. Default `sequence`.
    #[serde(default)]
    pub mode: CallMode,
    /// Downstream calls.
    #[serde(default)]
    pub calls: Vec<Call>,
    /// Probability that the container's own work fails (an error response). Default 0.
    #[serde(default)]
    pub error_rate: f64,
    /// Latency objective handed to planners for this service; default: the SLA of the first flow
    /// entering here, else none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<Sla>,
    /// Callers go on without this service when a call to it fails (the request is degraded, not
    /// failed), and a brownout may take it to zero containers. No flow may enter here. Default
    /// false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

fn d_concurrency() -> u32 {
    1
}

/// Whether a service's calls run one after another or all at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallMode {
    #[default]
    Sequence,
    Parallel,
}

/// One edge of the call graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub service: String,
    /// Probability the call is made, in [0, 1]. Default 1.
    #[serde(default = "d_prob")]
    pub probability: f64,
}

fn d_prob() -> f64 {
    1.0
}

/// A request class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// Also the priority class name plans block by.
    pub name: String,
    /// Service the request enters at.
    pub entry: String,
    /// Zone of the ingress the requests come from. Default: the first zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub arrival: Arrival,
    pub sla: Sla,
    /// A request slower than this counts as failed. Default 10000 ms.
    #[serde(default = "d_timeout")]
    pub timeout_ms: f64,
}

fn d_timeout() -> f64 {
    10_000.0
}

/// An end-to-end latency objective.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sla {
    pub latency_ms: f64,
    /// Percentile the objective is stated at. Default 95.
    #[serde(default = "d_pct")]
    pub percentile: f64,
}

fn d_pct() -> f64 {
    95.0
}

/// Which planner and scaler run; the command line overrides the global choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Planner for every service without its own. Default `p2c-ewma` (no plan: the data plane's
    /// P2C over Peak-EWMA).
    #[serde(default = "d_planner")]
    pub planner: String,
    /// Scaler for every service without its own. Default `none`.
    #[serde(default = "d_scaler")]
    pub scaler: String,
    /// Planner tunables for every service without its own (the control config's
    /// `planner_settings`). Default: the papers' values.
    #[serde(default)]
    pub planner_settings: PlannerSettings,
    /// Scaler tunables for every service without its own (the control config's
    /// `scaler_settings`). Default: each scaler's source's values.
    #[serde(default)]
    pub scaler_settings: ScalerSettings,
    /// The application's management objective (MO1-MO3, seed 004), handed to planners in the
    /// snapshot. Default none.
    #[serde(default)]
    pub management: Option<ManagementObjective>,
    /// Per-service overrides.
    #[serde(default)]
    pub services: BTreeMap<String, ServicePolicy>,
}

impl Default for PolicySpec {
    fn default() -> Self {
        Self {
            planner: d_planner(),
            scaler: d_scaler(),
            planner_settings: PlannerSettings::default(),
            scaler_settings: ScalerSettings::default(),
            management: None,
            services: BTreeMap::new(),
        }
    }
}

fn d_planner() -> String {
    "p2c-ewma".into()
}
fn d_scaler() -> String {
    "none".into()
}

/// One service's policy override.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePolicy {
    /// Planner of this service. Default: `policy.planner`.
    #[serde(default)]
    pub planner: Option<String>,
    /// Scaler of this service. Default: `policy.scaler`.
    #[serde(default)]
    pub scaler: Option<String>,
    /// Planner tunables of this service, replacing `policy.planner_settings` whole. Default:
    /// those.
    #[serde(default)]
    pub planner_settings: Option<PlannerSettings>,
    /// Scaler tunables of this service, replacing `policy.scaler_settings` whole. Default: those.
    #[serde(default)]
    pub scaler_settings: Option<ScalerSettings>,
}

/// Shape of the telemetry windows every simulated proxy keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySpec {
    /// Window slots. Default 10.
    #[serde(default = "d_slots")]
    pub slots: usize,
    /// Slot width in milliseconds. Default 1000.
    #[serde(default = "d_slot_ms")]
    pub slot_ms: u64,
    /// Peak-EWMA decay constant in milliseconds. Default 10000.
    #[serde(default = "d_tau")]
    pub ewma_tau_ms: u64,
    /// Peak-EWMA estimate before the first sample, milliseconds. Default 30.
    #[serde(default = "d_rtt")]
    pub default_rtt_ms: u64,
}

fn d_slots() -> usize {
    10
}
fn d_slot_ms() -> u64 {
    1000
}
fn d_tau() -> u64 {
    10_000
}
fn d_rtt() -> u64 {
    30
}

impl Default for TelemetrySpec {
    fn default() -> Self {
        Self {
            slots: d_slots(),
            slot_ms: d_slot_ms(),
            ewma_tau_ms: d_tau(),
            default_rtt_ms: d_rtt(),
        }
    }
}

impl TelemetrySpec {
    /// The data plane's parameter struct.
    pub fn params(&self) -> loadshift_core::telemetry::TelemetryParams {
        use std::time::Duration;
        loadshift_core::telemetry::TelemetryParams {
            slots: self.slots,
            slot_width: Duration::from_millis(self.slot_ms),
            ewma_tau: Duration::from_millis(self.ewma_tau_ms),
            default_rtt: Duration::from_millis(self.default_rtt_ms),
        }
    }
}

/// Why a scenario was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(#[from] serde_yaml_ng::Error),
    /// A value that parsed but makes no sense: `path: value reason`.
    #[error("{path}: {value} {reason}")]
    Invalid {
        path: String,
        value: String,
        reason: String,
    },
}

impl ScenarioError {
    pub(crate) fn invalid(
        path: impl Into<String>,
        value: impl std::fmt::Debug,
        reason: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            path: path.into(),
            value: format!("{value:?}"),
            reason: reason.into(),
        }
    }
}

impl Scenario {
    /// Reads, parses, loads traces (relative to the file), expands `generate`, validates.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path.parent())
    }

    /// Parses YAML text; traces are resolved against `base` (the current directory when `None`).
    pub fn parse(text: &str, base: Option<&Path>) -> Result<Self, ScenarioError> {
        let mut s: Scenario = serde_yaml_ng::from_str(text)?;
        s.load_traces(base)?;
        if let Some(g) = s.generate.clone() {
            g.check()?;
            g.expand(&mut s);
        }
        validate::validate(&s)?;
        Ok(s)
    }

    fn load_traces(&mut self, base: Option<&Path>) -> Result<(), ScenarioError> {
        for (i, f) in self.flows.iter_mut().enumerate() {
            if let Arrival::Trace { file, points } = &mut f.arrival {
                let p = base.map_or_else(
                    || Path::new(file.as_str()).to_path_buf(),
                    |b| b.join(&*file),
                );
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    ScenarioError::invalid(
                        format!("flows[{i}].arrival.trace.file"),
                        &*file,
                        format!("cannot be read: {e}"),
                    )
                })?;
                *points = arrival::parse_trace(&text).map_err(|(line, reason)| {
                    ScenarioError::invalid(
                        format!("flows[{i}].arrival.trace.file"),
                        &*file,
                        format!("line {line}: {reason}"),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Zone names, in declaration order (`default` when none are declared).
    pub fn zone_names(&self) -> Vec<String> {
        if self.zones.is_empty() {
            vec![DEFAULT_ZONE.to_string()]
        } else {
            self.zones.iter().map(|z| z.name.clone()).collect()
        }
    }

    /// Planner for `service`: its override, else the global one.
    pub fn planner_for(&self, service: &str) -> &str {
        self.policy
            .services
            .get(service)
            .and_then(|p| p.planner.as_deref())
            .unwrap_or(&self.policy.planner)
    }

    /// Scaler for `service`: its override, else the global one.
    pub fn scaler_for(&self, service: &str) -> &str {
        self.policy
            .services
            .get(service)
            .and_then(|p| p.scaler.as_deref())
            .unwrap_or(&self.policy.scaler)
    }

    /// Multiplies every flow's SLA latency by `factor` (`--sla-scale`: < 1 stricter, > 1 slacker).
    /// Explicit `services[].objective` and management bounds are left as written; services
    /// without an objective take their entry flow's scaled SLA.
    pub fn scale_sla(&mut self, factor: f64) {
        for f in &mut self.flows {
            f.sla.latency_ms *= factor;
        }
    }

    /// Initial containers over all services.
    pub fn container_count(&self) -> u64 {
        self.services
            .iter()
            .flat_map(|s| s.replicas.values())
            .map(|&r| u64::from(r))
            .sum()
    }
}
