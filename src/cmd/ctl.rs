//! `loadshift ctl`: the operator CLI over the control plane's `Operator` API. Human tables by
//! default, `--json` for scripts (one JSON document per command; one per line for `watch`).

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use loadshift_core::plan::ServicePlan;
use loadshift_proto::v1::{self as pb, operator_client::OperatorClient};

use serde_json::{Value, json};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::interceptor::InterceptedService,
    transport::Channel,
};

/// `println!` to stdout that hands a failed write (a closed pipe: `ctl status | head`) back as an
/// error, which `main` ends on quietly when it is one.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)?
    }};
}

/// `print!` with the same handling as [`outln`].
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($t)*)?
    }};
}

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// Operator API of the control plane.
    #[arg(long, default_value = "http://127.0.0.1:7071", global = true)]
    server: String,
    /// File with the bearer token (the control plane's `token_file`; `loadshift token create`
    /// writes one).
    #[arg(long, global = true, default_value = crate::cmd::DEFAULT_TOKEN_FILE)]
    token_file: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: CtlCmd,
}

#[derive(Subcommand, Debug)]
enum CtlCmd {
    /// Per service: endpoints, shares, p95, blocking, plan in force.
    Status {
        /// Only this service.
        service: Option<String>,
    },
    /// Print plans as they change (starts with the current ones).
    Watch {
        /// Only these services (default: all).
        services: Vec<String>,
    },
    /// Objectives and policies.
    #[command(subcommand)]
    Objective(ObjectiveCmd),
    /// Pin a plan: it wins over the planner until `unpin`.
    Pin(PinArgs),
    /// Remove a pin; the planner's plan applies again.
    Unpin { service: String },
    /// Recent scaling decisions.
    Decisions {
        #[arg(long)]
        service: Option<String>,
        /// Most recent N (0 = all kept).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Subcommand, Debug)]
enum ObjectiveCmd {
    /// Set the SLA, planner, scaler or management objective of a service (others unchanged).
    Set(ObjectiveArgs),
}

#[derive(Args, Debug)]
struct ObjectiveArgs {
    service: String,
    /// Latency target in ms (0 clears the objective).
    #[arg(long)]
    sla_ms: Option<f64>,
    /// Percentile of the target.
    #[arg(long, default_value_t = 95.0)]
    percentile: f64,
    /// Request class the objective is for (default: the whole service).
    #[arg(long, default_value = "")]
    flow: String,
    /// Planner registry name.
    #[arg(long, long_help = crate::cmd::planner_help("Planner of the service."))]
    planner: Option<String>,
    /// Scaler registry name.
    #[arg(long, long_help = crate::cmd::scaler_help("Scaler of the service."))]
    scaler: Option<String>,
    /// Management objective of the service's application: mo1, mo2 or mo3 (or `clear`).
    #[arg(long)]
    mo: Option<String>,
    /// MO response-time bound per service, `service=ms` (repeatable).
    #[arg(long = "bound", value_parser = parse_kv)]
    bounds: Vec<(String, f64)>,
    /// MO2 utility weight per service, `service=w` (repeatable).
    #[arg(long = "utility", value_parser = parse_kv)]
    utilities: Vec<(String, f64)>,
    /// MO3: service whose carried load is maximised.
    #[arg(long, default_value = "")]
    favoured: String,
    /// MO3: service protected from starving.
    #[arg(long, default_value = "")]
    protected: String,
    /// MO3: minimum carried load of the protected service, requests/s.
    #[arg(long, default_value_t = 0.0)]
    min_rps: f64,
}

#[derive(Args, Debug)]
struct PinArgs {
    service: String,
    /// Endpoint weight `ip:port=w` (repeatable).
    #[arg(long = "weight", value_parser = parse_kv)]
    weights: Vec<(String, f64)>,
    /// Blocking fraction per class, `class=fraction` (repeatable; class `*` = every class).
    #[arg(long = "block", value_parser = parse_kv)]
    blocks: Vec<(String, f64)>,
    /// A whole service plan as YAML or JSON (same fields as the proxy's plan file).
    #[arg(long, conflicts_with_all = ["weights", "blocks"])]
    file: Option<PathBuf>,
}

fn parse_kv(s: &str) -> Result<(String, f64), String> {
    let (k, v) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?}: expected key=value"))?;
    let v: f64 = v
        .parse()
        .map_err(|_| format!("{s:?}: {v:?} is not a number"))?;
    Ok((k.to_string(), v))
}

type Client = OperatorClient<InterceptedService<Channel, Auth>>;

#[derive(Clone)]
struct Auth(MetadataValue<Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub fn main(args: CtlArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadshift ctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): nothing left to say to it.
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadshift ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

async fn connect(args: &CtlArgs) -> Result<Client> {
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading token file {:?}", args.token_file))?;
    let bearer: MetadataValue<Ascii> = format!("Bearer {}", token.trim())
        .parse()
        .context("token is not a valid header value")?;
    let channel = tonic::transport::Endpoint::from_shared(args.server.clone())
        .with_context(|| format!("server url {:?}", args.server))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.server))?;
    Ok(OperatorClient::with_interceptor(channel, Auth(bearer)))
}

