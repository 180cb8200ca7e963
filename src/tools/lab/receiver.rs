//! The lab's scale receiver: what the control plane's `webhook` actuator POSTs each
//! [`ScaleDecision`] to (`POST /scale`), carried out on the [`Fleet`].
//!
//! The lab's webhook config lists every kind (`replicas`, `limits`, `brownout`); this receiver
//! carries out, in order:
//! - **limits**: a CPU limit becomes the service's per-container concurrency,
//!   `max(1, round(c * cpu_millicores / 1000))` with `c` the scenario's `concurrency`: the
//!   scenario's value is what one core (1000 millicores) serves at once, and the emulated app's
//!   service slots are the only capacity it has. The live containers are resized in place
//!   (`loadshift app`'s `PUT /_loadshift/concurrency`, work in service is not cut) and replicas
//!   started later get it. A memory limit has nothing to act on in the emulated app: it is not
//!   applied, and the reply says so; a decision that only sets a memory limit is refused (422).
//! - **replicas / brownout**: the service goes to `to` containers ([`Fleet::resize`]). Only an
//!   optional service (the scenario's `optional: true`) may be browned out: `brownout: true,
//!   to: 0` stops all of its containers and leaves it with no endpoints, `brownout: true, to: n`
//!   brings it back. A brownout for another service is refused (422), and so is a decision
//!   without `brownout` for a browned-out service (409), so a scaler does not undo a brownout.
//!
//! Answers: `200 {"service", "containers", "concurrency", "brownout"}` once carried out
//! (`containers` reached, within the fleet's bounds; `concurrency` of each container;
//! `brownout`: the service has no container now), with `cpu_millicores` when a CPU limit was
//! applied and `not_applied: {"memory_mib": why}` when a memory limit was not; `400` for a body
//! that is no valid decision; `404` for an unknown service; `409` / `422` as above; `503` while
//! the fleet is not there yet or stopping; `500` when a replica fails to start or an app refuses
//! its concurrency. Every error body is `{"error"}` naming the service and the reason.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use loadshift_policy::{ActionKind, ScaleDecision};
use loadshift_sim::scenario::Scenario;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::fleet::Fleet;
use crate::tools::app::server::{CONCURRENCY_PATH, MAX_CONCURRENCY};
use crate::tools::support::Pool;

/// Where the fleet goes once the supervisor has started the processes.
pub type Slot = Arc<Mutex<Option<Arc<Fleet>>>>;

/// How long an app has to answer a concurrency change.
const APP_TIMEOUT: Duration = Duration::from_secs(2);

/// A refusal or failure: the status and the message of the `{"error"}` body.
type Refused = (StatusCode, String);

/// Serves `POST /scale` until aborted.
pub async fn receive(listener: tokio::net::TcpListener, slot: Slot) {
    while let Ok((stream, _)) = listener.accept().await {
        let slot = slot.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| decide(slot.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn decide(slot: Slot, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST || req.uri().path() != "/scale" {
        return Ok(answer(
            StatusCode::NOT_FOUND,
            json!({"error": "POST /scale only"}),
        ));
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(answer(
                StatusCode::BAD_REQUEST,
                json!({"error": e.to_string()}),
            ));
        }
    };
    let d: ScaleDecision = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => {
            return Ok(answer(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("not a scale decision: {e}")}),
            ));
        }
    };
    let Some(fleet) = slot.lock().clone() else {
        return Ok(answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "containers are not up yet, or the lab is stopping"}),
        ));
    };
    Ok(match carry_out(fleet, d).await {
        Ok(done) => answer(StatusCode::OK, done),
        Err((status, error)) => answer(status, json!({ "error": error })),
    })
}

/// The concurrency a CPU limit gives a container of a service whose scenario `concurrency` is
/// `base` (see the module documentation).
pub fn concurrency_for(base: u32, cpu_millicores: u32) -> u32 {
    let c = (f64::from(base.max(1)) * f64::from(cpu_millicores) / 1000.0).round();
    // In range: clamped to [1, MAX_CONCURRENCY] before the conversion.
    c.clamp(1.0, MAX_CONCURRENCY as f64) as u32
}

