use std::sync::Arc;

use super::{
    model::{ForestParams, tests::synthetic_trace},
    *,
};
use crate::{
    ApplicationState, ServiceState,
    testing::{container, snapshot},
};

fn two() -> Vec<ManagedService> {
    model::tests::two_services()
}

/// Shared hosts: n1 serves 40 units of work per second, n2 20; s2's requests cost 2 units, s1's
/// one. A service's delay is its hosts' M/M/1 stretch of 10 ms weighted by its shares.
struct Shared;

impl Predictor for Shared {
    fn predict(&self, loads: &[f64], actions: &[Action]) -> Result<Vec<Vec<f64>>, ModelError> {
        let cost = [1.0, 2.0];
        let cap = [40.0, 20.0];
        Ok(actions
            .iter()
            .map(|a| {
                let rho: Vec<f64> = (0..2)
                    .map(|h| {
                        (0..2)
                            .map(|i| loads[i] * (1.0 - a[i].block) * a[i].shares[h] * cost[i])
                            .sum::<f64>()
                            / cap[h]
                    })
                    .collect();
                (0..2)
                    .map(|i| {
                        (0..2)
                            .map(|h| a[i].shares[h] * 10.0 * cost[i] / (1.0 - rho[h].min(0.99)))
                            .sum()
                    })
                    .collect()
            })
            .collect())
    }
}

/// Only one action meets s1's bound.
struct OneGood;

impl Predictor for OneGood {
    fn predict(&self, _: &[f64], actions: &[Action]) -> Result<Vec<Vec<f64>>, ModelError> {
        Ok(actions
            .iter()
            .map(|a| {
                let good = (a[0].shares[0] - 0.6).abs() < 1e-9 && (a[0].block - 0.2).abs() < 1e-9;
                vec![if good { 50.0 } else { 500.0 }, 50.0]
            })
            .collect())
    }
}

fn mo1() -> ManagementObjective {
    ManagementObjective::Mo1 {
        bounds_ms: [("s1".to_string(), 100.0), ("s2".to_string(), 100.0)].into(),
    }
}

fn mo2_favouring_s2() -> ManagementObjective {
    ManagementObjective::Mo2 {
        bounds_ms: [("s1".to_string(), 100.0), ("s2".to_string(), 100.0)].into(),
        utility: [("s2".to_string(), 5.0)].into(),
    }
}

fn names() -> Vec<String> {
    vec!["s1".into(), "s2".into()]
}

#[test]
fn picks_the_known_best_action_of_a_hand_made_model() {
    let space = ActionSpace::new(two(), 6).unwrap();
    let reward = Reward::new(&mo1(), &names(), &BTreeMap::new(), 10.0);
    let best = best_action(&OneGood, &space, &reward, &[10.0, 10.0]).unwrap();
    assert!((best.action[0].shares[0] - 0.6).abs() < 1e-9);
    assert!((best.action[0].block - 0.2).abs() < 1e-9);
    // s2 meets its bound everywhere: nothing of it is blocked.
    assert_eq!(best.action[1].block, 0.0);
    assert!((best.reward - reward.of(&[8.0, 10.0], &[Some(50.0), Some(50.0)])).abs() < 1e-9);
    assert_eq!(best.predicted_ms, vec![50.0, 50.0]);
}

#[test]
fn the_objective_decides_which_service_is_blocked() {
    let space = ActionSpace::new(two(), 6).unwrap();
    // More offered than the hosts can serve within the bounds.
    let loads = [20.0, 20.0];
    let blocked = |mo: &ManagementObjective| {
        let reward = Reward::new(mo, &names(), &BTreeMap::new(), 10.0);
        let b = best_action(&Shared, &space, &reward, &loads).unwrap();
        (b.action[0].block, b.action[1].block)
    };
    // MO1 carries the most requests: it blocks the service that costs more per request.
    let (b1, b2) = blocked(&mo1());
    assert!(b2 > b1, "MO1 blocked s1 {b1}, s2 {b2}");
    // MO2 with s2 worth five times s1: it blocks s1 instead.
    let (b1, b2) = blocked(&mo2_favouring_s2());
    assert!(b1 > b2, "MO2 blocked s1 {b1}, s2 {b2}");
    // MO3 keeps s1 above its floor while favouring s2.
    let mo3 = ManagementObjective::Mo3 {
        bounds_ms: [("s2".to_string(), 100.0)].into(),
        favoured: Some("s2".into()),
        protected: "s1".into(),
        min_carried_rps: 5.0,
    };
    let reward = Reward::new(&mo3, &names(), &BTreeMap::new(), 10.0);
    let b = best_action(&Shared, &space, &reward, &loads).unwrap();
    assert!(20.0 * (1.0 - b.action[0].block) > 5.0, "{b:?}");
}

