//! The reward functions of the management objectives (Samani & Stadler, seed 004 §IV, Fig. 3).
//!
//! Every objective rewards carried load `l_i^c` scaled by tanh-shaped components that fall from 1
//! to 0 around a threshold:
//!
//! ```text
//! delay component   r_i(d_i)   = (1 - tanh(k (d_i / O_i - 1))) / 2     1 well below O_i, 1/2 at O_i
//! floor component   r_3(l_k^c) = (1 + tanh(k (l_k^c / l_min - 1))) / 2  1 well above l_min, 1/2 at it
//!
//! MO1  r = sum_i l_i^c r_i(d_i)
//! MO2  r = sum_i u_i l_i^c r_i(d_i)              u_i: the utility weight (default 1)
//! MO3  r = sum_{i favoured} l_i^c (r_3(l_k^c) + r_i(d_i))     k: the protected service
//! ```
//!
//! The paper draws the components without their formula (Fig. 3); these are the tanh steps it
//! describes, with the steepness `k` a setting (default [`STEEPNESS`] = 10: at `d = 0.8 O` a
//! component is 0.98, at `1.2 O` it is 0.02). A service with no bound has `r_i = 1`; MO3 with
//! `l_min = 0` has `r_3 = 1`. Every reward is >= 0.

use std::collections::BTreeMap;

use crate::objective::ManagementObjective;

/// Default steepness `k` of the tanh components.
pub const STEEPNESS: f64 = 10.0;

/// The delay component `r_i`: `(1 - tanh(k (d / bound - 1))) / 2`.
pub fn delay_component(d_ms: f64, bound_ms: f64, k: f64) -> f64 {
    0.5 * (1.0 - (k * (d_ms / bound_ms - 1.0)).tanh())
}

/// The floor component `r_3`: `(1 + tanh(k (carried / floor - 1))) / 2`; 1 when `floor` is 0.
pub fn floor_component(carried_rps: f64, floor_rps: f64, k: f64) -> f64 {
    if floor_rps <= 0.0 {
        return 1.0;
    }
    0.5 * (1.0 + (k * (carried_rps / floor_rps - 1.0)).tanh())
}

/// One management objective over an ordered list of services: the reward of what they carried
/// and how fast.
#[derive(Clone, Debug, PartialEq)]
pub struct Reward {
    kind: Kind,
    /// `O_i` per service (index as the list), `None`: unbounded.
    bounds: Vec<Option<f64>>,
    k: f64,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Mo1,
    Mo2 {
        utility: Vec<f64>,
    },
    Mo3 {
        favoured: Vec<bool>,
        protected: Option<usize>,
        floor: f64,
    },
}

impl Reward {
    /// The reward of `mo` over `services`; a service without a bound in `mo` takes
    /// `fallback_bounds_ms` (its own latency objective), else it is unbounded.
    pub fn new(
        mo: &ManagementObjective,
        services: &[String],
        fallback_bounds_ms: &BTreeMap<String, f64>,
        k: f64,
    ) -> Self {
        let bounds = services
            .iter()
            .map(|s| {
                mo.bounds_ms()
                    .get(s)
                    .or_else(|| fallback_bounds_ms.get(s))
                    .copied()
            })
            .collect();
        let kind = match mo {
            ManagementObjective::Mo1 { .. } => Kind::Mo1,
            ManagementObjective::Mo2 { utility, .. } => Kind::Mo2 {
                utility: services
                    .iter()
                    .map(|s| utility.get(s).copied().unwrap_or(1.0))
                    .collect(),
            },
            ManagementObjective::Mo3 {
                favoured,
                protected,
                min_carried_rps,
                ..
            } => Kind::Mo3 {
                favoured: services
                    .iter()
                    .map(|s| match favoured {
                        Some(f) => s == f,
                        None => s != protected,
                    })
                    .collect(),
                protected: services.iter().position(|s| s == protected),
                floor: *min_carried_rps,
            },
        };
        Self { kind, bounds, k }
    }

