//! One connected session: open the stream, send `Hello`, then interleave reports with plan and
//! endpoint updates until the stream ends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use loadshift_proto::v1::{
    self as pb, control_message, proxy_control_client::ProxyControlClient, proxy_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{metadata::MetadataValue, transport::Endpoint as TonicEndpoint};

use super::{
    ClientError, ControlClientConfig, DataPlane, Identity, METRIC_CONNECTED, METRIC_PLANS_APPLIED,
    METRIC_PLANS_REJECTED, ProxyReport,
};
use loadshift_core::{
    endpoint::Endpoint,
    plan::{Plan, ServicePlan},
};

pub(super) struct Session<'a> {
    cfg: &'a ControlClientConfig,
    id: &'a Identity,
    dp: &'a dyn DataPlane,
    /// Survives sessions: deltas apply on top of it, and it is what the data plane runs.
    last_good: &'a mut Plan,
    received: bool,
}

impl<'a> Session<'a> {
    pub(super) fn new(
        cfg: &'a ControlClientConfig,
        id: &'a Identity,
        dp: &'a dyn DataPlane,
        last_good: &'a mut Plan,
    ) -> Self {
        Self {
            cfg,
            id,
            dp,
            last_good,
            received: false,
        }
    }

    /// True once the control plane sent anything on this session (resets the backoff).
    pub(super) fn received_any(&self) -> bool {
        self.received
    }

    pub(super) async fn run(&mut self) -> Result<(), ClientError> {
        let token =
            std::fs::read_to_string(&self.cfg.token_file).map_err(|source| ClientError::Token {
                path: self.cfg.token_file.clone(),
                source,
            })?;
        let bearer: MetadataValue<_> =
            format!("Bearer {}", token.trim())
                .parse()
                .map_err(|_| ClientError::BadToken {
                    path: self.cfg.token_file.clone(),
                })?;
        let channel = TonicEndpoint::from_shared(self.cfg.url.clone())
            .map_err(|source| ClientError::Url {
                url: self.cfg.url.clone(),
                source,
            })?
            .connect_timeout(Duration::from_millis(self.cfg.connect_timeout_ms))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect()
            .await
            .map_err(ClientError::Connect)?;
        let mut client =
            ProxyControlClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
                req.metadata_mut().insert("authorization", bearer.clone());
                Ok(req)
            });

        let (tx, rx) = mpsc::channel(16);
        // The receiver is alive until `connect` below consumes it, so this cannot fail.
        let _ = tx.send(hello(self.id)).await;
        let mut inbound = client.connect(ReceiverStream::new(rx)).await?.into_inner();
        metrics::gauge!(METRIC_CONNECTED).set(1.0);
        tracing::info!(url = %self.cfg.url, "connected to the control plane");

        let mut ticker = tokio::time::interval(self.cfg.report_interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut seq = 0u64;
        loop {
            tokio::select! {
                msg = inbound.message() => {
                    let Some(msg) = msg? else { return Err(ClientError::Closed) };
                    self.received = true;
                    if let Some(reply) = self.handle(msg)
                        && tx.send(reply).await.is_err()
                    {
                        return Err(ClientError::Closed);
                    }
                }
                _ = ticker.tick() => {
                    seq += 1;
                    let report = report_message(seq, &self.dp.report());
                    if tx.send(report).await.is_err() {
                        return Err(ClientError::Closed);
                    }
                }
            }
        }
    }

    /// Applies one control message; returns the ACK / NACK to send, if any.
    fn handle(&mut self, msg: pb::ControlMessage) -> Option<pb::ProxyMessage> {
        match msg.msg? {
            control_message::Msg::Endpoints(u) => {
                let eps: Result<Vec<_>, _> = u.endpoints.iter().map(Endpoint::try_from).collect();
                let res = eps
                    .map_err(|e| e.to_string())
                    .and_then(|eps| self.dp.set_endpoints(&u.service, eps));
                if let Err(reason) = res {
                    tracing::warn!(service = %u.service, %reason, "refused endpoints from the control plane");
                }
                None
            }
            control_message::Msg::Plan(u) => Some(self.apply(u)),
        }
    }

    fn apply(&mut self, u: pb::PlanUpdate) -> pb::ProxyMessage {
        let mut candidate = if u.full {
            Plan::default()
        } else {
            self.last_good.clone()
        };
        candidate.version = u.version;
        for name in &u.removed {
            candidate.services.remove(name);
        }
        for (name, sp) in &u.services {
            candidate
                .services
                .insert(name.clone(), ServicePlan::from(sp));
        }
        let msg = match self.dp.apply_plan(candidate.clone()) {
            Ok(()) => {
                *self.last_good = candidate;
                metrics::counter!(METRIC_PLANS_APPLIED).increment(1);
                proxy_message::Msg::Ack(pb::Ack {
                    version: u.version,
                    nonce: u.nonce,
                })
            }
            Err(reason) => {
                tracing::warn!(version = u.version, %reason, "refused plan; keeping the last good one");
                metrics::counter!(METRIC_PLANS_REJECTED).increment(1);
                proxy_message::Msg::Nack(pb::Nack {
                    version: u.version,
                    nonce: u.nonce,
                    reason,
                })
            }
        };
        pb::ProxyMessage { msg: Some(msg) }
    }
}

fn hello(id: &Identity) -> pb::ProxyMessage {
    pb::ProxyMessage {
        msg: Some(proxy_message::Msg::Hello(pb::Hello {
            pod: id.pod.clone(),
            container: id.container.clone(),
            host: id.host.clone(),
            zone: id.zone.clone(),
            inbound_service: id.inbound_service.clone().unwrap_or_default(),
            outbound_services: id.outbound_services.clone(),
            proxy_version: env!("CARGO_PKG_VERSION").to_string(),
        })),
    }
}

fn report_message(seq: u64, r: &ProxyReport) -> pb::ProxyMessage {
    let sent_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    pb::ProxyMessage {
        msg: Some(proxy_message::Msg::Report(super::wire::report_to_proto(
            seq,
            sent_unix_ms,
            r,
        ))),
    }
}
