//! `avg`: the AVG baseline of QueueFlower's evaluation (seed 003 §V, SPEC §5.10): the
//! application's fixed budget of `X` containers split evenly over its services, the remainder
//! one each to the services first in name order. Application-scoped, every 60 s by default.
//! `X` is `budget`, or when 0 (default) the application's container count the first time the
//! scaler runs, fixed from then on. Every service keeps at least 1 container, so with `X` below
//! the number of services each gets 1 (over budget; the reason says so).

use std::{collections::BTreeSet, time::Duration};

use serde::{Deserialize, Serialize};

use super::app::{self, Budgets};
use crate::{ScaleDecision, Scaler, Snapshot};

/// Tunables.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AvgParams {
    /// Containers of the application, `X`; 0 (default): its container count at the first round.
    pub budget: u32,
    /// Round period, milliseconds. Default 60000.
    pub interval_ms: u64,
}

impl Default for AvgParams {
    fn default() -> Self {
        Self {
            budget: 0,
            interval_ms: 60_000,
        }
    }
}

impl AvgParams {
    /// The first field that cannot work, as `(field, value, reason)`.
    pub fn check(&self) -> Result<(), (&'static str, String, &'static str)> {
        if self.interval_ms == 0 {
            return Err(("interval_ms", "0".into(), "must be > 0"));
        }
        Ok(())
    }
}

/// `x` over `n` services: `x / n` each, one more for the first `x mod n`; at least 1 each.
pub(crate) fn even_split(x: u32, n: usize) -> Vec<u32> {
    let Ok(n32) = u32::try_from(n) else {
        return vec![1; n];
    };
    if n32 == 0 {
        return Vec::new();
    }
    let (each, extra) = (x / n32, x % n32);
    (0..n32)
        .map(|i| (each + u32::from(i < extra)).max(1))
        .collect()
}

/// The even split over the applications of the services it owns.
#[derive(Clone, Debug)]
pub struct Avg {
    params: AvgParams,
    /// `None` until the schedule says: every service of the view.
    owned: Option<BTreeSet<String>>,
    budgets: Budgets,
}

impl Avg {
    pub fn new(params: AvgParams) -> Self {
        Self {
            params,
            owned: None,
            budgets: Budgets::new(params.budget),
        }
    }

    pub fn params(&self) -> &AvgParams {
        &self.params
    }
}

impl Scaler for Avg {
    fn name(&self) -> &str {
        "avg"
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.params.interval_ms)
    }

    fn set_owned(&mut self, services: &BTreeSet<String>) {
        self.owned = Some(services.clone());
    }

    fn scale(&mut self, snap: &Snapshot) -> Vec<ScaleDecision> {
        let mut out = Vec::new();
        for g in app::groups(snap, self.owned.as_ref()) {
            let n = g.owned.len();
            let x = self.budgets.get(g.name, g.containers());
            let to = even_split(x, n);
            out.extend(app::changes(&g, &to, |_| {
                if (x as usize) < n {
                    format!("avg: budget {x} < {n} services: 1 each")
                } else {
                    format!("avg: {x} containers split evenly over {n} services")
                }
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ServiceState, testing};

    fn snap(counts: &[(&str, usize)]) -> Snapshot {
        testing::snapshot(
            counts
                .iter()
                .map(|&(name, n)| ServiceState {
                    name: name.into(),
                    containers: (0..n)
                        .map(|i| testing::container(i as u16 + 1, "h1", 5.0, 10))
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        )
    }

    fn to(ds: &[ScaleDecision]) -> Vec<(&str, u32, u32)> {
        ds.iter()
            .map(|d| (d.service.as_str(), d.from, d.to))
            .collect()
    }

    #[test]
    fn splits_evenly_with_the_remainder_in_name_order() {
        assert_eq!(even_split(10, 3), [4, 3, 3]);
        assert_eq!(even_split(11, 3), [4, 4, 3]);
        assert_eq!(even_split(9, 3), [3, 3, 3]);
        assert_eq!(even_split(2, 3), [1, 1, 1], "at least one each");
        assert!(even_split(5, 0).is_empty());
        let mut avg = Avg::new(AvgParams {
            budget: 10,
            ..Default::default()
        });
        let got = avg.scale(&snap(&[("c", 1), ("a", 6), ("b", 3)]));
        assert_eq!(to(&got), [("a", 6, 4), ("c", 1, 3)], "b keeps its 3");
        assert!(got[0].reason.contains("10 containers"), "{}", got[0].reason);
    }

    #[test]
    fn budget_zero_fixes_the_first_count() {
        let mut avg = Avg::new(AvgParams::default());
        // 1 + 6 + 2 = 9 containers at the first round: 3 each from then on.
        let got = avg.scale(&snap(&[("a", 1), ("b", 6), ("c", 2)]));
        assert_eq!(to(&got), [("a", 1, 3), ("b", 6, 3), ("c", 2, 3)]);
        let got = avg.scale(&snap(&[("a", 5), ("b", 5), ("c", 5)]));
        assert_eq!(to(&got), [("a", 5, 3), ("b", 5, 3), ("c", 5, 3)]);
        // Owned services only.
        let mut avg = Avg::new(AvgParams {
            budget: 4,
            ..Default::default()
        });
        avg.set_owned(&["a".to_string(), "b".to_string()].into());
        let got = avg.scale(&snap(&[("a", 1), ("b", 1), ("c", 1)]));
        assert_eq!(to(&got), [("a", 1, 2), ("b", 1, 2)]);
        let tight = Avg::new(AvgParams {
            budget: 1,
            ..Default::default()
        })
        .scale(&snap(&[("a", 2), ("b", 2)]));
        assert_eq!(to(&tight), [("a", 2, 1), ("b", 2, 1)]);
        assert!(tight[0].reason.contains("1 each"), "{}", tight[0].reason);
    }
}
