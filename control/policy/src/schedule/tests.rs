use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use loadshift_core::plan::ServicePlan;

use super::*;
use crate::{
    ServiceState,
    planners::PlannerSettings,
    registry,
    scalers::ScalerSettings,
    testing::{container, snapshot},
};

/// When the probe ran and which services its view held.
type Seen = Arc<Mutex<Vec<(Duration, Vec<String>)>>>;

/// Records what it saw and plans every service in its view (its own and any other).
struct Probe {
    seen: Seen,
    interval: Duration,
}

impl Planner for Probe {
    fn name(&self) -> &str {
        "probe"
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    fn plan(&mut self, snap: &Snapshot) -> PlanUpdate {
        self.seen
            .lock()
            .unwrap()
            .push((snap.now, snap.services.keys().cloned().collect()));
        let mut up = PlanUpdate::default();
        for s in snap.services.keys() {
            up.services.insert(s.clone(), ServicePlan::default());
        }
        // Something it does not own, whatever its view.
        up.services
            .insert("elsewhere".into(), ServicePlan::default());
        up
    }
}

fn spec(role: Role, name: &str, owns: &[&str], sees: &[&str]) -> TaskSpec {
    TaskSpec {
        role,
        name: name.into(),
        scope: Scope {
            label: format!("test {}", owns.join(",")),
            owns: owns.iter().map(|s| s.to_string()).collect(),
            sees: sees.iter().map(|s| s.to_string()).collect(),
        },
        planner_settings: PlannerSettings::default(),
        scaler_settings: ScalerSettings::default(),
    }
}

fn snap_at(secs: u64) -> Snapshot {
    let svc = |name: &str| ServiceState {
        name: name.into(),
        containers: vec![container(1, "h1", 5.0, 100)],
        ..Default::default()
    };
    let mut s = snapshot(vec![svc("a"), svc("b")]);
    s.now = Duration::from_secs(secs);
    s
}

#[test]
fn planners_run_at_once_then_every_interval_scalers_after_one_interval() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut sch = Schedule::new();
    let probe = |seen: &Seen| Probe {
        seen: seen.clone(),
        interval: Duration::from_secs(5),
    };
    sch.sync(
        vec![
            spec(Role::Planner, "probe", &["a"], &["a"]),
            spec(Role::Scaler, "hpa", &["a"], &["a"]),
        ],
        Duration::ZERO,
        |s| -> Result<PolicyBox, registry::BuildError> {
            match s.role {
                Role::Planner => Ok(PolicyBox::Planner(Box::new(probe(&seen)))),
                Role::Scaler => registry::build(s),
            }
        },
    )
    .unwrap();
    assert_eq!(sch.next_due(), Some(Duration::ZERO));
    let r = sch.run_due(&snap_at(0));
    assert_eq!(r.outputs.len(), 1, "only the planner at 0");
    // The view holds `a` alone; the plan for `elsewhere` is dropped and counted.
    assert_eq!(seen.lock().unwrap()[0].1, vec!["a".to_string()]);
    let Action::Plans(up) = &r.outputs[0].action else {
        panic!("a planner plans");
    };
    assert_eq!(up.services.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(r.outputs[0].foreign, 1);
    assert_eq!(sch.next_due(), Some(Duration::from_secs(5)));
    // HPA's own interval is 15 s: planner at 5, 10, then both at 15, planner first.
    for t in [5, 10] {
        assert_eq!(sch.run_due(&snap_at(t)).outputs.len(), 1);
    }
    let r = sch.run_due(&snap_at(15));
    let roles: Vec<&str> = r.outputs.iter().map(|o| o.policy.as_str()).collect();
    assert_eq!(roles, ["probe", "hpa"]);
    // Called late (at 27 s instead of 20): each overdue task runs once, then one interval on.
    let r = sch.run_due(&snap_at(27));
    assert_eq!(r.outputs.len(), 1);
    assert_eq!(sch.next_due(), Some(Duration::from_secs(30)));
    let tasks = sch.tasks();
    assert_eq!(tasks[0].runs, 5);
    assert_eq!(
        sch.owner(Role::Scaler, "a").map(|t| t.interval),
        Some(Duration::from_secs(15))
    );
    // Nothing is due between rounds.
    assert!(sch.run_due(&snap_at(29)).outputs.is_empty());
}

#[test]
fn interval_override_and_sync_keep_what_did_not_change() {
    let mut sch = Schedule::new();
    let mut fast = spec(Role::Planner, "imbres-shift", &["a"], &["a"]);
    fast.planner_settings.interval_ms = Some(200);
    let even_b = spec(Role::Planner, "even", &["b"], &["b"]);
    sch.sync(
        vec![fast.clone(), even_b.clone()],
        Duration::ZERO,
        registry::build,
    )
    .unwrap();
    assert_eq!(sch.tasks()[0].interval, Duration::from_millis(200));
    assert_eq!(sch.tasks()[1].interval, Duration::from_secs(5));
    sch.run_due(&snap_at(0));
    let kept_id = sch.tasks()[1].id;

    // `a` switches planner; `b` is untouched and keeps its instance, runs and timing.
    let least = spec(Role::Planner, "least-request", &["a"], &["a"]);
    let added = sch
        .sync(
            vec![least, even_b.clone()],
            Duration::from_secs(2),
            registry::build,
        )
        .unwrap();
    assert_eq!(added.len(), 1);
    let t = sch.tasks();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].name, "least-request");
    assert_eq!(
        t[0].next,
        Duration::from_secs(2),
        "a new planner plans at once"
    );
    assert_eq!(
        (t[1].id, t[1].runs, t[1].next),
        (kept_id, 1, Duration::from_secs(5))
    );

    // A spec that cannot be built leaves the schedule as it was.
    let before = sch.tasks();
    let e = sch
        .sync(
            vec![spec(Role::Planner, "magic", &["a"], &["a"]), even_b],
            Duration::from_secs(3),
            registry::build,
        )
        .unwrap_err();
    assert!(e.to_string().contains("magic"), "{e}");
    assert_eq!(sch.tasks(), before);
}

