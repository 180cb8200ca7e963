//! `ProxyControl.Connect`: one task per proxy stream.
//!
//! The stream starts with the proxy's `Hello`; the control plane answers with the endpoints of
//! every service the proxy calls, then a full plan snapshot, then a delta whenever the plans in
//! force for that proxy change. Versions are unique per update and increase on the stream.
//! A NACKed update is held back: its services are not sent again until one of their plans changes
//! (then the whole refused set is re-sent against what the proxy acknowledged).

use std::{
    collections::{BTreeMap, VecDeque},
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use loadshift_core::{
    plan::ServicePlan,
    telemetry::{WindowSnapshot, pressure::HostPressure, usage::ContainerUsage},
};
use loadshift_proto::v1::{self as pb, control_message, proxy_message};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use super::shared::Shared;
use crate::{
    discovery::EndpointMap,
    metrics as m,
    state::{EndpointSample, ProxyIdentity, StoredReport, TelemetryStore},
};

/// How long a new stream may take to send `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct ProxyApi {
    shared: Arc<Shared>,
}

impl ProxyApi {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

type Outbound = Pin<Box<dyn Stream<Item = Result<pb::ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl pb::proxy_control_server::ProxyControl for ProxyApi {
    type ConnectStream = Outbound;

    async fn connect(
        &self,
        req: Request<Streaming<pb::ProxyMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let (tx, rx) = mpsc::channel(32);
        tokio::spawn(session(self.shared.clone(), req.into_inner(), tx));
        Ok(Response::new(Box::pin(
            ReceiverStream::new(rx).map(|r: Reply| *r),
        )))
    }
}

/// Boxed so each slot of the per-stream channel is a pointer, not a whole message.
type Reply = Box<Result<pb::ControlMessage, Status>>;
type Tx = mpsc::Sender<Reply>;

/// One update sent and not yet answered.
struct InFlight {
    version: u64,
    nonce: String,
    sent_at: Instant,
    full: bool,
    set: BTreeMap<String, Arc<ServicePlan>>,
    removed: Vec<String>,
}

/// Plan bookkeeping of one stream.
#[derive(Default)]
struct StreamPlans {
    /// What the proxy runs if every in-flight update is acknowledged.
    sent: BTreeMap<String, Arc<ServicePlan>>,
    /// What the proxy acknowledged.
    acked: BTreeMap<String, Arc<ServicePlan>>,
    in_flight: VecDeque<InFlight>,
    /// Services of the last refused update and their refused plans (`None` = refused removal).
    held: Option<BTreeMap<String, Option<Arc<ServicePlan>>>>,
    /// The discovery snapshot last sent from (shared, not copied per stream).
    endpoints: Option<EndpointMap>,
}

async fn session(shared: Arc<Shared>, mut inbound: Streaming<pb::ProxyMessage>, tx: Tx) {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(pb::ProxyMessage {
            msg: Some(proxy_message::Msg::Hello(h)),
        }))) => h,
        Ok(Ok(Some(_))) => {
            refuse(
                &tx,
                Status::invalid_argument("the first message on the stream must be Hello"),
            )
            .await;
            return;
        }
        Ok(Ok(None) | Err(_)) => return,
        Err(_) => {
            refuse(&tx, Status::deadline_exceeded("no Hello within 10 s")).await;
            return;
        }
    };
    if hello.pod.is_empty() {
        refuse(&tx, Status::invalid_argument("Hello.pod must not be empty")).await;
        return;
    }
    let id = ProxyIdentity {
        pod: hello.pod.clone(),
        container: hello.container,
        host: hello.host,
        zone: hello.zone,
        inbound_service: Some(hello.inbound_service).filter(|s| !s.is_empty()),
        outbound_services: hello.outbound_services,
    };
    let stream_id = shared.stream_id();
    let connected = {
        let mut store = shared.store.lock();
        store.connect(stream_id, id.clone());
        store.len()
    };
    metrics::gauge!(m::CONNECTED_PROXIES).set(connected as f64);
    tracing::debug!(pod = %id.pod, stream = stream_id, "proxy connected");

    let mut plans_rx = shared.plans.subscribe();
    let mut eps_rx = shared.endpoints.clone();
    let mut stop = shared.shutdown.clone();
    let mut st = StreamPlans::default();
    let eps = eps_rx.borrow_and_update().clone();
    let mut ok = send_endpoints(&tx, &id, &eps, &mut st).await;
    plans_rx.borrow_and_update();
    ok = ok && push(&shared, &tx, stream_id, &id, &mut st, true).await;
    while ok {
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(msg)) => handle(&shared, stream_id, &id, &mut st, msg),
                Ok(None) | Err(_) => break,
            },
            r = plans_rx.changed() => {
                ok = r.is_ok() && push(&shared, &tx, stream_id, &id, &mut st, false).await;
            }
            r = eps_rx.changed() => {
                let eps = eps_rx.borrow_and_update().clone();
                ok = r.is_ok()
                    && send_endpoints(&tx, &id, &eps, &mut st).await
                    && push(&shared, &tx, stream_id, &id, &mut st, false).await;
            }
            () = super::shared::stopped(&mut stop) => break,
        }
    }
    let connected = {
        let mut store = shared.store.lock();
        store.disconnect(&id.pod, stream_id);
        store.len()
    };
    metrics::gauge!(m::CONNECTED_PROXIES).set(connected as f64);
    tracing::debug!(pod = %id.pod, stream = stream_id, "proxy disconnected");
}

