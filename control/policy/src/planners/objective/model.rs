//! The system model `f(l, p, b) -> d` (seed 004 eq. 5): per managed service, a random forest
//! (smartcore) from the offered loads, routing shares and blocking fractions of every managed
//! service to that service's mean response time in the same step. Trained on traces of random
//! actions under random-level load (`loadshift model collect` / `train objective`); the forests
//! predict `ln d` (milliseconds), so a split near the bounds the rewards care about counts as
//! much as one among overloaded steps of seconds.
//!
//! Saved as JSON with the services and hosts it was trained for, the forest parameters and its
//! held-out error; [`SystemModel::from_json`] gives back a model with identical predictions.

use rand::{SeedableRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};
use smartcore::{
    ensemble::random_forest_regressor::{RandomForestRegressor, RandomForestRegressorParameters},
    linalg::basic::matrix::DenseMatrix,
};

use super::space::{Action, ManagedService, ServiceAction};

type Forest = RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>;

/// Format number of the saved model.
pub const FORMAT: u32 = 1;

/// One step of a trace: what every managed service (in the model's order) was offered, carried
/// and how fast, under which action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceStep {
    /// End of the step, seconds since the start of the run.
    pub t_s: f64,
    pub services: Vec<StepService>,
}

/// One service in one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepService {
    /// Requests per second offered to the service (blocked ones included), `l_i`.
    pub offered_rps: f64,
    /// Requests per second let through, `l_i^c`.
    pub carried_rps: f64,
    /// Mean response time of the calls that completed in the step, `d_i`; `None` when none did.
    pub mean_ms: Option<f64>,
    /// The routing shares and blocking fraction in force during the step.
    pub action: ServiceAction,
}

/// Random-forest parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForestParams {
    /// Trees per forest (default 50).
    pub trees: usize,
    /// Depth limit of a tree (default 16).
    pub max_depth: u16,
    /// Fewest samples in a leaf (default 10).
    pub min_samples_leaf: usize,
    /// Seed of the bootstrap samples and of the train / test split (default 1).
    pub seed: u64,
    /// Share of the steps held out to measure the error (default 0.3, the usual 70 / 30).
    pub test_fraction: f64,
}

impl Default for ForestParams {
    fn default() -> Self {
        Self {
            trees: 50,
            max_depth: 16,
            min_samples_leaf: 10,
            seed: 1,
            test_fraction: 0.3,
        }
    }
}

/// Held-out error of one service's forest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitScore {
    pub service: String,
    pub train_samples: usize,
    pub test_samples: usize,
    /// Coefficient of determination of `ln d` on the held-out steps.
    pub r2_log: f64,
    /// Mean absolute error of `d`, milliseconds, held out.
    pub mae_ms: f64,
    /// Median absolute error relative to `d`, held out.
    pub median_rel_error: f64,
}

/// Why a model could not be trained or read.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "service {service:?}: {n} steps with a measured response time; at least {min} are needed"
    )]
    TooFewSamples {
        service: String,
        n: usize,
        min: usize,
    },
    #[error("trace step at {t_s} s has {got} services; the model has {want}")]
    Shape { t_s: f64, got: usize, want: usize },
    #[error("random forest: {0}")]
    Forest(String),
    #[error("model file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("model file: format {0}, this build reads format {FORMAT}")]
    Format(u32),
}

/// The learned system model.
#[derive(Debug, Serialize, Deserialize)]
pub struct SystemModel {
    format: u32,
    /// The services (and their hosts) the model predicts, in feature order.
    pub services: Vec<ManagedService>,
    pub params: ForestParams,
    /// Held-out error per service.
    pub scores: Vec<FitScore>,
    forests: Vec<Forest>,
}

/// The model's input for loads `l` and an action: per service `l_i`, its shares, `b_i`.
pub fn features(loads: &[f64], action: &Action) -> Vec<f64> {
    let mut x = Vec::with_capacity(loads.len() * 4);
    for (l, a) in loads.iter().zip(action) {
        x.push(*l);
        x.extend_from_slice(&a.shares);
        x.push(a.block);
    }
    x
}

/// Fewest usable steps per service.
pub const MIN_SAMPLES: usize = 20;

