//! The configuration of every lab process, derived from the scenario and the layout: the control
//! plane's config (services, their planners and static endpoints), one sidecar config per
//! container, the gateway (a standalone proxy the load generator sends to, routing by `Host` to
//! each flow's entry service) and the `loadshift app` arguments per container.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use loadshift_control::{
    ControlConfig,
    config::{
        ActuatorKind, ApplicationConfig, EndpointConfig, FileDiscoveryConfig, FlowConfig,
        ServiceConfig, WebhookConfig,
    },
};
use loadshift_policy::{
    ActionKind, Objective, registry,
    scalers::ScalerSettings,
    schedule::{Role, Schedule},
};
use loadshift_sim::scenario::{CallMode, Dist, Scenario};
use serde_json::{Value, json};

use super::layout::ContainerSpec;

/// Request header carrying the flow (priority class) from the generator through every hop.
pub const PRIORITY_HEADER: &str = "x-loadshift-priority";

/// Addresses of one container's processes.
#[derive(Debug, Clone)]
pub struct Ports {
    /// The app's listener.
    pub app: SocketAddr,
    /// The sidecar's inbound listener (what peers call).
    pub inbound: SocketAddr,
    /// The sidecar's outbound listener (what the app calls).
    pub outbound: SocketAddr,
    /// The sidecar's admin listener.
    pub admin: SocketAddr,
}

/// One container with its addresses.
#[derive(Debug, Clone)]
pub struct Placed {
    /// What it is.
    pub spec: ContainerSpec,
    /// Where it listens.
    pub ports: Ports,
}

fn endpoints(placed: &[Placed], service: &str) -> Vec<Value> {
    placed
        .iter()
        .filter(|p| p.spec.service == service)
        .map(|p| {
            json!({
                "addr": p.spec.front.unwrap_or(p.ports.inbound).to_string(),
                "host": p.spec.host,
                "zone": p.spec.zone,
                "container": p.spec.name,
            })
        })
        .collect()
}

fn services(s: &Scenario, placed: &[Placed]) -> Vec<Value> {
    s.services
        .iter()
        .map(|svc| json!({ "name": svc.name, "authorities": [svc.name], "endpoints": endpoints(placed, &svc.name) }))
        .collect()
}

/// `loadshift control` config: every service with its planner (`planner` overrides the
/// scenario's), scaler and settings as the scenario gives them, its objective and static
/// endpoints, and the scenario as one application with its management objective and flows.
/// `metrics` serves `/metrics` (the lab reads plan pushes there).
pub fn control(
    s: &Scenario,
    placed: &[Placed],
    listen: SocketAddr,
    metrics: SocketAddr,
    token: &Path,
    planner: Option<&str>,
) -> ControlConfig {
    let mut cfg = ControlConfig::new(listen, token);
    cfg.metrics_listen = Some(metrics);
    cfg.planner_settings = s.policy.planner_settings.clone();
    for svc in &s.services {
        let own = s.policy.services.get(&svc.name);
        let objective = svc
            .objective
            .clone()
            .or_else(|| {
                s.flows
                    .iter()
                    .find(|f| f.entry == svc.name)
                    .map(|f| f.sla.clone())
            })
            .map(|o| Objective {
                sla_ms: o.latency_ms,
                percentile: o.percentile,
            });
        let service = ServiceConfig {
            planner: planner.unwrap_or(s.planner_for(&svc.name)).to_string(),
            scaler: s.scaler_for(&svc.name).to_string(),
            scaler_settings: Some(
                own.and_then(|p| p.scaler_settings.clone())
                    .unwrap_or_else(|| s.policy.scaler_settings.clone()),
            ),
            planner_settings: own.and_then(|p| p.planner_settings.clone()),
            objective,
            endpoints: endpoint_configs(placed, &svc.name),
        };
        cfg.services.insert(svc.name.clone(), service);
    }
    cfg.applications.insert(
        s.name.clone(),
        ApplicationConfig {
            services: s.services.iter().map(|x| x.name.clone()).collect(),
            management: s.policy.management.clone(),
            flows: s
                .flows
                .iter()
                .map(|f| {
                    let flow = FlowConfig {
                        entry: f.entry.clone(),
                        sla_ms: Some(f.sla.latency_ms),
                        percentile: f.sla.percentile,
                    };
                    (f.name.clone(), flow)
                })
                .collect(),
        },
    );
    cfg
}