async fn run(args: CtlArgs) -> Result<()> {
    let mut c = connect(&args).await?;
    let json = args.json;
    match args.cmd {
        CtlCmd::Status { service } => {
            let req = pb::GetStateRequest {
                service: service.unwrap_or_default(),
            };
            let st = c.get_state(req).await?.into_inner();
            if json {
                outln!("{}", serde_json::to_string_pretty(&state_json(&st))?);
            } else {
                out!("{}", state_table(&st));
            }
        }
        CtlCmd::Watch { services } => {
            let mut s = c
                .watch_plans(pb::WatchPlansRequest { services })
                .await?
                .into_inner();
            // Per service, the plan last shown: what changed since is marked.
            let mut shown: BTreeMap<String, ServicePlan> = BTreeMap::new();
            if !json {
                outln!(
                    "{:<10} {:<20} {:<10} PLAN (* changed since the service's last line)",
                    "REVISION",
                    "SERVICE",
                    "SOURCE"
                );
            }
            while let Some(ev) = s.message().await? {
                if json {
                    outln!("{}", event_json(&ev));
                    continue;
                }
                let plan = ev.plan.as_ref().map(ServicePlan::from);
                let line = match &plan {
                    Some(p) => plan_line(p, shown.get(&ev.service)),
                    None => "no plan".into(),
                };
                outln!(
                    "{:<10} {:<20} {:<10} {line}",
                    ev.plan_revision,
                    ev.service,
                    ev.source
                );
                match plan {
                    Some(p) => shown.insert(ev.service.clone(), p),
                    None => shown.remove(&ev.service),
                };
            }
        }
        CtlCmd::Objective(ObjectiveCmd::Set(o)) => {
            let management = o.mo.as_deref().map(|m| management(&o, m)).transpose()?;
            let req = pb::SetObjectiveRequest {
                service: o.service.clone(),
                objective: o.sla_ms.map(|sla_ms| pb::Objective {
                    sla_ms,
                    percentile: o.percentile,
                    flow: o.flow.clone(),
                }),
                planner: o.planner.clone().unwrap_or_default(),
                scaler: o.scaler.clone().unwrap_or_default(),
                management,
            };
            let r = c.set_objective(req).await?.into_inner();
            let s = r.service.unwrap_or_default();
            if json {
                outln!(
                    "{}",
                    json!({"service": s.name, "planner": s.planner, "scaler": s.scaler, "pinned": s.pinned, "application": s.application, "planner_scope": s.planner_scope, "scaler_scope": s.scaler_scope})
                );
            } else {
                outln!(
                    "{}: planner={} ({}) scaler={} ({}) application={} pinned={}",
                    s.name,
                    s.planner,
                    s.planner_scope,
                    s.scaler,
                    s.scaler_scope,
                    s.application,
                    s.pinned
                );
            }
        }
        CtlCmd::Pin(p) => {
            let plan = match &p.file {
                Some(f) => {
                    let text =
                        std::fs::read_to_string(f).with_context(|| format!("reading {f:?}"))?;
                    serde_yaml_ng::from_str::<ServicePlan>(&text)
                        .with_context(|| format!("parsing {f:?}"))?
                }
                None => {
                    if p.weights.is_empty() && p.blocks.is_empty() {
                        bail!("give --weight ip:port=w, --block class=fraction or --file PLAN");
                    }
                    ServicePlan {
                        endpoint_weights: p.weights.iter().cloned().collect(),
                        blocking: p
                            .blocks
                            .iter()
                            .map(|(k, f)| {
                                (
                                    k.clone(),
                                    loadshift_core::plan::Blocking {
                                        fraction: *f,
                                        max_in_flight: None,
                                    },
                                )
                            })
                            .collect(),
                        ..Default::default()
                    }
                }
            };
            let req = pb::PinPlanRequest {
                service: p.service.clone(),
                plan: Some(pb::ServicePlan::from(&plan)),
            };
            let r = c.pin_plan(req).await?.into_inner();
            print_revision(json, &p.service, "pinned", r.plan_revision)?;
        }
        CtlCmd::Unpin { service } => {
            let r = c
                .unpin(pb::UnpinRequest {
                    service: service.clone(),
                })
                .await?
                .into_inner();
            print_revision(json, &service, "unpinned", r.plan_revision)?;
        }
        CtlCmd::Decisions { service, limit } => {
            let req = pb::ListScaleDecisionsRequest {
                service: service.unwrap_or_default(),
                limit,
            };
            let r = c.list_scale_decisions(req).await?.into_inner();
            if json {
                let v: Vec<Value> = r.decisions.iter().map(|d| json!({
                    "service": d.service, "from": d.from, "to": d.to, "reason": d.reason,
                    "scaler": d.scaler, "actuator": d.actuator, "error": d.error, "unix_ms": d.unix_ms,
                    "cpu_millicores": d.cpu_millicores, "memory_mib": d.memory_mib,
                    "brownout": d.brownout, "outcome": d.outcome,
                })).collect();
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else if r.decisions.is_empty() {
                outln!("no scale decisions");
            } else {
                outln!(
                    "{:<14} {:<20} {:>5} {:>5} {:<10} {:<10} REASON",
                    "UNIX_MS",
                    "SERVICE",
                    "FROM",
                    "TO",
                    "SCALER",
                    "ACTUATOR"
                );
                for d in &r.decisions {
                    let mut reason = d.reason.clone();
                    if let Some(c) = d.cpu_millicores {
                        reason = format!("cpu {c}m; {reason}");
                    }
                    if let Some(m) = d.memory_mib {
                        reason = format!("memory {m} MiB; {reason}");
                    }
                    if d.brownout {
                        reason = format!("brownout; {reason}");
                    }
                    if !d.error.is_empty() {
                        let how = if d.outcome.is_empty() {
                            "failed"
                        } else {
                            &d.outcome
                        };
                        reason = format!("{reason} ({how}: {})", d.error);
                    }
                    outln!(
                        "{:<14} {:<20} {:>5} {:>5} {:<10} {:<10} {}",
                        d.unix_ms,
                        d.service,
                        d.from,
                        d.to,
                        d.scaler,
                        d.actuator,
                        reason
                    );
                }
            }
        }
    }
    Ok(())
}

fn management(o: &ObjectiveArgs, mo: &str) -> Result<pb::ManagementObjective> {
    let kind = match mo.to_ascii_lowercase().as_str() {
        "mo1" => pb::management_objective::Kind::Mo1,
        "mo2" => pb::management_objective::Kind::Mo2,
        "mo3" => pb::management_objective::Kind::Mo3,
        "clear" => {
            return Ok(pb::ManagementObjective {
                clear: true,
                ..Default::default()
            });
        }
        other => bail!("--mo {other:?}: expected mo1, mo2, mo3 or clear"),
    };
    Ok(pb::ManagementObjective {
        kind: kind as i32,
        max_response_ms: o.bounds.iter().cloned().collect(),
        utility_weight: o.utilities.iter().cloned().collect(),
        protected_service: o.protected.clone(),
        min_carried_rps: o.min_rps,
        favoured_service: o.favoured.clone(),
        clear: false,
    })
}

fn print_revision(json: bool, service: &str, what: &str, revision: u64) -> Result<()> {
    if json {
        outln!(
            "{}",
            json!({"service": service, "action": what, "plan_revision": revision})
        );
    } else {
        outln!("{service}: {what}, plan revision {revision}");
    }
    Ok(())
}

fn plan_json(p: &pb::ServicePlan) -> Value {
    let plan = ServicePlan::from(p);
    serde_json::to_value(plan).unwrap_or(Value::Null)
}

/// One plan on one line for people: weights to two decimals, every entry that differs from
/// `before` (the service's previous plan) marked `*`.
fn plan_line(p: &ServicePlan, before: Option<&ServicePlan>) -> String {
    let mark = |changed: bool| if changed && before.is_some() { "*" } else { "" };
    let weights = |label: &str,
                   now: &BTreeMap<String, f64>,
                   was: Option<&BTreeMap<String, f64>>|
     -> Option<String> {
        if now.is_empty() {
            return None;
        }
        let items: Vec<String> = now
            .iter()
            .map(|(k, v)| {
                let old = was.and_then(|w| w.get(k));
                let changed = old.is_none_or(|o| (o - v).abs() >= 0.005);
                format!("{k} {v:.2}{}", mark(changed))
            })
            .collect();
        Some(format!("{label}: {}", items.join(", ")))
    };
    let mut parts: Vec<String> = [
        weights(
            "endpoints",
            &p.endpoint_weights,
            before.map(|b| &b.endpoint_weights),
        ),
        weights("hosts", &p.host_weights, before.map(|b| &b.host_weights)),
        weights("zones", &p.zone_weights, before.map(|b| &b.zone_weights)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !p.subset.is_empty() {
        let was: BTreeMap<&str, f64> = before
            .map(|b| {
                b.subset
                    .iter()
                    .map(|e| (e.endpoint.as_str(), e.share))
                    .collect()
            })
            .unwrap_or_default();
        let items: Vec<String> = p
            .subset
            .iter()
            .map(|e| {
                let changed = was
                    .get(e.endpoint.as_str())
                    .is_none_or(|o| (o - e.share).abs() >= 0.005);
                format!("{} {:.2}{}", e.endpoint, e.share, mark(changed))
            })
            .collect();
        parts.push(format!("subset: {}", items.join(", ")));
    }
    if let Some(k) = p.subset_size.filter(|&k| k > 0) {
        let changed = before.is_none_or(|b| b.subset_size != p.subset_size);
        parts.push(format!("subset of {k}{}", mark(changed)));
    }
    if p.weighted_p2c {
        parts.push("weighted p2c".into());
    }
    if !p.algorithm.is_default() {
        let a = serde_json::to_value(p.algorithm)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        parts.push(format!("algorithm {a}"));
    }
    for (class, b) in &p.blocking {
        let changed = before
            .and_then(|x| x.blocking.get(class))
            .is_none_or(|o| o != b);
        let cap = b
            .max_in_flight
            .map_or(String::new(), |c| format!(", at most {c} in flight"));
        parts.push(format!(
            "block {class} {:.0} %{cap}{}",
            b.fraction * 100.0,
            mark(changed)
        ));
    }
    if parts.is_empty() {
        "data plane default (P2C over Peak-EWMA)".into()
    } else {
        parts.join("; ")
    }
}

fn event_json(ev: &pb::PlanEvent) -> Value {
    json!({
        "service": ev.service, "plan_revision": ev.plan_revision, "source": ev.source,
        "unix_ms": ev.unix_ms, "plan": ev.plan.as_ref().map(plan_json),
    })
}

fn window_json(w: Option<&pb::Window>) -> Value {
    w.map_or(Value::Null, |w| {
        json!({
            "count": w.count, "errors": w.errors, "mean_ms": w.mean_ms, "p50_ms": w.p50_ms,
            "p95_ms": w.p95_ms, "p99_ms": w.p99_ms, "window_s": w.window_s,
        })
    })
}

fn management_json(m: &pb::ManagementObjective) -> Value {
    let kind =
        pb::management_objective::Kind::try_from(m.kind).map_or("unknown", |k| k.as_str_name());
    json!({
        "kind": kind, "bounds_ms": m.max_response_ms, "utility": m.utility_weight,
        "favoured": m.favoured_service, "protected": m.protected_service,
        "min_carried_rps": m.min_carried_rps,
    })
}

fn state_json(st: &pb::GetStateResponse) -> Value {
    let services: Vec<Value> = st.services.iter().map(|s| json!({
        "name": s.name, "planner": s.planner, "scaler": s.scaler, "pinned": s.pinned,
        "plan_revision": s.plan_revision, "offered_rps": s.offered_rps, "callers": s.callers,
        "history": s.history.iter().map(|h| json!({
            "unix_ms": h.unix_ms, "offered_rps": h.offered_rps, "outbound_p95_ms": h.outbound_p95_ms,
            "inbound_p95_ms": h.inbound_p95_ms, "calls": h.calls, "errors": h.errors,
        })).collect::<Vec<_>>(),
        "objective": s.objective.as_ref().map(|o| json!({"sla_ms": o.sla_ms, "percentile": o.percentile, "flow": o.flow})),
        "management": s.management.as_ref().map(management_json),
        "plan": s.plan.as_ref().map(plan_json),
        "blocked": s.blocked.iter().map(|b| (b.class.clone(), b.count)).collect::<BTreeMap<_, _>>(),
        "endpoints": s.endpoints.iter().map(|e| {
            let ep = e.endpoint.clone().unwrap_or_default();
            json!({
                "addr": ep.addr, "host": ep.host, "zone": ep.zone, "container": ep.container,
                "share": e.share, "in_flight": e.in_flight, "ewma_ms": e.ewma_ms,
                "inbound": window_json(e.inbound.as_ref()), "outbound": window_json(e.outbound.as_ref()),
            })
        }).collect::<Vec<_>>(),
    })).collect();
    let hosts: BTreeMap<String, Value> = st.hosts.iter().map(|h| {
        let p = h.pressure.unwrap_or_default();
        (h.host.clone(), json!({"cpu_util": p.cpu_util, "psi_cpu": p.psi_cpu, "psi_memory": p.psi_memory, "psi_io": p.psi_io}))
    }).collect();
    json!({"proxies": st.proxies, "services": services, "hosts": hosts})
}

fn state_table(st: &pb::GetStateResponse) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{} proxies connected", st.proxies);
    for s in &st.services {
        let objective = s.objective.as_ref().map_or("none".into(), |o| {
            format!("p{}<{}ms", o.percentile, o.sla_ms)
        });
        let _ = writeln!(
            out,
            "\nservice {}  planner={} scaler={} objective={} pinned={} revision={} offered={:.1} rps callers={}",
            s.name,
            s.planner,
            s.scaler,
            objective,
            if s.pinned { "yes" } else { "no" },
            s.plan_revision,
            s.offered_rps,
            s.callers.len()
        );
        let _ = writeln!(
            out,
            "  {:<22} {:<10} {:<8} {:>6} {:>9} {:>9} {:>8} {:>8}",
            "ENDPOINT", "HOST", "ZONE", "SHARE", "P95_IN", "P95_OUT", "CALLS", "INFLIGHT"
        );
        for e in &s.endpoints {
            let ep = e.endpoint.clone().unwrap_or_default();
            let p95_in = e
                .inbound
                .as_ref()
                .map_or("-".into(), |w| format!("{:.1}ms", w.p95_ms));
            let out_w = e.outbound.unwrap_or_default();
            let p95_out = if out_w.count == 0 {
                "-".into()
            } else {
                format!("{:.1}ms", out_w.p95_ms)
            };
            let _ = writeln!(
                out,
                "  {:<22} {:<10} {:<8} {:>5.1}% {:>9} {:>9} {:>8} {:>8}",
                ep.addr,
                ep.host,
                ep.zone,
                e.share * 100.0,
                p95_in,
                p95_out,
                out_w.count,
                e.in_flight
            );
        }
        if let Some(p) = &s.plan {
            for (class, b) in &p.blocking {
                let _ = writeln!(
                    out,
                    "  blocking class {class}: {:.1}%{}",
                    b.fraction * 100.0,
                    b.max_in_flight
                        .map_or(String::new(), |m| format!(", max in flight {m}"))
                );
            }
        }
        for b in &s.blocked {
            let _ = writeln!(out, "  blocked in window, class {}: {}", b.class, b.count);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use loadshift_core::plan::Blocking;

    use super::*;

    #[test]
    fn a_plan_line_rounds_weights_and_marks_what_changed() {
        let hosts = |a: f64, b: f64| ServicePlan {
            host_weights: [("node-a".into(), a), ("node-b".into(), b)].into(),
            weighted_p2c: true,
            ..Default::default()
        };
        let first = hosts(0.512_345_678_901_234_5, 0.487_654_321_098_765_4);
        assert_eq!(
            plan_line(&first, None),
            "hosts: node-a 0.51, node-b 0.49; weighted p2c"
        );
        let mut next = hosts(0.512, 0.30);
        next.blocking.insert(
            "bronze".into(),
            Blocking {
                fraction: 0.25,
                max_in_flight: None,
            },
        );
        assert_eq!(
            plan_line(&next, Some(&first)),
            "hosts: node-a 0.51, node-b 0.30*; weighted p2c; block bronze 25 %*"
        );
        assert_eq!(
            plan_line(&ServicePlan::default(), None),
            "data plane default (P2C over Peak-EWMA)"
        );
    }
}