/// Ends the stream with `status`.
async fn refuse(tx: &Tx, status: Status) {
    // The proxy may already be gone; nothing else to tell it.
    let _ = tx.send(Box::new(Err(status))).await;
}

/// Sends the endpoint lists that changed for the services the proxy calls.
async fn send_endpoints(
    tx: &Tx,
    id: &ProxyIdentity,
    eps: &EndpointMap,
    st: &mut StreamPlans,
) -> bool {
    let before = st.endpoints.replace(eps.clone());
    for svc in &id.outbound_services {
        let Some(list) = eps.get(svc) else { continue };
        if before.as_ref().and_then(|b| b.get(svc)) == Some(list) {
            continue;
        }
        let msg = pb::EndpointsUpdate {
            service: svc.clone(),
            endpoints: list.iter().map(pb::Endpoint::from).collect(),
        };
        let msg = pb::ControlMessage {
            msg: Some(control_message::Msg::Endpoints(msg)),
        };
        if tx.send(Box::new(Ok(msg))).await.is_err() {
            return false;
        }
    }
    true
}

/// Sends the full snapshot or the delta between what the proxy has and what is in force.
async fn push(
    shared: &Shared,
    tx: &Tx,
    stream_id: u64,
    id: &ProxyIdentity,
    st: &mut StreamPlans,
    full: bool,
) -> bool {
    let desired = shared.plans.for_proxy(&id.pod, &id.outbound_services);
    let (set, removed) = if full {
        (desired.clone(), Vec::new())
    } else {
        // A refused update stays held back while its plans are unchanged.
        let mut base = st.sent.clone();
        if let Some(held) = &st.held {
            if held.iter().all(|(s, p)| desired.get(s) == p.as_ref()) {
                for (s, p) in held {
                    match p {
                        Some(p) => base.insert(s.clone(), p.clone()),
                        None => base.remove(s),
                    };
                }
            } else {
                st.held = None;
            }
        }
        let set: BTreeMap<_, _> = desired
            .iter()
            .filter(|(k, v)| base.get(*k) != Some(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let removed: Vec<String> = base
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect();
        if set.is_empty() && removed.is_empty() {
            return true;
        }
        (set, removed)
    };
    let version = shared.plan_version();
    let nonce = format!("{stream_id:x}-{version:x}");
    let msg = pb::PlanUpdate {
        version,
        nonce: nonce.clone(),
        full,
        services: set
            .iter()
            .map(|(k, v)| (k.clone(), pb::ServicePlan::from(&**v)))
            .collect(),
        removed: removed.clone(),
    };
    if full {
        st.sent = desired;
    } else {
        apply_delta(&mut st.sent, &set, &removed);
    }
    st.in_flight.push_back(InFlight {
        version,
        nonce,
        sent_at: Instant::now(),
        full,
        set,
        removed,
    });
    metrics::counter!(m::PLAN_PUSHES, "kind" => if full { "full" } else { "delta" }).increment(1);
    let msg = pb::ControlMessage {
        msg: Some(control_message::Msg::Plan(msg)),
    };
    tx.send(Box::new(Ok(msg))).await.is_ok()
}

fn apply_delta(
    target: &mut BTreeMap<String, Arc<ServicePlan>>,
    set: &BTreeMap<String, Arc<ServicePlan>>,
    removed: &[String],
) {
    for r in removed {
        target.remove(r);
    }
    for (k, v) in set {
        target.insert(k.clone(), v.clone());
    }
}

fn handle(
    shared: &Shared,
    stream_id: u64,
    id: &ProxyIdentity,
    st: &mut StreamPlans,
    msg: pb::ProxyMessage,
) {
    match msg.msg {
        Some(proxy_message::Msg::Report(r)) => {
            metrics::counter!(m::REPORTS).increment(1);
            let lag_ms = crate::plans::unix_ms().saturating_sub(r.sent_unix_ms);
            if r.sent_unix_ms > 0 && lag_ms >= 0 {
                metrics::histogram!(m::REPORT_LAG_SECONDS).record(lag_ms as f64 / 1000.0);
            }
            let now = shared.now();
            let mut store = shared.store.lock();
            let stored = stored_report(&mut store, now, r);
            store.report(&id.pod, stream_id, stored);
        }
        Some(proxy_message::Msg::Ack(a)) => answer(st, a.version, &a.nonce, None, &id.pod),
        Some(proxy_message::Msg::Nack(n)) => {
            answer(st, n.version, &n.nonce, Some(n.reason), &id.pod)
        }
        Some(proxy_message::Msg::Hello(_)) | None => {
            tracing::debug!(pod = %id.pod, "ignoring a repeated Hello or an empty message");
        }
    }
}

/// Settles the in-flight update `version`; answers for unknown versions or nonces are stale.
fn answer(st: &mut StreamPlans, version: u64, nonce: &str, nack: Option<String>, pod: &str) {
    let Some(pos) = st
        .in_flight
        .iter()
        .position(|f| f.version == version && f.nonce == nonce)
    else {
        return;
    };
    // Earlier updates without an answer are superseded; the client answers every update in order.
    let f = st.in_flight.drain(..=pos).next_back();
    let Some(f) = f else { return };
    metrics::histogram!(m::PLAN_ACK_SECONDS).record(f.sent_at.elapsed().as_secs_f64());
    match nack {
        None => {
            metrics::counter!(m::PLAN_ACKS).increment(1);
            if f.full {
                st.acked = f.set;
            } else {
                apply_delta(&mut st.acked, &f.set, &f.removed);
            }
        }
        Some(reason) => {
            metrics::counter!(m::PLAN_NACKS).increment(1);
            tracing::warn!(%pod, version, %reason, "proxy refused a plan");
            let mut held: BTreeMap<String, Option<Arc<ServicePlan>>> =
                f.set.into_iter().map(|(k, v)| (k, Some(v))).collect();
            held.extend(f.removed.into_iter().map(|k| (k, None)));
            st.held = Some(held);
            // The proxy runs what it acknowledged plus whatever later updates it accepts.
            st.sent = st.acked.clone();
            for later in &st.in_flight {
                if later.full {
                    st.sent = later.set.clone();
                } else {
                    apply_delta(&mut st.sent, &later.set, &later.removed);
                }
            }
        }
    }
}

/// Keeps what planners need, compactly: service names interned, addresses parsed (entries with
/// an unparsable address are dropped).
fn stored_report(store: &mut TelemetryStore, now: Duration, r: pb::Report) -> StoredReport {
    StoredReport {
        received: now,
        endpoints: r
            .endpoints
            .into_iter()
            .filter_map(|e| {
                let addr = e.endpoint?.addr.parse().ok()?;
                Some(EndpointSample {
                    service: store.intern(e.service),
                    addr,
                    window: e
                        .window
                        .as_ref()
                        .map(WindowSnapshot::from)
                        .unwrap_or_default(),
                    in_flight: e.in_flight,
                    ewma_ms: e.ewma_ms,
                })
            })
            .collect(),
        inbound: r.inbound.as_ref().map(WindowSnapshot::from),
        host: r.host.as_ref().map(HostPressure::from).unwrap_or_default(),
        usage: r.usage.as_ref().map(ContainerUsage::from),
        blocked: r
            .blocked
            .into_iter()
            .map(|b| (b.service, b.class, b.count))
            .collect(),
        offered: r
            .offered
            .into_iter()
            .map(|o| (o.service, o.count, o.window_s))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(w: f64) -> Arc<ServicePlan> {
        Arc::new(ServicePlan {
            endpoint_weights: [("127.0.0.1:1".into(), w)].into(),
            ..Default::default()
        })
    }

    fn update(version: u64, full: bool, set: &[(&str, f64)]) -> InFlight {
        InFlight {
            version,
            nonce: format!("n{version}"),
            sent_at: Instant::now(),
            full,
            set: set.iter().map(|(k, w)| (k.to_string(), sp(*w))).collect(),
            removed: Vec::new(),
        }
    }

    #[test]
    fn a_nack_rolls_sent_back_to_acked_plus_later_updates_and_holds_the_refused_set() {
        let mut st = StreamPlans::default();
        st.in_flight
            .push_back(update(1, true, &[("a", 1.0), ("b", 1.0)]));
        st.in_flight.push_back(update(2, false, &[("a", 9.0)]));
        st.in_flight.push_back(update(3, false, &[("b", 2.0)]));
        st.sent = [("a".to_string(), sp(9.0)), ("b".to_string(), sp(2.0))].into();

        answer(&mut st, 1, "n1", None, "p");
        assert_eq!(st.acked["a"], sp(1.0));
        // A stale nonce settles nothing.
        answer(&mut st, 2, "other", Some("no".into()), "p");
        assert!(st.held.is_none());

        answer(&mut st, 2, "n2", Some("weights refused".into()), "p");
        let held = st.held.clone().unwrap();
        assert_eq!(held["a"], Some(sp(9.0)));
        // The proxy runs what it acknowledged plus update 3, still in flight.
        assert_eq!(st.sent["a"], sp(1.0));
        assert_eq!(st.sent["b"], sp(2.0));

        answer(&mut st, 3, "n3", None, "p");
        assert_eq!(st.acked["b"], sp(2.0));
        assert!(st.in_flight.is_empty());
    }
}
