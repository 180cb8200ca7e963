//! The control schedule: which planner or scaler runs when, over which snapshot, with which
//! settings. `loadshift control`, `loadshift sim` and so `loadshift lab` drive the same
//! [`Schedule`]; only the clock, where snapshots come from and where outputs go differ:
//!
//! ```text
//! host: schedule.next_due() -> wait until then (tokio timer / simulated event)
//!       snapshot at that time -> schedule.run_due(&snap) -> Round
//!       Round.outputs: plans -> plan book / simulated balancers
//!                      decisions -> actuator (checked by decision::actuate)
//!       Round.table_changes -> performance-table store
//! ```
//!
//! Timing: a planner runs as soon as it is added (the first plans exist before any telemetry, so
//! a static or even plan is in force at once), then every interval; a scaler first runs one
//! interval after it is added (scaling on no telemetry would act on nothing). The interval is the
//! policy's own ([`Planner::interval`], [`Scaler::interval`]) unless
//! `planner_settings.interval_ms` overrides every planner's. Tasks due at the same instant run
//! planners first, then scalers, each in the order they were added. A host that calls late runs
//! every overdue task once and schedules it one interval after the call, never in a burst.
//!
//! Each task sees [`Snapshot::view`] of its scope and may only change the services it owns:
//! plans and decisions for other services are dropped and counted in [`Output::foreign`]. A
//! scaler that [observes](Scaler::observes) also reads its view at every round it is not due in
//! (the planners' rounds), and every scaler is told the services it owns when it is added
//! ([`Scaler::set_owned`]).

mod assign;

use std::{collections::BTreeSet, time::Duration};

pub use crate::ScopeKind;
pub use assign::{AssignError, Assignment, Choice, DEFAULT_APPLICATION, Role, Scope, TaskSpec};

use crate::{
    PlanUpdate, Planner, ScaleDecision, Scaler, Snapshot,
    planners::perf_table::{PerfTable, StoredTable},
    snapshot::ViewIndex,
};

/// A built policy instance.
pub enum PolicyBox {
    Planner(Box<dyn Planner>),
    Scaler(Box<dyn Scaler>),
}

impl PolicyBox {
    fn name(&self) -> &str {
        match self {
            Self::Planner(p) => p.name(),
            Self::Scaler(s) => s.name(),
        }
    }
}

/// Identifies one task for as long as it exists.
pub type TaskId = u64;

struct Task {
    id: TaskId,
    spec: TaskSpec,
    policy: PolicyBox,
    interval: Duration,
    next: Duration,
    runs: u64,
}

/// What one task produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Plans(PlanUpdate),
    Decisions(Vec<ScaleDecision>),
}

/// One task's output in a round, restricted to the services it owns.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub task: TaskId,
    /// Registry name of the policy.
    pub policy: String,
    pub scope: Scope,
    pub action: Action,
    /// Plans or decisions for services outside the scope, dropped.
    pub foreign: usize,
}

/// Everything the tasks due at one instant produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Round {
    /// The snapshot's clock.
    pub at: Duration,
    pub outputs: Vec<Output>,
    /// Performance-table rows that changed, for the host's store.
    pub table_changes: Vec<(String, StoredTable)>,
}

/// A task as operators see it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskInfo {
    pub id: TaskId,
    pub role: Role,
    pub name: String,
    pub scope: Scope,
    pub interval: Duration,
    /// When it runs next.
    pub next: Duration,
    /// Rounds run so far.
    pub runs: u64,
}

/// The policy instances of one host and when each runs next.
#[derive(Default)]
pub struct Schedule {
    tasks: Vec<Task>,
    next_id: TaskId,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tasks()).finish()
    }
}

impl Schedule {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the task list equal to `specs`: a task whose spec is unchanged keeps its instance
    /// (and what it learned) and its timing; the others are built with `build` and added as of
    /// `now`; tasks not in `specs` are dropped. When `build` fails for one spec the schedule is
    /// left unchanged. Returns the ids of the tasks added.
    pub fn sync<E>(
        &mut self,
        specs: Vec<TaskSpec>,
        now: Duration,
        mut build: impl FnMut(&TaskSpec) -> Result<PolicyBox, E>,
    ) -> Result<Vec<TaskId>, E> {
        // Match first and build second, so a failed build leaves everything as it was.
        let mut claimed = vec![false; self.tasks.len()];
        let matches: Vec<Option<usize>> = specs
            .iter()
            .map(|spec| {
                let i =
                    (0..self.tasks.len()).find(|&i| !claimed[i] && self.tasks[i].spec == *spec)?;
                claimed[i] = true;
                Some(i)
            })
            .collect();
        let mut built = Vec::new();
        for (spec, m) in specs.iter().zip(&matches) {
            if m.is_none() {
                built.push(build(spec)?);
            }
        }
        let mut old: Vec<Option<Task>> = std::mem::take(&mut self.tasks)
            .into_iter()
            .map(Some)
            .collect();
        let mut built = built.into_iter();
        let mut added = Vec::new();
        for (spec, m) in specs.into_iter().zip(matches) {
            if let Some(t) = m.and_then(|i| old[i].take()) {
                self.tasks.push(t);
                continue;
            }
            let Some(mut policy) = built.next() else {
                unreachable!("one policy was built per unmatched spec");
            };
            if let PolicyBox::Scaler(s) = &mut policy {
                s.set_owned(&spec.scope.owns);
            }
            let own = match &policy {
                PolicyBox::Planner(p) => p.interval(),
                PolicyBox::Scaler(s) => s.interval(),
            };
            let interval = match (&policy, spec.planner_settings.interval_ms) {
                (PolicyBox::Planner(_), Some(ms)) => Duration::from_millis(ms),
                _ => own,
            }
            .max(Duration::from_millis(1));
            let next = match policy {
                PolicyBox::Planner(_) => now,
                PolicyBox::Scaler(_) => now + interval,
            };
            self.next_id += 1;
            added.push(self.next_id);
            self.tasks.push(Task {
                id: self.next_id,
                spec,
                policy,
                interval,
                next,
                runs: 0,
            });
        }
        Ok(added)
    }

