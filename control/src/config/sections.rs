//! The sections of the control config that configure one component each: where scale decisions
//! go (the actuator and its webhook) and where endpoints come from (the discovery file). The
//! components read them; the config validates them, so the config depends on no component.

use std::path::PathBuf;

use hyper::Uri;
use loadshift_policy::ActionKind;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Which actuator carries out scale decisions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActuatorKind {
    /// Logged, counted and listed; nothing changes.
    #[default]
    DryRun,
    /// POSTed to the `webhook` section's URL.
    Webhook,
}

impl ActuatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DryRun => "dry-run",
            Self::Webhook => "webhook",
        }
    }
}

/// The `webhook:` section of the control config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// Changes the receiver carries out: `replicas`, `limits` (per-container CPU / memory),
    /// `brownout`. Default `[replicas]`.
    #[serde(default = "default_kinds")]
    pub kinds: Vec<ActionKind>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_kinds() -> Vec<ActionKind> {
    vec![ActionKind::Replicas]
}

pub(crate) fn invalid_webhook(
    field: &str,
    value: impl ToString,
    reason: impl Into<String>,
) -> ConfigError {
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
            return Err(invalid_webhook("timeout_ms", 0, "must be > 0"));
        }
        if self.kinds.is_empty() {
            return Err(invalid_webhook(
                "kinds",
                "[]",
                "name at least one of replicas, limits, brownout",
            ));
        }
        Ok(())
    }

    /// `(host, port, authority, path-and-query)` of the URL.
    pub(crate) fn target(&self) -> Result<Target, ConfigError> {
        let uri: Uri = self
            .url
            .parse()
            .map_err(|e| invalid_webhook("url", &self.url, format!("not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(invalid_webhook(
                    "url",
                    &self.url,
                    "https is not supported; use http on loopback or a trusted network",
                ));
            }
            _ => return Err(invalid_webhook("url", &self.url, "must start with http://")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| invalid_webhook("url", &self.url, "has no host"))?;
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
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    pub authority: String,
    pub path: String,
}

/// The `discovery:` section of the control config.
///
/// ```yaml
/// discovery: { file: /var/run/loadshift/endpoints.yaml, poll_ms: 1000 }
/// ```
///
/// The file maps service names to endpoint lists in the config's endpoint format:
///
/// ```yaml
/// checkout:
///   - { addr: 10.0.0.1:8080, host: node-a, zone: z1, container: checkout-1 }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDiscoveryConfig {
    /// The endpoints file. Required; it must exist and parse when the control plane starts.
    pub file: PathBuf,
    /// How often the file is read again, milliseconds. Default 1000.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

fn default_poll_ms() -> u64 {
    1000
}

impl FileDiscoveryConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.poll_ms == 0 {
            return Err(super::invalid("discovery.poll_ms", "0", "must be > 0"));
        }
        Ok(())
    }
}
