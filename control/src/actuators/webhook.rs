//! `webhook`: each scale decision is POSTed as JSON (`{"service", "from", "to", "reason"}`, the
//! [`ScaleDecision`] fields) to a configured `http://` URL, with an optional bearer token. A 2xx
//! answer means the receiver carried it out (or accepted it); anything else, a connection error or
//! the timeout is an error for the scale loop to log and count. The receiver should be
//! idempotent on `to`: the scaler repeats a decision next round while the containers differ.
//!
//! ```yaml
//! actuator: webhook
//! webhook: { url: http://127.0.0.1:9000/scale, timeout_ms: 10000, token_file: /etc/hook-token }
//! ```
//!
//! Only plain HTTP is spoken: run the receiver on loopback or a trusted network, or put a TLS
//! terminating proxy next to the control plane.

use std::{path::PathBuf, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri, header};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::config::ConfigError;
use loadshift_policy::{Actuator, ScaleDecision};

/// The `webhook:` section of the control config.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://host:port/path` receiving the POSTs. Required.
    pub url: String,
    /// Whole request deadline (connect, send, answer), milliseconds. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// File holding a bearer token sent as `Authorization: Bearer ...` (surrounding whitespace
    /// ignored). Default: no `Authorization` header.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn invalid(field: &str, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: format!("webhook.{field}"),
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl WebhookConfig {
    /// Checks the URL and the timeout (the token file is read when the actuator is built).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.target().map(|_| ())?;
        if self.timeout_ms == 0 {
            return Err(invalid("timeout_ms", 0, "must be > 0"));
        }
        Ok(())
    }

    /// `(host, port, authority, path-and-query)` of the URL.
    fn target(&self) -> Result<Target, ConfigError> {
        let uri: Uri = self
            .url
            .parse()
            .map_err(|e| invalid("url", &self.url, format!("not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(invalid(
                    "url",
                    &self.url,
                    "https is not supported; use http on loopback or a trusted network",
                ));
            }
            _ => return Err(invalid("url", &self.url, "must start with http://")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("url", &self.url, "has no host"))?;
        Ok(Target {
            host: authority.host().trim_matches(['[', ']']).to_string(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_string(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        })
    }
}

#[derive(Clone, Debug)]
struct Target {
    host: String,
    port: u16,
    authority: String,
    path: String,
}

/// POSTs decisions to a URL.
#[derive(Debug)]
pub struct Webhook {
    url: String,
    target: Target,
    timeout: Duration,
    token: Option<String>,
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

    fn apply(&mut self, d: &ScaleDecision) -> Result<(), String> {
        let body = serde_json::to_vec(d).map_err(|e| format!("webhook: encode decision: {e}"))?;
        let this = &*self;
        std::thread::scope(|s| {
            s.spawn(|| this.post(body))
                .join()
                .unwrap_or_else(|_| Err("webhook: the request thread panicked".into()))
        })?;
        tracing::info!(service = %d.service, from = d.from, to = d.to, url = %self.url, "scale decision sent");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
