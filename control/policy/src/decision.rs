//! What a scaler decides and how an actuator answers. A decision changes a service's replica
//! count, the CPU and memory limits of its containers, or takes an optional service to zero
//! (brownout, as DRPC does, seed 001); an actuator says which of these it carries out and refuses
//! the rest with [`ActuateError::Unsupported`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// One scaling decision. `from == to` with `limits` set changes only the limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScaleDecision {
    pub service: String,
    /// Containers before the decision.
    pub from: u32,
    /// Containers wanted; 0 only with `brownout`.
    pub to: u32,
    /// Per-container CPU and memory limits wanted; `None` keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceLimits>,
    /// The service is optional and goes to zero containers (or comes back from zero) to shed
    /// load; only a decision with this set may ask for 0 containers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub brownout: bool,
    /// Why, in words an operator reads.
    pub reason: String,
}

/// Per-container limits (vertical scaling).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceLimits {
    /// CPU limit, millicores (1000 = one core); `None` keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millicores: Option<u32>,
    /// Memory limit, MiB; `None` keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
}

/// The kinds of change a decision asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// A different container count.
    Replicas,
    /// Different per-container CPU / memory limits.
    Limits,
    /// An optional service taken to zero or brought back.
    Brownout,
}

impl ActionKind {
    pub const ALL: [ActionKind; 3] = [Self::Replicas, Self::Limits, Self::Brownout];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replicas => "replicas",
            Self::Limits => "limits",
            Self::Brownout => "brownout",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision no actuator should carry out: a policy bug, refused before any actuator sees it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InvalidDecision {
    #[error(
        "{service}: to = 0 without brownout; only an optional service taken to zero may have no containers"
    )]
    ZeroWithoutBrownout { service: String },
    #[error("{service}: limits.{field} = 0: a limit must be > 0")]
    ZeroLimit {
        service: String,
        field: &'static str,
    },
}

impl ScaleDecision {
    /// The kinds of change this decision asks for (none when it changes nothing).
    pub fn kinds(&self) -> Vec<ActionKind> {
        let mut k = Vec::new();
        if self.brownout {
            k.push(ActionKind::Brownout);
        } else if self.from != self.to {
            k.push(ActionKind::Replicas);
        }
        if self
            .limits
            .is_some_and(|l| l.cpu_millicores.is_some() || l.memory_mib.is_some())
        {
            k.push(ActionKind::Limits);
        }
        k
    }

    /// Checks what no actuator may be asked to do.
    pub fn validate(&self) -> Result<(), InvalidDecision> {
        if self.to == 0 && !self.brownout {
            return Err(InvalidDecision::ZeroWithoutBrownout {
                service: self.service.clone(),
            });
        }
        if let Some(l) = self.limits {
            for (field, v) in [
                ("cpu_millicores", l.cpu_millicores),
                ("memory_mib", l.memory_mib),
            ] {
                if v == Some(0) {
                    return Err(InvalidDecision::ZeroLimit {
                        service: self.service.clone(),
                        field,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Why an actuator did not carry out a decision.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ActuateError {
    /// The actuator does not do this kind of change; the decision is refused whole.
    #[error("actuator {actuator} does not carry out {kind} changes (it does: {supported})")]
    Unsupported {
        actuator: String,
        kind: ActionKind,
        supported: String,
    },
    /// The decision is invalid (see [`InvalidDecision`]).
    #[error("invalid decision: {0}")]
    Invalid(#[from] InvalidDecision),
    /// The actuator tried and failed (unreachable orchestrator, refused request, timeout).
    #[error("{0}")]
    Failed(String),
}

/// Carries out scale decisions (dry-run, webhook, lab supervisor, Kubernetes, the simulator).
pub trait Actuator: Send {
    fn name(&self) -> &str;
    /// The kinds of change it carries out.
    fn supports(&self) -> &[ActionKind];
    /// Applies one decision whose kinds it supports; an error is logged and reported, never fatal
    /// to the loop.
    fn apply(&mut self, d: &ScaleDecision) -> Result<(), ActuateError>;
}

/// Validates `d`, refuses it if `a` lacks one of its kinds, else applies it: how every host hands
/// a decision to its actuator.
pub fn actuate(a: &mut dyn Actuator, d: &ScaleDecision) -> Result<(), ActuateError> {
    d.validate()?;
    if let Some(kind) = d.kinds().into_iter().find(|k| !a.supports().contains(k)) {
        return Err(ActuateError::Unsupported {
            actuator: a.name().to_string(),
            kind,
            supported: a
                .supports()
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    a.apply(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Replicas(Vec<ScaleDecision>);

    impl Actuator for Replicas {
        fn name(&self) -> &str {
            "replicas-only"
        }
        fn supports(&self) -> &[ActionKind] {
            &[ActionKind::Replicas]
        }
        fn apply(&mut self, d: &ScaleDecision) -> Result<(), ActuateError> {
            self.0.push(d.clone());
            Ok(())
        }
    }

    fn d(from: u32, to: u32) -> ScaleDecision {
        ScaleDecision {
            service: "api".into(),
            from,
            to,
            reason: "test".into(),
            ..Default::default()
        }
    }

    #[test]
    fn kinds_and_refusals() {
        let mut a = Replicas(Vec::new());
        assert_eq!(d(1, 3).kinds(), vec![ActionKind::Replicas]);
        actuate(&mut a, &d(1, 3)).unwrap();
        let limits = ScaleDecision {
            limits: Some(ResourceLimits {
                cpu_millicores: Some(500),
                memory_mib: None,
            }),
            ..d(2, 2)
        };
        assert_eq!(limits.kinds(), vec![ActionKind::Limits]);
        let e = actuate(&mut a, &limits).unwrap_err();
        assert_eq!(
            e.to_string(),
            "actuator replicas-only does not carry out limits changes (it does: replicas)"
        );
        let e = actuate(&mut a, &d(1, 0)).unwrap_err();
        assert!(e.to_string().contains("to = 0 without brownout"), "{e}");
        let off = ScaleDecision {
            brownout: true,
            ..d(1, 0)
        };
        assert_eq!(off.kinds(), vec![ActionKind::Brownout]);
        assert!(matches!(
            actuate(&mut a, &off),
            Err(ActuateError::Unsupported {
                kind: ActionKind::Brownout,
                ..
            })
        ));
        assert_eq!(a.0, vec![d(1, 3)]);
        // Replica-only decisions serialise as before (webhook receivers see the same body).
        assert_eq!(
            serde_json::to_string(&d(1, 3)).unwrap(),
            r#"{"service":"api","from":1,"to":3,"reason":"test"}"#
        );
    }
}
