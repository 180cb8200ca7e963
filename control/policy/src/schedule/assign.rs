//! Which policy instances exist, for which services: the host's choices ([`Assignment`]: per
//! service a planner and a scaler with their settings, and the applications the services form)
//! become [`TaskSpec`]s, one per policy instance, by the same rule in every host.
//!
//! - A **service-scoped** policy (every planner and scaler but those below) gets one instance per
//!   service that chose it. It owns that service and sees it: the service, the edges into it,
//!   its flows, and the mesh-wide placement of hosts and proxies ([`crate::Snapshot::view`]).
//! - An **application-scoped** policy (the planner `imbres-connect`, which reads the performance
//!   tables and shares of the callers' own services; the scalers `imbres`, `queueflower` and
//!   `avg`, which budget containers over an application) gets one instance per application and
//!   settings. It owns the services of the application that chose it and sees the whole
//!   application.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    ScopeKind,
    planners::{self, PlannerSettings},
    scalers::{self, ScalerSettings},
};

pub use crate::DEFAULT_APPLICATION;

/// Planner or scaler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Planner,
    Scaler,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planner => "planner",
            Self::Scaler => "scaler",
        }
    }
}

/// Who one policy instance works for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// `service <name>` or `application <name>`, for operators and logs.
    pub label: String,
    /// Services whose plans or decisions it makes; its output for others is dropped.
    pub owns: BTreeSet<String>,
    /// Services its snapshot holds; a superset of `owns`.
    pub sees: BTreeSet<String>,
}

/// One policy instance to run.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpec {
    pub role: Role,
    /// Registry name.
    pub name: String,
    pub scope: Scope,
    /// Used when `role` is `Planner`.
    pub planner_settings: PlannerSettings,
    /// Used when `role` is `Scaler`.
    pub scaler_settings: ScalerSettings,
}

/// One service's choice of policies.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub planner: String,
    pub planner_settings: PlannerSettings,
    pub scaler: String,
    pub scaler_settings: ScalerSettings,
}

/// Everything a host chose: per service a [`Choice`], and applications as sets of services. A
/// service in no application belongs to [`DEFAULT_APPLICATION`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assignment {
    pub applications: BTreeMap<String, BTreeSet<String>>,
    pub services: BTreeMap<String, Choice>,
}

/// An assignment that cannot run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AssignError {
    #[error("unknown {role} {name:?} for service {service:?}; known: {known}")]
    Unknown {
        role: &'static str,
        name: String,
        service: String,
        known: String,
    },
    #[error(
        "service {service:?} is in applications {first:?} and {second:?}; a service belongs to one"
    )]
    TwoApplications {
        service: String,
        first: String,
        second: String,
    },
    #[error("application {application:?} lists service {service:?}, which has no policy choice")]
    UnknownService {
        application: String,
        service: String,
    },
}

impl Assignment {
    /// The application of every service.
    pub fn application_of(&self) -> Result<BTreeMap<&str, &str>, AssignError> {
        let mut of: BTreeMap<&str, &str> = BTreeMap::new();
        for (app, services) in &self.applications {
            for s in services {
                if !self.services.contains_key(s) {
                    return Err(AssignError::UnknownService {
                        application: app.clone(),
                        service: s.clone(),
                    });
                }
                if let Some(first) = of.insert(s, app) {
                    return Err(AssignError::TwoApplications {
                        service: s.clone(),
                        first: first.to_string(),
                        second: app.clone(),
                    });
                }
            }
        }
        for s in self.services.keys() {
            of.entry(s).or_insert(DEFAULT_APPLICATION);
        }
        Ok(of)
    }

    /// Services per application, the implicit default one included.
    fn members(&self) -> Result<BTreeMap<String, BTreeSet<String>>, AssignError> {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (s, a) in self.application_of()? {
            m.entry(a.to_string()).or_default().insert(s.to_string());
        }
        Ok(m)
    }