/// What predicts response times: the learned [`SystemModel`], or a hand-made function in tests.
pub trait Predictor {
    /// Predicted mean response time per service (ms) for offered loads `loads` under each action.
    fn predict(&self, loads: &[f64], actions: &[Action]) -> Result<Vec<Vec<f64>>, ModelError>;
}

impl Predictor for SystemModel {
    fn predict(&self, loads: &[f64], actions: &[Action]) -> Result<Vec<Vec<f64>>, ModelError> {
        let x: Vec<Vec<f64>> = actions.iter().map(|a| features(loads, a)).collect();
        let mut out = vec![Vec::with_capacity(self.forests.len()); actions.len()];
        for f in &self.forests {
            for (row, ln_d) in out.iter_mut().zip(predict_raw(f, &x)?) {
                row.push(ln_d.exp());
            }
        }
        Ok(out)
    }
}

impl SystemModel {
    /// Fits one forest per service on `steps` (a random `test_fraction` held out to score it,
    /// then refitted on every step).
    pub fn fit(
        services: Vec<ManagedService>,
        steps: &[TraceStep],
        params: ForestParams,
    ) -> Result<Self, ModelError> {
        for s in steps {
            if s.services.len() != services.len() {
                return Err(ModelError::Shape {
                    t_s: s.t_s,
                    got: s.services.len(),
                    want: services.len(),
                });
            }
        }
        let rf = RandomForestRegressorParameters::default()
            .with_n_trees(params.trees)
            .with_max_depth(params.max_depth)
            .with_min_samples_leaf(params.min_samples_leaf)
            .with_seed(params.seed);
        let mut forests = Vec::with_capacity(services.len());
        let mut scores = Vec::with_capacity(services.len());
        for (k, svc) in services.iter().enumerate() {
            // Steps where the service completed something; ones that carried nothing have no `d`.
            let mut rows: Vec<(Vec<f64>, f64)> = steps
                .iter()
                .filter_map(|s| {
                    let d = s.services[k]
                        .mean_ms
                        .filter(|d| d.is_finite() && *d > 0.0)?;
                    let loads: Vec<f64> = s.services.iter().map(|x| x.offered_rps).collect();
                    let action: Action = s.services.iter().map(|x| x.action.clone()).collect();
                    Some((features(&loads, &action), d.ln()))
                })
                .collect();
            if rows.len() < MIN_SAMPLES {
                return Err(ModelError::TooFewSamples {
                    service: svc.name.clone(),
                    n: rows.len(),
                    min: MIN_SAMPLES,
                });
            }
            let mut rng = rand::rngs::StdRng::seed_from_u64(params.seed);
            rows.shuffle(&mut rng);
            let n_test = ((rows.len() as f64 * params.test_fraction).round() as usize)
                .min(rows.len() - MIN_SAMPLES / 2);
            let (test, train) = rows.split_at(n_test);
            if !test.is_empty() {
                let held = fit_one(train, rf.clone())?;
                let x: Vec<Vec<f64>> = test.iter().map(|r| r.0.clone()).collect();
                let pred = predict_raw(&held, &x)?;
                scores.push(score(&svc.name, train.len(), test, &pred));
            }
            forests.push(fit_one(&rows, rf.clone())?);
        }
        Ok(Self {
            format: FORMAT,
            services,
            params,
            scores,
            forests,
        })
    }

    pub fn to_json(&self) -> Result<String, ModelError> {
        Ok(serde_json::to_string(self)?)
    }

    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let m: Self = serde_json::from_str(text)?;
        if m.format != FORMAT {
            return Err(ModelError::Format(m.format));
        }
        Ok(m)
    }

    /// Names of the services, in feature order.
    pub fn service_names(&self) -> Vec<String> {
        self.services.iter().map(|s| s.name.clone()).collect()
    }
}

fn fit_one(
    rows: &[(Vec<f64>, f64)],
    p: RandomForestRegressorParameters,
) -> Result<Forest, ModelError> {
    let x: Vec<Vec<f64>> = rows.iter().map(|r| r.0.clone()).collect();
    let y: Vec<f64> = rows.iter().map(|r| r.1).collect();
    let x = DenseMatrix::from_2d_vec(&x).map_err(|e| ModelError::Forest(e.to_string()))?;
    RandomForestRegressor::fit(&x, &y, p).map_err(|e| ModelError::Forest(e.to_string()))
}

