//! The control plane's side of the shared schedule: what the config and the operator chose
//! (planner and scaler per service with their settings, applications, objectives) and the
//! [`Schedule`] built from it, plus the performance-table rows the store keeps. Operator changes
//! edit the choices and re-sync the schedule: untouched policies keep their instances and what
//! they learned; a new planner plans at once.

use std::{collections::BTreeMap, time::Duration};

use loadshift_policy::{
    ApplicationState, ManagementObjective, Objective,
    planners::{Static, perf_table::StoredTable},
    registry::{self, BuildError},
    schedule::{
        AssignError, Assignment, DEFAULT_APPLICATION, PolicyBox, Role, Schedule, TaskInfo, TaskSpec,
    },
    store::TableStore,
};

use crate::config::ControlConfig;

/// Why an operator's change was refused (nothing changed).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChangeError {
    #[error(transparent)]
    Assign(#[from] AssignError),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// The performance-table store and the rows it holds (also without a store, so a planner the
/// operator switches back to resumes with what its predecessor learned).
#[derive(Default)]
pub(crate) struct Tables {
    pub store: Option<Box<dyn TableStore>>,
    pub rows: BTreeMap<String, StoredTable>,
    pub last_error: Option<String>,
}

impl Tables {
    /// Keeps `changes` and writes them to the store; a store failure is kept for the log and
    /// retried with the next change.
    pub fn save(&mut self, changes: Vec<(String, StoredTable)>) {
        if changes.is_empty() {
            return;
        }
        let result = match self.store.as_mut() {
            Some(s) => s.save(&changes),
            None => Ok(()),
        };
        self.last_error = result.err().map(|e| e.to_string());
        self.rows.extend(changes);
    }
}

/// Choices and the schedule built from them.
pub(crate) struct Policies {
    pub schedule: Schedule,
    pub assignment: Assignment,
    pub objectives: BTreeMap<String, Objective>,
    /// Every application, the implicit `default` one included, with its management objective.
    pub applications: BTreeMap<String, ApplicationState>,
    /// `static` planner weights per service, from the config's endpoints.
    static_weights: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Policies {
    /// The config's choices, scheduled as of `now`, tables restored from `tables`.
    pub fn from_config(
        cfg: &ControlConfig,
        now: Duration,
        tables: &Tables,
    ) -> Result<Self, ChangeError> {
        let assignment = cfg.assignment();
        let mut applications: BTreeMap<String, ApplicationState> = BTreeMap::new();
        for (service, app) in assignment.application_of()? {
            let state = applications.entry(app.to_string()).or_default();
            state.services.insert(service.to_string());
            if state.management.is_none() && app != DEFAULT_APPLICATION {
                state.management = cfg.applications[app].management.clone();
            }
        }
        let mut p = Policies {
            schedule: Schedule::new(),
            objectives: cfg
                .services
                .iter()
                .filter_map(|(n, s)| Some((n.clone(), s.objective.clone()?)))
                .collect(),
            applications,
            static_weights: cfg
                .services
                .iter()
                .map(|(n, s)| {
                    let w = s
                        .endpoints
                        .iter()
                        .map(|e| (e.addr.to_string(), e.weight))
                        .collect();
                    (n.clone(), w)
                })
                .collect(),
            assignment,
        };
        p.sync(now, tables)?;
        Ok(p)
    }

    /// Builds one policy: `static` from the config's weights, the rest from the registry.
    fn build(&self, spec: &TaskSpec) -> Result<PolicyBox, BuildError> {
        if spec.role == Role::Planner
            && spec.name == "static"
            && let Some(service) = spec.scope.owns.first()
        {
            let weights = self
                .static_weights
                .get(service)
                .cloned()
                .unwrap_or_default();
            return Ok(PolicyBox::Planner(Box::new(Static::new(service, weights))));
        }
        registry::build(spec)
    }

    fn sync(&mut self, now: Duration, tables: &Tables) -> Result<(), ChangeError> {
        let specs = self.assignment.tasks()?;
        let mut schedule = std::mem::take(&mut self.schedule);
        let result = schedule.sync(specs, now, |s| self.build(s));
        self.schedule = schedule;
        for id in result? {
            if let Some(table) = self.schedule.perf_table(id) {
                for (name, t) in &tables.rows {
                    table.insert(
                        name.clone(),
                        loadshift_policy::planners::perf_table::ServiceTable::from_stored(t),
                    );
                }
            }
        }
        Ok(())
    }

    /// Changes one service's planner or scaler; refused whole if it cannot be built.
    pub fn set(
        &mut self,
        role: Role,
        service: &str,
        name: &str,
        now: Duration,
        tables: &Tables,
    ) -> Result<(), ChangeError> {
        let before = self.assignment.clone();
        if let Some(c) = self.assignment.services.get_mut(service) {
            match role {
                Role::Planner => c.planner = name.to_string(),
                Role::Scaler => c.scaler = name.to_string(),
            }
        }
        let result = self.sync(now, tables);
        if result.is_err() {
            self.assignment = before;
        }
        result
    }

    /// The task of `role` owning `service`.
    pub fn owner(&self, role: Role, service: &str) -> Option<TaskInfo> {
        self.schedule.owner(role, service)
    }

    /// The application `service` belongs to.
    pub fn application_of(&self, service: &str) -> &str {
        self.applications
            .iter()
            .find(|(_, a)| a.services.contains(service))
            .map_or(DEFAULT_APPLICATION, |(n, _)| n.as_str())
    }

    /// Sets (or clears) the management objective of `service`'s application, checked against the
    /// application's services.
    pub fn set_management(
        &mut self,
        service: &str,
        m: Option<ManagementObjective>,
    ) -> Result<(), String> {
        let app = self.application_of(service).to_string();
        let Some(state) = self.applications.get_mut(&app) else {
            return Err(format!("service {service:?} is in no application"));
        };
        if let Some(m) = &m {
            let known: Vec<&str> = state.services.iter().map(String::as_str).collect();
            m.validate(&known).map_err(|e| format!("management.{e}"))?;
        }
        state.management = m;
        Ok(())
    }
}
