//! The `Operator` service: state, objectives and policies, pins, plan watching and the scale
//! decision history.

use std::{collections::BTreeMap, pin::Pin, sync::Arc};

use loadshift_core::plan::ServicePlan;
use loadshift_proto::v1::{self as pb, operator_server::Operator};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use loadshift_policy::{Objective, schedule::Role};

use super::{control_loop, shared::Shared, wire};

pub(crate) struct OperatorApi {
    shared: Arc<Shared>,
}

impl OperatorApi {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn summary(&self, name: &str) -> Option<pb::ServiceSummary> {
        let (planner, scaler, application) = {
            let p = self.shared.policies.lock();
            p.assignment.services.get(name)?;
            (
                p.owner(Role::Planner, name),
                p.owner(Role::Scaler, name),
                p.application_of(name).to_string(),
            )
        };
        let endpoints = self.shared.endpoints.borrow().get(name).map_or(0, Vec::len);
        let callers = self
            .shared
            .store
            .lock()
            .identities()
            .filter(|i| i.outbound_services.iter().any(|s| s == name))
            .count();
        let name_of = |t: &Option<loadshift_policy::schedule::TaskInfo>| {
            t.as_ref().map(|t| t.name.clone()).unwrap_or_default()
        };
        let scope_of = |t: &Option<loadshift_policy::schedule::TaskInfo>| {
            t.as_ref()
                .map(|t| t.scope.label.clone())
                .unwrap_or_default()
        };
        Some(pb::ServiceSummary {
            name: name.to_string(),
            endpoints: endpoints as u32,
            planner: name_of(&planner),
            scaler: name_of(&scaler),
            pinned: self.shared.plans.view(name).pinned,
            callers: callers as u32,
            application,
            planner_scope: scope_of(&planner),
            scaler_scope: scope_of(&scaler),
        })
    }

    fn service_names(&self) -> Vec<String> {
        self.shared
            .policies
            .lock()
            .assignment
            .services
            .keys()
            .cloned()
            .collect()
    }

    fn known(&self, service: &str) -> Result<(), Status> {
        if self
            .shared
            .policies
            .lock()
            .assignment
            .services
            .contains_key(service)
        {
            Ok(())
        } else {
            Err(Status::not_found(format!(
                "unknown service {service:?}; known: {}",
                self.service_names().join(", ")
            )))
        }
    }
}

fn event(c: crate::plans::PlanChange) -> pb::PlanEvent {
    pb::PlanEvent {
        service: c.service,
        plan: c.plan.as_ref().map(pb::ServicePlan::from),
        plan_revision: c.revision,
        source: c.source,
        unix_ms: c.unix_ms,
    }
}

/// The endpoint shares a plan gives, for display: resolved weights normalised to sum 1.
fn shares(plan: Option<&ServicePlan>, eps: &[loadshift_core::endpoint::Endpoint]) -> Vec<f64> {
    let even = || vec![1.0 / eps.len().max(1) as f64; eps.len()];
    let Some(r) = plan.and_then(|p| p.resolve(eps)) else {
        return even();
    };
    let total: f64 = r.weights.iter().sum();
    if total > 0.0 {
        r.weights.iter().map(|w| w / total).collect()
    } else {
        even()
    }
}