fn app_snapshot(mo: Option<ManagementObjective>, loads: [f64; 2]) -> Snapshot {
    let svc = |name: &str, port: u16, load: f64| ServiceState {
        name: name.into(),
        containers: vec![
            container(port, "n1", 20.0, 10),
            container(port + 1, "n2", 40.0, 10),
        ],
        offered_rps: load,
        ..Default::default()
    };
    let mut snap = snapshot(vec![svc("s1", 10, loads[0]), svc("s2", 20, loads[1])]);
    snap.applications.insert(
        "app".into(),
        Arc::new(ApplicationState {
            services: ["s1".to_string(), "s2".to_string()].into(),
            management: mo,
        }),
    );
    snap
}

#[test]
fn the_planner_applies_the_models_best_action_as_host_weights_and_blocking() {
    let steps = synthetic_trace(300);
    let model = Arc::new(
        SystemModel::fit(
            two(),
            &steps,
            ForestParams {
                trees: 10,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let mut p = ObjectivePlanner::new(model.clone(), ObjectiveSettings::default());
    assert_eq!(p.name(), "objective");
    // No management objective, or nothing offered yet: nothing to decide.
    assert!(p.plan(&app_snapshot(None, [10.0, 10.0])).is_empty());
    assert!(p.plan(&app_snapshot(Some(mo1()), [0.0, 0.0])).is_empty());
    let snap = app_snapshot(Some(mo1()), [15.0, 20.0]);
    let up = p.plan(&snap);
    let space = ActionSpace::new(two(), 6).unwrap();
    let reward = Reward::new(&mo1(), &names(), &BTreeMap::new(), 10.0);
    let best = best_action(model.as_ref(), &space, &reward, &[15.0, 20.0]).unwrap();
    for (k, name) in ["s1", "s2"].iter().enumerate() {
        let sp = &up.services[*name];
        assert_eq!(sp.host_weights["n1"], best.action[k].shares[0]);
        assert_eq!(sp.host_weights["n2"], best.action[k].shares[1]);
        let b = sp.blocking.get("*").map_or(0.0, |b| b.fraction);
        assert_eq!(b, best.action[k].block);
    }
    // `random` draws from the same space: every plan is one of its actions.
    let mut r = RandomPlanner::new(ObjectiveSettings::default());
    let all: Vec<Action> = space.actions().collect();
    let mut distinct = BTreeSet::new();
    for _ in 0..20 {
        let up = r.plan(&snap);
        let a: Action = ["s1", "s2"]
            .iter()
            .map(|n| {
                let sp = &up.services[*n];
                space::ServiceAction {
                    shares: vec![
                        sp.host_weights.get("n1").copied().unwrap_or(0.0),
                        sp.host_weights.get("n2").copied().unwrap_or(0.0),
                    ],
                    block: sp.blocking.get("*").map_or(0.0, |b| b.fraction),
                }
            })
            .collect();
        assert!(all.contains(&a), "{a:?}");
        distinct.insert(format!("{a:?}"));
    }
    assert!(distinct.len() > 10);
}

#[test]
fn anr_is_obtained_over_optimal_reward() {
    let steps = synthetic_trace(200);
    let model = SystemModel::fit(
        two(),
        &steps,
        ForestParams {
            trees: 10,
            ..Default::default()
        },
    )
    .unwrap();
    let s = ObjectiveSettings::default();
    let a = anr(&model, &mo1(), &BTreeMap::new(), &s, &steps[..20])
        .unwrap()
        .unwrap();
    assert_eq!(a.steps.len(), 20);
    let mean = a.steps.iter().map(|x| x.obtained / x.optimal).sum::<f64>() / 20.0;
    assert!((a.anr - mean).abs() < 1e-12);
    assert!(a.steps.iter().all(|x| x.optimal > 0.0 && x.obtained >= 0.0));
    // Steps with no load earn nothing either way and are left out.
    let mut idle = steps[..3].to_vec();
    for st in &mut idle {
        for x in &mut st.services {
            x.offered_rps = 0.0;
            x.carried_rps = 0.0;
        }
    }
    assert!(
        anr(&model, &mo1(), &BTreeMap::new(), &s, &idle)
            .unwrap()
            .is_none()
    );
}

#[test]
fn settings_name_the_bad_field() {
    let e = ObjectiveSettings {
        levels: 1,
        ..Default::default()
    }
    .validate()
    .unwrap_err();
    assert_eq!(e.field, "objective.levels");
    let e = ObjectiveSettings::default().load_model().unwrap_err();
    assert!(e.reason.contains("loadshift model"), "{e}");
    let e = ObjectiveSettings {
        model: Some("/nonexistent/m.json".into()),
        ..Default::default()
    }
    .load_model()
    .unwrap_err();
    assert_eq!(e.value, "/nonexistent/m.json");
}