    /// When the next task is due; `None` without tasks.
    pub fn next_due(&self) -> Option<Duration> {
        self.tasks.iter().map(|t| t.next).min()
    }

    /// Runs every task due at `snap.now` on its view of `snap`.
    pub fn run_due(&mut self, snap: &Snapshot) -> Round {
        let now = snap.now;
        let mut due: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| self.tasks[i].next <= now)
            .collect();
        due.sort_by_key(|&i| (self.tasks[i].spec.role, i));
        let mut round = Round {
            at: now,
            ..Default::default()
        };
        let mut index = None;
        // Scalers that learn from every snapshot and are not due now read this one too (a due
        // one observes inside `scale`); for the others this costs one call per task.
        for t in &mut self.tasks {
            if t.next <= now {
                continue;
            }
            if let PolicyBox::Scaler(s) = &mut t.policy
                && s.observes()
            {
                let view = view_of(snap, &mut index, &t.spec.scope.sees);
                s.observe(view.as_ref().unwrap_or(snap));
            }
        }
        for i in due {
            let t = &mut self.tasks[i];
            let view = view_of(snap, &mut index, &t.spec.scope.sees);
            let input = view.as_ref().unwrap_or(snap);
            let owns = &t.spec.scope.owns;
            let (action, foreign) = match &mut t.policy {
                PolicyBox::Planner(p) => {
                    let mut up = p.plan(input);
                    let foreign = up.retain_services(|s| owns.contains(s));
                    if let Some(table) = p.perf_table() {
                        round.table_changes.extend(table.take_dirty());
                    }
                    (Action::Plans(up), foreign)
                }
                PolicyBox::Scaler(s) => {
                    let mut ds = s.scale(input);
                    let before = ds.len();
                    ds.retain(|d| owns.contains(&d.service));
                    (Action::Decisions(ds.clone()), before - ds.len())
                }
            };
            t.runs += 1;
            t.next = now + t.interval;
            round.outputs.push(Output {
                task: t.id,
                policy: t.policy.name().to_string(),
                scope: t.spec.scope.clone(),
                action,
                foreign,
            });
        }
        round
    }

    /// Every task, in the order they run at one instant.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        let mut v: Vec<TaskInfo> = self
            .tasks
            .iter()
            .map(|t| TaskInfo {
                id: t.id,
                role: t.spec.role,
                name: t.policy.name().to_string(),
                scope: t.spec.scope.clone(),
                interval: t.interval,
                next: t.next,
                runs: t.runs,
            })
            .collect();
        v.sort_by_key(|t| t.role);
        v
    }

    /// The task of `role` that owns `service`.
    pub fn owner(&self, role: Role, service: &str) -> Option<TaskInfo> {
        self.tasks()
            .into_iter()
            .find(|t| t.role == role && t.scope.owns.contains(service))
    }

    /// The performance table task `id` learns, if any (for the host to restore it).
    pub fn perf_table(&mut self, id: TaskId) -> Option<&mut PerfTable> {
        match &mut self.tasks.iter_mut().find(|t| t.id == id)?.policy {
            PolicyBox::Planner(p) => p.perf_table(),
            PolicyBox::Scaler(_) => None,
        }
    }
}

/// The view of `snap` a task that sees `sees` reads; `None` when it sees every service and so
/// reads the snapshot itself (a superset of a set is at least as large, so most tasks are told
/// apart by size alone). `index` is built on first use and shared by the round's views.
fn view_of<'s>(
    snap: &'s Snapshot,
    index: &mut Option<ViewIndex<'s>>,
    sees: &BTreeSet<String>,
) -> Option<Snapshot> {
    let sees_all =
        sees.len() >= snap.services.len() && snap.services.keys().all(|s| sees.contains(s));
    (!sees_all).then(|| snap.view_indexed(index.get_or_insert_with(|| snap.index()), sees))
}

#[cfg(test)]
mod tests;
