//! `none`: the fixed-size baseline; never asks for a different number of containers.

use crate::{ScaleDecision, Scaler, Snapshot};

/// Keeps every service at its current size.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoScaling;

impl Scaler for NoScaling {
    fn name(&self) -> &str {
        "none"
    }

    fn scale(&mut self, _snap: &Snapshot) -> Vec<ScaleDecision> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceState;

    #[test]
    fn never_decides() {
        let snap = Snapshot {
            services: [(
                "a".to_string(),
                std::sync::Arc::new(ServiceState::default()),
            )]
            .into(),
            ..Default::default()
        };
        assert!(NoScaling.scale(&snap).is_empty());
    }
}
