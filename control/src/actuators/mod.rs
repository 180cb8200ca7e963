//! Actuators carry out scale decisions. `dry-run` is the default: every decision is logged and
//! counted (`loadshift_control_scale_decisions_total`) and listed by `ListScaleDecisions`, and no
//! container changes. `webhook` POSTs each decision as JSON to a URL (the lab supervisor serves
//! one; any orchestrator glue can). The Kubernetes actuator implements the same trait.
//!
//! A failed apply is logged, counted with `result="failed"` and kept in the decision list with
//! its error by the scale loop; nothing is queued for retry, because the scaler looks at the
//! containers that exist again next round and asks again if they still differ from its target.

mod webhook;

use crate::config::{ConfigError, ControlConfig};
use loadshift_policy::{Actuator, ScaleDecision};

pub use webhook::{Webhook, WebhookConfig};

/// Names the config accepts.
pub const NAMES: &[&str] = &["dry-run", "webhook"];

/// Builds an actuator that needs no settings by name; `None` for other names (`webhook` needs
/// its config section: use [`from_config`]).
pub fn build(name: &str) -> Option<Box<dyn Actuator>> {
    match name {
        "dry-run" => Some(Box::new(DryRun)),
        _ => None,
    }
}

/// Builds the actuator `cfg.actuator` names with its section of `cfg`.
pub fn from_config(cfg: &ControlConfig) -> Result<Box<dyn Actuator>, ConfigError> {
    match cfg.actuator.as_str() {
        "webhook" => {
            let w = cfg.webhook.as_ref().ok_or_else(|| ConfigError::Invalid {
                field: "webhook".into(),
                value: "(missing)".into(),
                reason: "actuator: webhook needs a webhook section with its url".into(),
            })?;
            Ok(Box::new(Webhook::new(w)?))
        }
        name => build(name).ok_or_else(|| ConfigError::Invalid {
            field: "actuator".into(),
            value: name.to_string(),
            reason: format!("unknown actuator; known: {}", NAMES.join(", ")),
        }),
    }
}

/// Logs decisions and applies nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct DryRun;

impl Actuator for DryRun {
    fn name(&self) -> &str {
        "dry-run"
    }

    fn apply(&mut self, d: &ScaleDecision) -> Result<(), String> {
        tracing::info!(service = %d.service, from = d.from, to = d.to, reason = %d.reason, "scale decision (dry run)");
        Ok(())
    }
}
