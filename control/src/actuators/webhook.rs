//! `webhook`: each scale decision is POSTed as JSON (`{"service", "from", "to", "reason"}`, plus
//! `limits: {cpu_millicores, memory_mib}` and `brownout: true` when set: the [`ScaleDecision`]
//! fields) to a configured `http://` URL, with an optional bearer token. A 2xx answer means the
//! receiver carried it out (or accepted it); anything else, a connection error or the timeout is
//! an error for the scale loop to log and count. The receiver should be idempotent on `to`: the
//! scaler repeats a decision next round while the containers differ. `kinds` says which changes
//! the receiver carries out; decisions asking for another kind are refused before any POST.
//!
//! ```yaml
//! actuator: webhook
//! webhook: { url: http://127.0.0.1:9000/scale, timeout_ms: 10000, token_file: /etc/hook-token,
//!            kinds: [replicas] }
//! ```
//!
//! Only plain HTTP is spoken: run the receiver on loopback or a trusted network, or put a TLS
//! terminating proxy next to the control plane.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;

use crate::config::{
    ConfigError, WebhookConfig,
    sections::{Target, invalid_webhook as invalid},
};
use loadshift_policy::{ActionKind, ActuateError, Actuator, ScaleDecision};

/// POSTs decisions to a URL.
#[derive(Debug)]
pub struct Webhook {
    url: String,
    target: Target,
    timeout: Duration,
    token: Option<String>,
    kinds: Vec<ActionKind>,
}

impl Webhook {
    /// Validates `cfg` and reads its token file.
    pub fn new(cfg: &WebhookConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let token = match &cfg.token_file {
            None => None,
            Some(p) => {
                let t = std::fs::read_to_string(p)
                    .map_err(|e| invalid("token_file", p.display(), format!("cannot read: {e}")))?;
                let t = t.trim().to_string();
                if t.is_empty() {
                    return Err(invalid("token_file", p.display(), "is empty"));
                }
                Some(t)
            }
        };
        Ok(Self {
            url: cfg.url.clone(),
            target: cfg.target()?,
            timeout: Duration::from_millis(cfg.timeout_ms),
            token,
            kinds: cfg.kinds.clone(),
        })
    }

    /// One POST on its own current-thread runtime. The scale loop calls actuators on the blocking
    /// pool; a runtime of its own (built and dropped on a plain thread) works from there, from
    /// tests and from any other synchronous caller, where borrowing the server's runtime would
    /// panic inside an async context.
    fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("webhook: cannot start a runtime: {e}"))?;
        rt.block_on(async {
            match tokio::time::timeout(self.timeout, self.send(body)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "webhook {}: no answer within {} ms",
                    self.url,
                    self.timeout.as_millis()
                )),
            }
        })
    }

    async fn send(&self, body: Vec<u8>) -> Result<(), String> {
        let t = &self.target;
        let err =
            |what: &str, e: &dyn std::fmt::Display| format!("webhook {}: {what}: {e}", self.url);
        let stream = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| err("connect", &e))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| err("handshake", &e))?;
        let driver = tokio::spawn(conn);
        let mut req = Request::post(t.path.as_str())
            .header(header::HOST, t.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(tok) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {tok}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| err("request", &e))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| err("send", &e))?;
        let status = resp.status();
        let text = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        driver.abort();
        if status.is_success() {
            Ok(())
        } else {
            let text: String = text.trim().chars().take(200).collect();
            Err(format!("webhook {} answered {status}: {text}", self.url))
        }
    }
}

impl Actuator for Webhook {
    fn name(&self) -> &str {
        "webhook"
    }

    fn supports(&self) -> &[ActionKind] {
        &self.kinds
    }

    fn apply(&mut self, d: &ScaleDecision) -> Result<(), ActuateError> {
        let body = serde_json::to_vec(d)
            .map_err(|e| ActuateError::Failed(format!("webhook: encode decision: {e}")))?;
        let this = &*self;
        std::thread::scope(|s| {
            s.spawn(|| this.post(body))
                .join()
                .unwrap_or_else(|_| Err("webhook: the request thread panicked".into()))
        })
        .map_err(ActuateError::Failed)?;
        tracing::info!(service = %d.service, from = d.from, to = d.to, url = %self.url, "scale decision sent");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