/// One service's containers as the control config lists them.
pub fn endpoint_configs(placed: &[Placed], service: &str) -> Vec<EndpointConfig> {
    placed
        .iter()
        .filter(|p| p.spec.service == service)
        .map(|p| EndpointConfig {
            addr: p.spec.front.unwrap_or(p.ports.inbound),
            host: p.spec.host.clone(),
            zone: p.spec.zone.clone(),
            container: Some(p.spec.name.clone()),
            weight: 1.0,
        })
        .collect()
}

/// The period of the fastest planner the control plane runs with `cfg`: the schedule built the
/// way the control plane builds it.
pub fn control_interval(cfg: &ControlConfig) -> anyhow::Result<Duration> {
    let mut schedule = Schedule::new();
    let specs = cfg.assignment().tasks()?;
    schedule.sync(specs, Duration::ZERO, registry::build)?;
    Ok(schedule
        .tasks()
        .iter()
        .filter(|t| t.role == Role::Planner)
        .map(|t| t.interval)
        .min()
        .unwrap_or(Duration::from_secs(5)))
}

fn control_client(control: SocketAddr, token: &Path) -> Value {
    json!({ "url": format!("http://{control}"), "token_file": token.display().to_string() })
}

/// Sidecar config of one container. The scenario's `ejection` and `slow_start` sections are the
/// proxy config's own types and go in as they are, so the lab's proxies run what the twin's do.
pub fn sidecar(
    s: &Scenario,
    placed: &[Placed],
    me: &Placed,
    control: SocketAddr,
    token: &Path,
) -> Value {
    json!({
        "mode": "sidecar",
        "identity": { "pod": me.spec.name, "container": me.spec.name, "host": me.spec.host, "zone": me.spec.zone },
        "inbound": { "listen": me.ports.inbound.to_string(), "app": me.ports.app.to_string(), "service": me.spec.service },
        "outbound": { "listen": me.ports.outbound.to_string() },
        "admin": { "listen": me.ports.admin.to_string() },
        "workers": 1,
        "priority_header": PRIORITY_HEADER,
        "services": services(s, placed),
        "control": control_client(control, token),
        "ejection": s.ejection,
        "slow_start": s.slow_start,
    })
}

/// The gateway: a standalone proxy in front of the flows' entry services.
pub fn gateway(
    s: &Scenario,
    placed: &[Placed],
    listen: SocketAddr,
    admin: SocketAddr,
    control: SocketAddr,
    token: &Path,
) -> Value {
    let zone = s.hosts.first().map(|h| h.zone.clone()).unwrap_or_default();
    let host = s.hosts.first().map(|h| h.name.clone()).unwrap_or_default();
    json!({
        "mode": "standalone",
        "identity": { "pod": "gateway", "container": "gateway", "host": host, "zone": zone },
        "outbound": { "listen": listen.to_string() },
        "admin": { "listen": admin.to_string() },
        "workers": 1,
        "priority_header": PRIORITY_HEADER,
        "services": services(s, placed),
        "control": control_client(control, token),
        "ejection": s.ejection,
        "slow_start": s.slow_start,
    })
}