/// Why `d` is refused before anything changes; `live` is the service's containers now (`None`:
/// no such service).
pub fn refusal(d: &ScaleDecision, s: &Scenario, live: Option<u32>) -> Option<Refused> {
    let service = &d.service;
    let Some(live) = live else {
        return Some((
            StatusCode::NOT_FOUND,
            format!("unknown service {service:?}"),
        ));
    };
    if let Err(e) = d.validate() {
        return Some((StatusCode::BAD_REQUEST, e.to_string()));
    }
    let optional = s.services.iter().any(|x| &x.name == service && x.optional);
    if d.brownout && !optional {
        return Some((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "service {service:?} is not optional (its scenario entry has no \
                 `optional: true`): browning it out would fail its callers' requests"
            ),
        ));
    }
    if !d.brownout && live == 0 {
        return Some((
            StatusCode::CONFLICT,
            format!(
                "service {service:?} is browned out: only a decision with `brownout: true` \
                 brings it back"
            ),
        ));
    }
    let limits = d.limits.unwrap_or_default();
    let resizes = d
        .kinds()
        .iter()
        .any(|k| matches!(k, ActionKind::Replicas | ActionKind::Brownout));
    if limits.memory_mib.is_some() && limits.cpu_millicores.is_none() && !resizes {
        return Some((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "service {service:?}: a memory limit has nothing to act on in the lab's \
                 emulated app (only cpu_millicores, as its concurrency)"
            ),
        ));
    }
    None
}

/// Checks `d`, then carries it out: limits first (so replicas it starts get them), then the
/// container count. Returns the reply's body.
async fn carry_out(fleet: Arc<Fleet>, d: ScaleDecision) -> Result<Value, Refused> {
    let service = d.service.clone();
    let live = fleet.counts().get(&service).copied();
    if let Some(refused) = refusal(&d, fleet.scenario(), live) {
        return Err(refused);
    }
    let internal = |e: String| (StatusCode::INTERNAL_SERVER_ERROR, e);
    let limits = d.limits.unwrap_or_default();
    if let Some(cpu) = limits.cpu_millicores {
        let base = fleet
            .scenario()
            .services
            .iter()
            .find(|x| x.name == service)
            .map_or(1, |x| x.concurrency);
        let c = concurrency_for(base, cpu);
        let (f, svc) = (fleet.clone(), service.clone());
        let apps = tokio::task::spawn_blocking(move || f.set_concurrency(&svc, c))
            .await
            .map_err(|e| internal(e.to_string()))?;
        for (container, app) in apps {
            put_concurrency(app, c)
                .await
                .map_err(|e| internal(format!("{container}: set its concurrency: {e}")))?;
        }
        tracing::info!(%service, cpu_millicores = cpu, concurrency = c, "limits applied");
    }
    let (f, svc) = (fleet.clone(), service.clone());
    let n = tokio::task::spawn_blocking(move || f.resize(&svc, d.to, d.brownout))
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(format!("{e:#}")))?;
    tracing::info!(%service, containers = n, brownout = n == 0, "scaled");
    let mut done = json!({
        "service": service,
        "containers": n,
        "concurrency": fleet.concurrency(&service),
        "brownout": n == 0,
    });
    if let Some(cpu) = limits.cpu_millicores {
        done["cpu_millicores"] = cpu.into();
    }
    if let Some(m) = limits.memory_mib {
        done["not_applied"] = json!({
            "memory_mib": format!("{m} MiB not applied: the emulated app has no memory limit to set")
        });
    }
    Ok(done)
}

