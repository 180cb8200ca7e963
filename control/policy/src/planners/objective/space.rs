//! The discretised action space (seed 004 §IV): per managed service, its routing weights over
//! its hosts (`p_ij`) and its blocking fraction at the front proxy (`b_i`), each dimension with
//! `levels` values (the paper: 6, so `{0, 0.2, ..., 1}`). With more than two hosts a service's
//! weights are the points of the simplex with steps of `1 / (levels - 1)` (two hosts: `p` and
//! `1 - p`, exactly the paper's `p_i1`). An action is one choice per service; the space is their
//! product, enumerated in a fixed order.

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

/// A service the objective planner decides for, and the hosts its weights are over (sorted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedService {
    pub name: String,
    pub hosts: Vec<String>,
}

/// One service's part of an action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceAction {
    /// Share of the service's requests per host, in the order of [`ManagedService::hosts`];
    /// sums to 1.
    pub shares: Vec<f64>,
    /// Fraction of the service's requests blocked at its callers, in [0, 1].
    pub block: f64,
}

/// One choice per managed service, in the order of the space's services.
pub type Action = Vec<ServiceAction>;

/// Largest action space the planner searches exhaustively.
pub const MAX_ACTIONS: usize = 200_000;

/// Why a space cannot be searched.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SpaceError {
    #[error("levels = {0}: must be at least 2")]
    Levels(u32),
    #[error("service {0:?} has no host to route to")]
    NoHost(String),
    #[error("no service to manage")]
    Empty,
    #[error(
        "{size} actions ({services} services, {levels} levels): more than {MAX_ACTIONS}; use fewer levels"
    )]
    TooLarge {
        size: usize,
        services: usize,
        levels: u32,
    },
}

/// The discretised action space over some services.
#[derive(Clone, Debug)]
pub struct ActionSpace {
    services: Vec<ManagedService>,
    levels: u32,
    /// Per service: every choice of that service.
    choices: Vec<Vec<ServiceAction>>,
}

impl ActionSpace {
    pub fn new(services: Vec<ManagedService>, levels: u32) -> Result<Self, SpaceError> {
        if levels < 2 {
            return Err(SpaceError::Levels(levels));
        }
        if services.is_empty() {
            return Err(SpaceError::Empty);
        }
        let steps = levels - 1;
        let mut choices = Vec::with_capacity(services.len());
        let mut size: usize = 1;
        for s in &services {
            if s.hosts.is_empty() {
                return Err(SpaceError::NoHost(s.name.clone()));
            }
            let mut splits = Vec::new();
            compositions(steps, s.hosts.len(), &mut Vec::new(), &mut splits);
            let mut per = Vec::with_capacity(splits.len() * levels as usize);
            for split in &splits {
                for b in 0..=steps {
                    per.push(ServiceAction {
                        shares: split
                            .iter()
                            .map(|&x| f64::from(x) / f64::from(steps))
                            .collect(),
                        block: f64::from(b) / f64::from(steps),
                    });
                }
            }
            size = size.saturating_mul(per.len());
            if size > MAX_ACTIONS {
                return Err(SpaceError::TooLarge {
                    size,
                    services: services.len(),
                    levels,
                });
            }
            choices.push(per);
        }
        Ok(Self {
            services,
            levels,
            choices,
        })
    }

    pub fn services(&self) -> &[ManagedService] {
        &self.services
    }

    pub fn levels(&self) -> u32 {
        self.levels
    }

    /// Number of actions.
    pub fn len(&self) -> usize {
        self.choices.iter().map(Vec::len).product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Action number `i` (0 <= i < len), the first service's choice varying slowest.
    pub fn action(&self, mut i: usize) -> Action {
        let mut out = vec![None; self.choices.len()];
        for (k, per) in self.choices.iter().enumerate().rev() {
            out[k] = Some(per[i % per.len()].clone());
            i /= per.len();
        }
        out.into_iter().map(Option::unwrap).collect()
    }

    /// Every action, in index order.
    pub fn actions(&self) -> impl Iterator<Item = Action> + '_ {
        (0..self.len()).map(|i| self.action(i))
    }

    /// An action drawn uniformly.
    pub fn sample(&self, rng: &mut dyn RngCore) -> Action {
        self.choices
            .iter()
            .map(|per| per[rng.random_range(0..per.len())].clone())
            .collect()
    }
}

/// Every way to write `total` as an ordered sum of `parts` non-negative integers.
fn compositions(total: u32, parts: usize, prefix: &mut Vec<u32>, out: &mut Vec<Vec<u32>>) {
    if parts == 1 {
        prefix.push(total);
        out.push(prefix.clone());
        prefix.pop();
        return;
    }
    for x in (0..=total).rev() {
        prefix.push(x);
        compositions(total - x, parts - 1, prefix, out);
        prefix.pop();
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn svc(name: &str, hosts: &[&str]) -> ManagedService {
        ManagedService {
            name: name.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn the_papers_space_has_six_levels_per_dimension_and_its_corners() {
        let space =
            ActionSpace::new(vec![svc("s1", &["n1", "n2"]), svc("s2", &["n1", "n2"])], 6).unwrap();
        assert_eq!(space.len(), 6usize.pow(4));
        let all: Vec<Action> = space.actions().collect();
        // Every corner of [0, 1]^4 in (p11, p21, b1, b2) is an action, and every value is one of
        // the six levels.
        for corner in 0..16u32 {
            let bit = |k: u32| f64::from((corner >> k) & 1);
            assert!(
                all.iter().any(|a| a[0].shares[0] == bit(0)
                    && a[1].shares[0] == bit(1)
                    && a[0].block == bit(2)
                    && a[1].block == bit(3)),
                "corner {corner:04b}"
            );
        }
        let levels = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
        for a in &all {
            for s in a {
                assert!((s.shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                assert!(levels.iter().any(|l| (l - s.block).abs() < 1e-12));
                assert!(levels.iter().any(|l| (l - s.shares[0]).abs() < 1e-12));
            }
        }
        // Distinct actions.
        let mut keys: Vec<String> = all.iter().map(|a| format!("{a:?}")).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), all.len());
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let drawn = space.sample(&mut rng);
        assert!(all.contains(&drawn));
    }

    #[test]
    fn three_hosts_use_the_simplex_and_sizes_are_bounded() {
        let space = ActionSpace::new(vec![svc("s", &["a", "b", "c"])], 3).unwrap();
        // (2,0,0) (1,1,0) (1,0,1) (0,2,0) (0,1,1) (0,0,2) x 3 blocking levels.
        assert_eq!(space.len(), 6 * 3);
        assert!(matches!(
            ActionSpace::new(vec![svc("s", &["a"])], 1),
            Err(SpaceError::Levels(1))
        ));
        assert!(matches!(
            ActionSpace::new(vec![svc("s", &[])], 6),
            Err(SpaceError::NoHost(_))
        ));
        let many: Vec<ManagedService> =
            (0..6).map(|i| svc(&format!("s{i}"), &["a", "b"])).collect();
        assert!(matches!(
            ActionSpace::new(many, 6),
            Err(SpaceError::TooLarge { .. })
        ));
    }
}