/// `loadshift app` arguments of one container; `concurrency` overrides the service's (a CPU
/// limit the lab carried out, see `super::scaling`). Calls to an optional service are
/// `--optional`: the app goes on without them when they fail.
pub fn app_args(
    s: &Scenario,
    me: &Placed,
    interference_file: &Path,
    concurrency: Option<u32>,
) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "app".into(),
        "--listen".into(),
        me.ports.app.to_string(),
        "--service".into(),
        me.spec.service.clone(),
        "--container".into(),
        me.spec.name.clone(),
        "--outbound".into(),
        me.ports.outbound.to_string(),
        "--interference-file".into(),
        interference_file.display().to_string(),
        "--propagate".into(),
        PRIORITY_HEADER.into(),
    ];
    let Some(svc) = s.services.iter().find(|x| x.name == me.spec.service) else {
        return a;
    };
    let st = &svc.service_time;
    let dist = match st.dist {
        Dist::Exponential => format!("exp:{}", st.mean_ms),
        Dist::Lognormal => format!("lognormal:{}:{}", st.mean_ms, st.sigma),
        Dist::Constant => format!("const:{}", st.mean_ms),
    };
    a.extend([
        "--service-time".into(),
        dist,
        "--concurrency".into(),
        concurrency.unwrap_or(svc.concurrency).max(1).to_string(),
    ]);
    a.extend(["--error-rate".into(), svc.error_rate.to_string()]);
    let mode = match svc.mode {
        CallMode::Sequence => "sequence",
        CallMode::Parallel => "parallel",
    };
    a.extend(["--calls".into(), mode.into()]);
    for c in &svc.calls {
        a.extend(["--child".into(), format!("{}:{}", c.service, c.probability)]);
    }
    let mut optional: Vec<&str> = svc
        .calls
        .iter()
        .filter(|c| s.services.iter().any(|x| x.name == c.service && x.optional))
        .map(|c| c.service.as_str())
        .collect();
    optional.sort_unstable();
    optional.dedup();
    for o in optional {
        a.extend(["--optional".into(), o.to_string()]);
    }
    if s.interference.self_load {
        let dir = host_dir(
            interference_file.parent().unwrap_or(Path::new(".")),
            &me.spec.host,
        );
        let cores = s
            .hosts
            .iter()
            .find(|h| h.name == me.spec.host)
            .map_or(1, |h| h.cores);
        a.extend([
            "--host-dir".into(),
            dir.display().to_string(),
            "--host-cores".into(),
            cores.to_string(),
            "--host-a-cpu".into(),
            s.interference.a_cpu.to_string(),
            "--host-cap".into(),
            s.interference.cap.to_string(),
        ]);
    }
    a
}

/// The directory the apps of emulated host `host` share (`loadshift app --host-dir`) under a
/// run's directory: their busy servers and the host's background CPU share, for scenarios whose
/// interference counts the containers' own load (`self_load`).
pub fn host_dir(run_dir: &Path, host: &str) -> PathBuf {
    run_dir.join("hosts").join(host)
}

/// Renders a config as YAML.
pub fn yaml(v: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_yaml_ng::to_string(v)?)
}

/// What makes the lab's control plane scale through the lab: its actuator POSTs to the lab's
/// receiver, its discovery reads the endpoints file the lab rewrites, and each service gets its
/// scaler with the lab's tunables.
#[derive(Debug, Clone)]
pub struct ControlEdit {
    pub url: String,
    pub endpoints_file: PathBuf,
    /// How often the control plane re-reads the endpoints file.
    pub poll: Duration,
    /// Per service: the scaler and its settings.
    pub scalers: BTreeMap<String, (String, ScalerSettings)>,
}

impl ControlEdit {
    /// Points the config's actuator at the receiver and its discovery at the endpoints file,
    /// writes that file from the config's static endpoints (it must exist at start) and sets
    /// every service's scaler.
    pub fn apply(&self, cfg: &mut ControlConfig) -> anyhow::Result<()> {
        let initial: BTreeMap<&String, &Vec<EndpointConfig>> = cfg
            .services
            .iter()
            .map(|(name, svc)| (name, &svc.endpoints))
            .collect();
        std::fs::write(&self.endpoints_file, yaml(&initial)?)
            .with_context(|| format!("write {}", self.endpoints_file.display()))?;
        cfg.actuator = ActuatorKind::Webhook;
        cfg.webhook = Some(WebhookConfig {
            url: self.url.clone(),
            timeout_ms: 30_000,
            token_file: None,
            kinds: vec![
                ActionKind::Replicas,
                ActionKind::Limits,
                ActionKind::Brownout,
            ],
        });
        cfg.discovery = Some(FileDiscoveryConfig {
            file: self.endpoints_file.clone(),
            poll_ms: self.poll.as_millis() as u64,
        });
        for (name, (scaler, settings)) in &self.scalers {
            if let Some(svc) = cfg.services.get_mut(name) {
                svc.scaler.clone_from(scaler);
                svc.scaler_settings = Some(settings.clone());
            }
        }
        Ok(())
    }
}