fn predict_raw(f: &Forest, x: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
    if x.is_empty() {
        return Ok(Vec::new());
    }
    let m = DenseMatrix::from_2d_vec(&x.to_vec()).map_err(|e| ModelError::Forest(e.to_string()))?;
    f.predict(&m).map_err(|e| ModelError::Forest(e.to_string()))
}

fn score(service: &str, train: usize, test: &[(Vec<f64>, f64)], pred: &[f64]) -> FitScore {
    let n = test.len() as f64;
    let mean = test.iter().map(|r| r.1).sum::<f64>() / n;
    let ss_tot: f64 = test.iter().map(|r| (r.1 - mean).powi(2)).sum();
    let ss_res: f64 = test.iter().zip(pred).map(|(r, p)| (r.1 - p).powi(2)).sum();
    let mae = test
        .iter()
        .zip(pred)
        .map(|(r, p)| (r.1.exp() - p.exp()).abs())
        .sum::<f64>()
        / n;
    let mut rel: Vec<f64> = test
        .iter()
        .zip(pred)
        .map(|(r, p)| ((r.1.exp() - p.exp()) / r.1.exp()).abs())
        .collect();
    rel.sort_by(f64::total_cmp);
    FitScore {
        service: service.to_string(),
        train_samples: train,
        test_samples: test.len(),
        r2_log: if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else {
            0.0
        },
        mae_ms: mae,
        median_rel_error: rel[rel.len() / 2],
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::planners::objective::space::ActionSpace;

    pub(crate) fn two_services() -> Vec<ManagedService> {
        ["s1", "s2"]
            .iter()
            .map(|n| ManagedService {
                name: n.to_string(),
                hosts: vec!["n1".into(), "n2".into()],
            })
            .collect()
    }

    /// A known system: a service's delay grows with the load its hosts carry, host n2 twice as
    /// slow as n1.
    pub(crate) fn synthetic_trace(n: usize) -> Vec<TraceStep> {
        let space = ActionSpace::new(two_services(), 6).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        (0..n)
            .map(|i| {
                let a = space.sample(&mut rng);
                let loads = [5.0 + (i % 4) as f64 * 5.0, 20.0 - (i % 3) as f64 * 5.0];
                let services = (0..2)
                    .map(|k| {
                        let carried = loads[k] * (1.0 - a[k].block);
                        let d = 20.0 + carried * (a[k].shares[0] * 2.0 + a[k].shares[1] * 4.0);
                        StepService {
                            offered_rps: loads[k],
                            carried_rps: carried,
                            mean_ms: (carried > 0.0).then_some(d),
                            action: a[k].clone(),
                        }
                    })
                    .collect();
                TraceStep {
                    t_s: i as f64 * 5.0,
                    services,
                }
            })
            .collect()
    }

    #[test]
    fn fits_a_known_system_and_round_trips_through_json() {
        let steps = synthetic_trace(400);
        let params = ForestParams {
            trees: 20,
            min_samples_leaf: 3,
            ..Default::default()
        };
        let m = SystemModel::fit(two_services(), &steps, params).unwrap();
        assert_eq!(m.scores.len(), 2);
        for s in &m.scores {
            assert!(s.r2_log > 0.8, "{s:?}");
            assert!(s.test_samples > 50 && s.train_samples > 150, "{s:?}");
        }
        let space = ActionSpace::new(two_services(), 6).unwrap();
        let actions: Vec<Action> = space.actions().take(300).collect();
        let before = m.predict(&[10.0, 15.0], &actions).unwrap();
        let back = SystemModel::from_json(&m.to_json().unwrap()).unwrap();
        assert_eq!(back.predict(&[10.0, 15.0], &actions).unwrap(), before);
        assert_eq!(back.services, two_services());
        let e = SystemModel::fit(two_services(), &steps[..5], params).unwrap_err();
        assert!(e.to_string().contains("at least 20"), "{e}");
        let bad = SystemModel::from_json(&m.to_json().unwrap().replacen(
            "\"format\":1",
            "\"format\":9",
            1,
        ))
        .unwrap_err();
        assert!(bad.to_string().contains("format 9"), "{bad}");
    }
}