/// `PUT /_loadshift/concurrency?n=C` on one app.
async fn put_concurrency(app: SocketAddr, n: u32) -> Result<(), String> {
    let pool = Pool::new(app, 1, APP_TIMEOUT);
    let mut req = Request::new(Empty::new());
    *req.method_mut() = Method::PUT;
    *req.uri_mut() = format!("{CONCURRENCY_PATH}?n={n}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    req.headers_mut()
        .insert(HOST, HeaderValue::from_static("app"));
    let lease = pool.checkout().await.map_err(|e| format!("{app}: {e:?}"))?;
    let resp = lease
        .send(req, APP_TIMEOUT)
        .await
        .map_err(|e| format!("{app}: {e:?}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        let body = String::from_utf8_lossy(resp.body());
        Err(format!("{app} answered {}: {}", resp.status(), body.trim()))
    }
}

#[cfg(test)]
mod tests {
    use loadshift_policy::ResourceLimits;

    use super::*;

    const SCENARIO: &str = "name: t\nduration_s: 10\nhosts: [{name: h}]\nservices:\n  \
        - {name: api, service_time: {dist: constant, mean_ms: 1}, concurrency: 4, replicas: {h: 1}, \
        calls: [{service: recs}]}\n  \
        - {name: recs, service_time: {dist: constant, mean_ms: 1}, replicas: {h: 1}, optional: true}\n\
        flows:\n  - {name: f, entry: api, arrival: {process: constant, rate: 1}, sla: {latency_ms: 10}}\n";

    fn d(service: &str, from: u32, to: u32) -> ScaleDecision {
        ScaleDecision {
            service: service.into(),
            from,
            to,
            reason: "test".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_cpu_limit_scales_the_scenarios_concurrency_as_one_core() {
        assert_eq!(concurrency_for(4, 1000), 4);
        assert_eq!(concurrency_for(4, 1500), 6);
        assert_eq!(concurrency_for(4, 250), 1);
        assert_eq!(concurrency_for(3, 500), 2, "1.5 rounds up");
        assert_eq!(concurrency_for(1, 100), 1, "never below one slot");
        assert_eq!(concurrency_for(1, u32::MAX), MAX_CONCURRENCY as u32);
    }

    #[test]
    fn refusals_name_the_service_and_the_reason() {
        let s = Scenario::parse(SCENARIO, None).expect("scenario");
        let status = |d: &ScaleDecision, live| refusal(d, &s, live).map(|r| r.0);
        assert_eq!(status(&d("api", 1, 2), Some(1)), None);
        assert_eq!(status(&d("db", 1, 2), None), Some(StatusCode::NOT_FOUND));
        assert_eq!(
            status(&d("api", 1, 0), Some(1)),
            Some(StatusCode::BAD_REQUEST)
        );

        let off = |service| ScaleDecision {
            brownout: true,
            ..d(service, 1, 0)
        };
        let (code, why) = refusal(&off("api"), &s, Some(1)).expect("refused");
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            why.contains("\"api\"") && why.contains("not optional"),
            "{why}"
        );
        assert_eq!(status(&off("recs"), Some(1)), None);
        // Browned out: only a brownout brings it back.
        let (code, why) = refusal(&d("recs", 0, 1), &s, Some(0)).expect("refused");
        assert_eq!(code, StatusCode::CONFLICT);
        assert!(
            why.contains("\"recs\"") && why.contains("browned out"),
            "{why}"
        );
        let back = ScaleDecision {
            brownout: true,
            ..d("recs", 0, 1)
        };
        assert_eq!(status(&back, Some(0)), None);

        let limits = |cpu, mem| ScaleDecision {
            limits: Some(ResourceLimits {
                cpu_millicores: cpu,
                memory_mib: mem,
            }),
            ..d("api", 1, 1)
        };
        let (code, why) = refusal(&limits(None, Some(256)), &s, Some(1)).expect("refused");
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(why.contains("\"api\"") && why.contains("memory"), "{why}");
        assert_eq!(status(&limits(Some(500), Some(256)), Some(1)), None);
        assert_eq!(status(&limits(Some(500), None), Some(1)), None);
    }
}
