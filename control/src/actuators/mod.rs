//! Actuators carry out scale decisions. `dry-run` is the default: every decision is logged and
//! counted (`loadshift_control_scale_decisions_total`) and listed by `ListScaleDecisions`, and no
//! container changes. `webhook` POSTs each decision as JSON to a URL (the lab supervisor serves
//! one; any orchestrator glue can). The Kubernetes actuator implements the same trait.
//!
//! Every actuator says which kinds of change it carries out (`replicas`, `limits`, `brownout`);
//! the control loop refuses a decision of another kind before the actuator sees it, counted with
//! `result="refused"`. A failed apply is logged, counted with `result="failed"`; both are kept in
//! the decision list with their error. Nothing is queued for retry, because the scaler looks at
//! the containers that exist again next round and asks again if they still differ from its
//! target.

mod webhook;

use crate::config::{ActuatorKind, ConfigError, ControlConfig};
use loadshift_policy::{ActionKind, ActuateError, Actuator, ScaleDecision};

pub use webhook::Webhook;

/// Builds the actuator `cfg.actuator` names with its section of `cfg`.
pub fn from_config(cfg: &ControlConfig) -> Result<Box<dyn Actuator>, ConfigError> {
    match cfg.actuator {
        ActuatorKind::DryRun => Ok(Box::new(DryRun)),
        ActuatorKind::Webhook => {
            let w = cfg.webhook.as_ref().ok_or_else(|| ConfigError::Invalid {
                field: "webhook".into(),
                value: "(missing)".into(),
                reason: "actuator: webhook needs a webhook section with its url".into(),
            })?;
            Ok(Box::new(Webhook::new(w)?))
        }
    }
}

/// Logs decisions and applies nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct DryRun;

impl Actuator for DryRun {
    fn name(&self) -> &str {
        "dry-run"
    }

    /// Every kind: nothing is carried out, so nothing is refused.
    fn supports(&self) -> &[ActionKind] {
        &ActionKind::ALL
    }

    fn apply(&mut self, d: &ScaleDecision) -> Result<(), ActuateError> {
        tracing::info!(service = %d.service, from = d.from, to = d.to, limits = ?d.limits, brownout = d.brownout, reason = %d.reason, "scale decision (dry run)");
        Ok(())
    }
}