#[test]
fn learned_tables_reach_the_host_and_can_be_restored() {
    let mut a = Assignment::default();
    for s in ["front", "back"] {
        a.services.insert(
            s.into(),
            Choice {
                planner: "imbres-connect".into(),
                planner_settings: PlannerSettings::default(),
                scaler: "none".into(),
                scaler_settings: ScalerSettings::default(),
            },
        );
    }
    let mut sch = Schedule::new();
    let added = sch
        .sync(a.tasks().unwrap(), Duration::ZERO, registry::build)
        .unwrap();
    // One application-scoped planner for both services and one scaler each.
    assert_eq!(added.len(), 3);
    let snap = crate::planners::imbres_connect::tests::scene(10.0);
    let r = sch.run_due(&snap);
    assert!(!r.table_changes.is_empty(), "observations were recorded");
    // Restoring: the table of a new instance takes the rows the host kept.
    let rows: BTreeMap<String, StoredTable> = r.table_changes.into_iter().collect();
    let mut other = Schedule::new();
    let ids = other
        .sync(a.tasks().unwrap(), Duration::ZERO, registry::build)
        .unwrap();
    let table = other
        .perf_table(ids[0])
        .expect("imbres-connect learns a table");
    for (name, t) in &rows {
        table.insert(
            name.clone(),
            crate::planners::perf_table::ServiceTable::from_stored(t),
        );
    }
    assert!(!table.is_empty());
}

/// A scaler that records the rounds it observed and scaled in, and the services it was told it
/// owns.
struct Watcher {
    observed: Seen,
    scaled: Arc<Mutex<Vec<Duration>>>,
    owned: Arc<Mutex<Vec<Vec<String>>>>,
    observes: bool,
}

impl Scaler for Watcher {
    fn name(&self) -> &str {
        "watcher"
    }
    fn interval(&self) -> Duration {
        Duration::from_secs(15)
    }
    fn set_owned(&mut self, services: &std::collections::BTreeSet<String>) {
        self.owned
            .lock()
            .unwrap()
            .push(services.iter().cloned().collect());
    }
    fn observes(&self) -> bool {
        self.observes
    }
    fn observe(&mut self, snap: &Snapshot) {
        self.observed
            .lock()
            .unwrap()
            .push((snap.now, snap.services.keys().cloned().collect()));
    }
    fn scale(&mut self, snap: &Snapshot) -> Vec<ScaleDecision> {
        self.scaled.lock().unwrap().push(snap.now);
        Vec::new()
    }
}

#[test]
fn an_observing_scaler_sees_every_round_it_is_not_due_in() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let observed = Arc::new(Mutex::new(Vec::new()));
    let scaled = Arc::new(Mutex::new(Vec::new()));
    let owned = Arc::new(Mutex::new(Vec::new()));
    let quiet_observed = Arc::new(Mutex::new(Vec::new()));
    let mut sch = Schedule::new();
    sch.sync(
        vec![
            spec(Role::Planner, "probe", &["a", "b"], &["a", "b"]),
            spec(Role::Scaler, "watcher", &["a"], &["a"]),
            spec(Role::Scaler, "quiet", &["b"], &["b"]),
        ],
        Duration::ZERO,
        |s| -> Result<PolicyBox, registry::BuildError> {
            Ok(match (s.role, s.name.as_str()) {
                (Role::Planner, _) => PolicyBox::Planner(Box::new(Probe {
                    seen: seen.clone(),
                    interval: Duration::from_secs(5),
                })),
                (_, name) => PolicyBox::Scaler(Box::new(Watcher {
                    observed: if name == "watcher" {
                        observed.clone()
                    } else {
                        quiet_observed.clone()
                    },
                    scaled: scaled.clone(),
                    owned: owned.clone(),
                    observes: name == "watcher",
                })),
            })
        },
    )
    .unwrap();
    for t in [0, 5, 10, 15, 20, 25, 30] {
        sch.run_due(&snap_at(t));
    }
    // Planner rounds at 0..30 every 5 s; the scaler is due at 15 and 30 and observes the rest,
    // each time through its own view.
    let got: Vec<(u64, Vec<String>)> = observed
        .lock()
        .unwrap()
        .iter()
        .map(|(t, v)| (t.as_secs(), v.clone()))
        .collect();
    let a = vec!["a".to_string()];
    assert_eq!(
        got,
        [0, 5, 10, 20, 25].map(|t| (t, a.clone())).to_vec(),
        "observed between its own rounds"
    );
    assert_eq!(
        *scaled.lock().unwrap(),
        [15, 15, 30, 30].map(Duration::from_secs).to_vec(),
        "both scalers scale at their own rounds"
    );
    assert!(
        quiet_observed.lock().unwrap().is_empty(),
        "a scaler that does not observe is not called between rounds"
    );
    assert_eq!(seen.lock().unwrap().len(), 7);
    // The schedule told each scaler, once, which services it owns.
    assert_eq!(
        *owned.lock().unwrap(),
        [vec!["a".to_string()], vec!["b".to_string()]]
    );
}