    /// One spec per policy instance: planners first, then scalers, each in service order.
    pub fn tasks(&self) -> Result<Vec<TaskSpec>, AssignError> {
        let app_of = self.application_of()?;
        let members = self.members()?;
        let mut out = Vec::new();
        for role in [Role::Planner, Role::Scaler] {
            // (application, name, settings index) -> owned services, for application scope.
            let mut grouped: Vec<(String, String, TaskSpec)> = Vec::new();
            for (service, c) in &self.services {
                let name = match role {
                    Role::Planner => &c.planner,
                    Role::Scaler => &c.scaler,
                };
                let kind = match role {
                    Role::Planner => planners::scope_kind(name),
                    Role::Scaler => scalers::scope_kind(name),
                }
                .ok_or_else(|| AssignError::Unknown {
                    role: role.as_str(),
                    name: name.clone(),
                    service: service.clone(),
                    known: match role {
                        Role::Planner => planners::NAMES.join(", "),
                        Role::Scaler => scalers::NAMES.join(", "),
                    },
                })?;
                let spec = |scope: Scope| TaskSpec {
                    role,
                    name: name.clone(),
                    scope,
                    planner_settings: c.planner_settings.clone(),
                    scaler_settings: c.scaler_settings.clone(),
                };
                match kind {
                    ScopeKind::Service => {
                        let one: BTreeSet<String> = [service.clone()].into();
                        out.push(spec(Scope {
                            label: format!("service {service}"),
                            owns: one.clone(),
                            sees: one,
                        }));
                    }
                    ScopeKind::Application => {
                        let app = app_of[service.as_str()];
                        let found = grouped.iter_mut().find(|(a, n, g)| {
                            a == app
                                && n == name
                                && g.planner_settings == c.planner_settings
                                && g.scaler_settings == c.scaler_settings
                        });
                        match found {
                            Some((_, _, g)) => {
                                g.scope.owns.insert(service.clone());
                            }
                            None => grouped.push((
                                app.to_string(),
                                name.clone(),
                                spec(Scope {
                                    label: format!("application {app}"),
                                    owns: [service.clone()].into(),
                                    sees: members[app].clone(),
                                }),
                            )),
                        }
                    }
                }
            }
            out.extend(grouped.into_iter().map(|(_, _, g)| g));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(planner: &str, scaler: &str) -> Choice {
        Choice {
            planner: planner.into(),
            planner_settings: PlannerSettings::default(),
            scaler: scaler.into(),
            scaler_settings: ScalerSettings::default(),
        }
    }

    #[test]
    fn service_policies_get_one_instance_each_application_policies_one_per_application() {
        let a = Assignment {
            applications: [
                ("shop".to_string(), ["a", "b", "c"].map(String::from).into()),
                ("blog".to_string(), ["d"].map(String::from).into()),
            ]
            .into(),
            services: [
                ("a".to_string(), choice("imbres-connect", "hpa")),
                ("b".to_string(), choice("imbres-connect", "none")),
                ("c".to_string(), choice("even", "none")),
                ("d".to_string(), choice("imbres-connect", "none")),
                ("e".to_string(), choice("imbres-shift", "none")),
            ]
            .into(),
        };
        let t = a.tasks().unwrap();
        let planners: Vec<(&str, &str, Vec<&str>, usize)> = t
            .iter()
            .filter(|s| s.role == Role::Planner)
            .map(|s| {
                (
                    s.name.as_str(),
                    s.scope.label.as_str(),
                    s.scope.owns.iter().map(String::as_str).collect(),
                    s.scope.sees.len(),
                )
            })
            .collect();
        assert_eq!(
            planners,
            vec![
                ("even", "service c", vec!["c"], 1),
                ("imbres-shift", "service e", vec!["e"], 1),
                ("imbres-connect", "application shop", vec!["a", "b"], 3),
                ("imbres-connect", "application blog", vec!["d"], 1),
            ]
        );
        assert_eq!(t.iter().filter(|s| s.role == Role::Scaler).count(), 5);
        assert_eq!(a.application_of().unwrap()["e"], DEFAULT_APPLICATION);

        // Different settings: different instances.
        let mut b = a.clone();
        if let Some(c) = b.services.get_mut("b") {
            c.planner_settings.connect.cap_per_downstream = 3;
        }
        assert_eq!(
            b.tasks()
                .unwrap()
                .iter()
                .filter(|s| s.name == "imbres-connect")
                .count(),
            3
        );
    }

    #[test]
    fn application_scalers_get_one_instance_per_application() {
        let a = Assignment {
            applications: [
                ("shop".to_string(), ["a", "b", "c"].map(String::from).into()),
                ("blog".to_string(), ["d", "e"].map(String::from).into()),
            ]
            .into(),
            services: [
                ("a".to_string(), choice("even", "imbres")),
                ("b".to_string(), choice("even", "imbres")),
                ("c".to_string(), choice("even", "hpa")),
                ("d".to_string(), choice("even", "queueflower")),
                ("e".to_string(), choice("even", "avg")),
            ]
            .into(),
        };
        let t = a.tasks().unwrap();
        let scalers: Vec<(&str, &str, Vec<&str>, usize)> = t
            .iter()
            .filter(|s| s.role == Role::Scaler)
            .map(|s| {
                (
                    s.name.as_str(),
                    s.scope.label.as_str(),
                    s.scope.owns.iter().map(String::as_str).collect(),
                    s.scope.sees.len(),
                )
            })
            .collect();
        assert_eq!(
            scalers,
            vec![
                ("hpa", "service c", vec!["c"], 1),
                ("imbres", "application shop", vec!["a", "b"], 3),
                ("queueflower", "application blog", vec!["d"], 2),
                ("avg", "application blog", vec!["e"], 2),
            ]
        );
    }

    #[test]
    fn bad_assignments_say_why() {
        let mut a = Assignment {
            applications: BTreeMap::new(),
            services: [("a".to_string(), choice("magic", "none"))].into(),
        };
        let e = a.tasks().unwrap_err().to_string();
        assert!(
            e.contains("unknown planner \"magic\" for service \"a\"") && e.contains("even"),
            "{e}"
        );
        a.services.insert("a".into(), choice("even", "none"));
        a.applications = [
            ("x".to_string(), ["a".to_string()].into()),
            ("y".to_string(), ["a".to_string()].into()),
        ]
        .into();
        assert!(matches!(
            a.tasks(),
            Err(AssignError::TwoApplications { .. })
        ));
        a.applications = [("x".to_string(), ["zz".to_string()].into())].into();
        assert!(matches!(a.tasks(), Err(AssignError::UnknownService { .. })));
    }
}
