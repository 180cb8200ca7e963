//! Actuators carry out scale decisions. `dry-run` is the default: every decision is logged and
//! counted (`loadshift_control_scale_decisions_total`) and listed by `ListScaleDecisions`, and no
//! container changes. The lab supervisor and the Kubernetes actuator implement the same trait.

use crate::policy::{Actuator, ScaleDecision};

/// Names the config accepts.
pub const NAMES: &[&str] = &["dry-run"];

/// Builds an actuator by name; `None` for names not in [`NAMES`] (rejected by config validation).
pub fn build(name: &str) -> Option<Box<dyn Actuator>> {
    match name {
        "dry-run" => Some(Box::new(DryRun)),
        _ => None,
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