type Events = Pin<Box<dyn Stream<Item = Result<pb::PlanEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Operator for OperatorApi {
    async fn list_services(
        &self,
        _req: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        let services = self
            .service_names()
            .iter()
            .filter_map(|n| self.summary(n))
            .collect();
        Ok(Response::new(pb::ListServicesResponse { services }))
    }

    async fn get_state(
        &self,
        req: Request<pb::GetStateRequest>,
    ) -> Result<Response<pb::GetStateResponse>, Status> {
        let want = req.into_inner().service;
        if !want.is_empty() {
            self.known(&want)?;
        }
        let sh = &self.shared;
        let (names, objectives, policies): (
            Vec<String>,
            BTreeMap<String, Objective>,
            BTreeMap<String, (String, String, Option<pb::ManagementObjective>)>,
        ) = {
            let p = sh.policies.lock();
            let names = p
                .assignment
                .services
                .keys()
                .filter(|n| want.is_empty() || **n == want)
                .cloned()
                .collect();
            let pol = p
                .assignment
                .services
                .keys()
                .map(|n| {
                    let task = |role| p.owner(role, n).map(|t| t.name).unwrap_or_default();
                    let management = p
                        .applications
                        .get(p.application_of(n))
                        .and_then(|a| a.management.as_ref())
                        .map(wire::management_to_pb);
                    (
                        n.clone(),
                        (task(Role::Planner), task(Role::Scaler), management),
                    )
                })
                .collect();
            (names, p.objectives.clone(), pol)
        };
        let eps = sh.endpoints.borrow().clone();
        let (snap, blocked, proxies) = {
            let store = sh.store.lock();
            let snap = store.snapshot(sh.now(), sh.cfg.report_stale(), &eps, &objectives);
            (
                snap,
                store.blocked(sh.now(), sh.cfg.report_stale()),
                store.len(),
            )
        };
        let services = names
            .iter()
            .map(|name| {
                let view = sh.plans.view(name);
                let svc = snap.services.get(name);
                let containers = svc.map(|s| s.containers.as_slice()).unwrap_or_default();
                let list: Vec<_> = containers.iter().map(|c| c.endpoint.clone()).collect();
                let shares = shares(view.plan.as_ref(), &list);
                let (planner, scaler, management) = policies.get(name).cloned().unwrap_or_default();
                pb::ServiceState {
                    name: name.clone(),
                    planner,
                    scaler,
                    objective: objectives.get(name).map(|o| pb::Objective {
                        sla_ms: o.sla_ms,
                        percentile: o.percentile,
                        flow: String::new(),
                    }),
                    management,
                    pinned: view.pinned,
                    plan: view.plan.as_ref().map(pb::ServicePlan::from),
                    plan_revision: view.revision,
                    endpoints: containers
                        .iter()
                        .zip(shares)
                        .map(|(c, share)| pb::EndpointState {
                            endpoint: Some(pb::Endpoint::from(&c.endpoint)),
                            inbound: c.inbound.as_ref().map(pb::Window::from),
                            outbound: Some(pb::Window::from(&c.outbound)),
                            in_flight: c.in_flight,
                            ewma_ms: c.ewma_ms,
                            share,
                        })
                        .collect(),
                    offered_rps: svc.map_or(0.0, |s| s.offered_rps),
                    blocked: blocked
                        .iter()
                        .filter(|((s, _), _)| s == name)
                        .map(|((s, c), n)| pb::BlockedCount {
                            service: s.clone(),
                            class: c.clone(),
                            count: *n,
                        })
                        .collect(),
                    callers: svc.map(|s| s.callers.clone()).unwrap_or_default(),
                    history: sh
                        .history
                        .lock()
                        .get(name)
                        .map(|h| h.iter().copied().collect())
                        .unwrap_or_default(),
                }
            })
            .collect();
        let hosts = snap
            .hosts
            .iter()
            .map(|(h, p)| pb::HostState {
                host: h.clone(),
                pressure: Some(pb::HostPressure::from(p)),
            })
            .collect();
        Ok(Response::new(pb::GetStateResponse {
            services,
            hosts,
            proxies: proxies as u32,
        }))
    }

    async fn set_objective(
        &self,
        req: Request<pb::SetObjectiveRequest>,
    ) -> Result<Response<pb::SetObjectiveResponse>, Status> {
        let r = req.into_inner();
        self.known(&r.service)?;
        // Everything is checked before anything changes: a refused request changes nothing.
        let objective = match &r.objective {
            Some(o) if o.sla_ms == 0.0 => Some(None),
            Some(o) => {
                let o = Objective {
                    sla_ms: o.sla_ms,
                    percentile: o.percentile,
                };
                o.validate().map_err(|e| {
                    Status::invalid_argument(format!("objective.{e} (sla_ms 0 clears)"))
                })?;
                Some(Some(o))
            }
            None => None,
        };
        let management = r
            .management
            .as_ref()
            .map(wire::management_from_pb)
            .transpose()
            .map_err(Status::invalid_argument)?;
        let sh = &self.shared;
        let replanned = !r.planner.is_empty();
        {
            let tables = sh.tables.lock();
            let mut p = sh.policies.lock();
            let now = sh.now();
            let before = p.assignment.clone();
            if let Some(m) = management {
                p.set_management(&r.service, m)
                    .map_err(Status::invalid_argument)?;
            }
            for (role, name) in [(Role::Planner, &r.planner), (Role::Scaler, &r.scaler)] {
                if name.is_empty() {
                    continue;
                }
                if let Err(e) = p.set(role, &r.service, name, now, &tables) {
                    p.assignment = before;
                    return Err(Status::invalid_argument(e.to_string()));
                }
            }
            match objective {
                Some(Some(o)) => {
                    p.objectives.insert(r.service.clone(), o);
                }
                Some(None) => {
                    p.objectives.remove(&r.service);
                }
                None => {}
            }
        }
        tracing::info!(service = %r.service, "operator changed the service's policy");
        if replanned {
            // A new planner takes effect now rather than at its first interval.
            control_loop::round_now(sh);
        } else {
            sh.wake.notify_one();
        }
        Ok(Response::new(pb::SetObjectiveResponse {
            service: self.summary(&r.service),
        }))
    }

    async fn pin_plan(
        &self,
        req: Request<pb::PinPlanRequest>,
    ) -> Result<Response<pb::PinPlanResponse>, Status> {
        let r = req.into_inner();
        self.known(&r.service)?;
        let plan = r
            .plan
            .as_ref()
            .map(ServicePlan::from)
            .ok_or_else(|| Status::invalid_argument("plan is required"))?;
        let eps = self
            .shared
            .endpoints
            .borrow()
            .get(&r.service)
            .cloned()
            .unwrap_or_default();
        plan.validate(&r.service, &eps)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let plan_revision = self.shared.plans.pin(&r.service, plan);
        tracing::info!(service = %r.service, plan_revision, "operator pinned a plan");
        Ok(Response::new(pb::PinPlanResponse { plan_revision }))
    }

    async fn unpin(
        &self,
        req: Request<pb::UnpinRequest>,
    ) -> Result<Response<pb::UnpinResponse>, Status> {
        let r = req.into_inner();
        self.known(&r.service)?;
        let plan_revision = self.shared.plans.unpin(&r.service).ok_or_else(|| {
            Status::failed_precondition(format!("service {:?} is not pinned", r.service))
        })?;
        tracing::info!(service = %r.service, plan_revision, "operator removed a pin");
        Ok(Response::new(pb::UnpinResponse { plan_revision }))
    }

    type WatchPlansStream = Events;

    async fn watch_plans(
        &self,
        req: Request<pb::WatchPlansRequest>,
    ) -> Result<Response<Self::WatchPlansStream>, Status> {
        let mut wanted = req.into_inner().services;
        for s in &wanted {
            self.known(s)?;
        }
        if wanted.is_empty() {
            wanted = self.service_names();
        }
        // Subscribe before reading the current plans so no change falls between the two.
        let mut events = self.shared.plans.events();
        let mut stop = self.shared.shutdown.clone();
        let shared = self.shared.clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let current = |s: &String| {
                let v = shared.plans.view(s);
                pb::PlanEvent {
                    service: s.clone(),
                    plan: v.plan.as_ref().map(pb::ServicePlan::from),
                    plan_revision: v.revision,
                    source: v.source,
                    unix_ms: crate::plans::unix_ms(),
                }
            };
            for s in &wanted {
                if tx.send(Ok(current(s))).await.is_err() {
                    return;
                }
            }
            loop {
                let ev = tokio::select! {
                    ev = events.recv() => ev,
                    () = super::shared::stopped(&mut stop) => return,
                };
                let out = match ev {
                    Ok(c) if wanted.contains(&c.service) => vec![event(c)],
                    Ok(_) => continue,
                    // Too slow to keep up: resend the state of every watched service instead.
                    Err(RecvError::Lagged(_)) => wanted.iter().map(current).collect(),
                    Err(RecvError::Closed) => return,
                };
                for e in out {
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_scale_decisions(
        &self,
        req: Request<pb::ListScaleDecisionsRequest>,
    ) -> Result<Response<pb::ListScaleDecisionsResponse>, Status> {
        let r = req.into_inner();
        let kept = self.shared.decisions.lock();
        let mut decisions: Vec<_> = kept
            .iter()
            .filter(|d| r.service.is_empty() || d.record.service == r.service)
            .map(|d| d.record.clone())
            .collect();
        if r.limit > 0 && decisions.len() > r.limit as usize {
            decisions.drain(..decisions.len() - r.limit as usize);
        }
        Ok(Response::new(pb::ListScaleDecisionsResponse { decisions }))
    }
}