    /// The reward of carried loads `carried_rps` (requests/s) at mean response times `d_ms`
    /// (`None` where nothing completed: its delay component counts as 0).
    pub fn of(&self, carried_rps: &[f64], d_ms: &[Option<f64>]) -> f64 {
        let r = |i: usize| match (self.bounds[i], d_ms[i]) {
            (None, _) => 1.0,
            (Some(o), Some(d)) => delay_component(d, o, self.k),
            (Some(_), None) => 0.0,
        };
        let lc = |i: usize| carried_rps[i].max(0.0);
        let n = self.bounds.len();
        match &self.kind {
            Kind::Mo1 => (0..n).map(|i| lc(i) * r(i)).sum(),
            Kind::Mo2 { utility } => (0..n).map(|i| utility[i] * lc(i) * r(i)).sum(),
            Kind::Mo3 {
                favoured,
                protected,
                floor,
            } => {
                let r3 = protected.map_or(1.0, |p| floor_component(lc(p), *floor, self.k));
                (0..n)
                    .filter(|&i| favoured[i])
                    .map(|i| lc(i) * (r3 + r(i)))
                    .sum()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["s1".into(), "s2".into()]
    }

    #[test]
    fn components_match_their_definitions() {
        assert!((delay_component(100.0, 100.0, 10.0) - 0.5).abs() < 1e-12);
        assert!((delay_component(80.0, 100.0, 10.0) - 0.5 * (1.0 + 2f64.tanh())).abs() < 1e-12);
        assert!(delay_component(80.0, 100.0, 10.0) > 0.98);
        assert!(delay_component(120.0, 100.0, 10.0) < 0.02);
        assert!(delay_component(0.0, 100.0, 10.0) > 0.999_999);
        assert!((floor_component(5.0, 5.0, 10.0) - 0.5).abs() < 1e-12);
        assert!(floor_component(6.0, 5.0, 10.0) > 0.98);
        assert!(floor_component(4.0, 5.0, 10.0) < 0.02);
        assert_eq!(floor_component(0.0, 0.0, 10.0), 1.0);
    }

    #[test]
    fn objectives_weigh_carried_load_as_the_paper_writes_them() {
        let bounds: BTreeMap<String, f64> =
            [("s1".to_string(), 100.0), ("s2".to_string(), 200.0)].into();
        let fast = [Some(50.0), Some(100.0)];
        let r1 = delay_component(50.0, 100.0, 10.0);
        let r2 = delay_component(100.0, 200.0, 10.0);
        let mo1 = Reward::new(
            &ManagementObjective::Mo1 {
                bounds_ms: bounds.clone(),
            },
            &names(),
            &BTreeMap::new(),
            10.0,
        );
        assert!((mo1.of(&[10.0, 20.0], &fast) - (10.0 * r1 + 20.0 * r2)).abs() < 1e-9);
        let mo2 = Reward::new(
            &ManagementObjective::Mo2 {
                bounds_ms: bounds.clone(),
                utility: [("s2".to_string(), 5.0)].into(),
            },
            &names(),
            &BTreeMap::new(),
            10.0,
        );
        assert!((mo2.of(&[10.0, 20.0], &fast) - (10.0 * r1 + 100.0 * r2)).abs() < 1e-9);
        let mo3 = Reward::new(
            &ManagementObjective::Mo3 {
                bounds_ms: bounds.clone(),
                favoured: Some("s2".into()),
                protected: "s1".into(),
                min_carried_rps: 5.0,
            },
            &names(),
            &BTreeMap::new(),
            10.0,
        );
        let r3 = floor_component(10.0, 5.0, 10.0);
        assert!((mo3.of(&[10.0, 20.0], &fast) - 20.0 * (r3 + r2)).abs() < 1e-9);
        // Starving the protected service costs the favoured one its floor component.
        assert!(mo3.of(&[0.0, 20.0], &fast) < 20.0 * r2 + 1e-6);
        // A slow service earns almost nothing; one with nothing completed earns nothing.
        assert!(mo1.of(&[10.0, 0.0], &[Some(500.0), None]) < 1e-6);
        // Without a bound in the objective the fallback (the service's own SLA) bounds it.
        let fallback = Reward::new(
            &ManagementObjective::Mo1 {
                bounds_ms: BTreeMap::new(),
            },
            &names(),
            &[("s1".to_string(), 100.0)].into(),
            10.0,
        );
        assert!(
            (fallback.of(&[10.0, 10.0], &[Some(50.0), Some(1e6)]) - (10.0 * r1 + 10.0)).abs()
                < 1e-9
        );
    }
}
