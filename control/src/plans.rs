//! The plan book: for every service, the plan its planner made (service-wide and per caller) and
//! an operator pin that wins over both until it is removed. Every change bumps a revision that
//! wakes the proxy streams (they diff what they sent against what is now in force) and is
//! published as a [`PlanChange`] for `WatchPlans`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use loadshift_core::plan::ServicePlan;
use parking_lot::RwLock;
use tokio::sync::{broadcast, watch};

use loadshift_policy::{PlanUpdate, ProxyId};

/// One change of a service's service-wide plan in force.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanChange {
    pub service: String,
    /// `None`: the service has no plan any more (the data plane balances on its own).
    pub plan: Option<ServicePlan>,
    pub revision: u64,
    /// `planner:<name>` or `pin`.
    pub source: String,
    pub unix_ms: i64,
}

/// What is in force for one service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceView {
    pub plan: Option<ServicePlan>,
    pub revision: u64,
    pub pinned: bool,
    pub source: String,
}

/// Plans are shared (`Arc`) between the book and every stream that sent them, so thousands of
/// proxies on the same plan hold one copy.
#[derive(Debug, Default)]
struct Entry {
    planned: Option<Arc<ServicePlan>>,
    per_proxy: HashMap<ProxyId, Arc<ServicePlan>>,
    planner: String,
    pin: Option<Arc<ServicePlan>>,
    revision: u64,
}

/// Keeps the existing `Arc` when the plan did not change, so sharing survives identical
/// replans; a changed plan is stamped with the revision of this change.
fn share(old: Option<&Arc<ServicePlan>>, mut new: ServicePlan, revision: u64) -> Arc<ServicePlan> {
    match old {
        Some(o) if o.same_as(&new) => o.clone(),
        _ => {
            new.revision = revision;
            Arc::new(new)
        }
    }
}

/// Whether two optional plans differ in what they mean.
fn differs(a: Option<&ServicePlan>, b: Option<&ServicePlan>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => !a.same_as(b),
        (None, None) => false,
        _ => true,
    }
}

impl Entry {
    fn in_force(&self) -> Option<&ServicePlan> {
        self.pin.as_deref().or(self.planned.as_deref())
    }

    fn source(&self) -> String {
        if self.pin.is_some() {
            "pin".into()
        } else {
            format!("planner:{}", self.planner)
        }
    }
}

#[derive(Debug, Default)]
struct Book {
    services: BTreeMap<String, Entry>,
    revision: u64,
}

/// Shared between the planner loop, the operator API and every proxy stream.
#[derive(Debug)]
pub struct PlanBook {
    book: RwLock<Book>,
    revision: watch::Sender<u64>,
    events: broadcast::Sender<PlanChange>,
}

impl Default for PlanBook {
    fn default() -> Self {
        Self::new()
    }
}

impl PlanBook {
    pub fn new() -> Self {
        Self {
            book: RwLock::default(),
            revision: watch::Sender::new(0),
            events: broadcast::channel(1024).0,
        }
    }

    /// Wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// Changes from now on.
    pub fn events(&self) -> broadcast::Receiver<PlanChange> {
        self.events.subscribe()
    }

    /// Applies a planner's output the way every host does ([`PlanUpdate::touched`]): each service
    /// it speaks for gets exactly its plans in the update, the others keep theirs.
    pub fn apply(&self, planner: &str, update: &PlanUpdate) {
        for service in update.touched() {
            self.set_service(service, planner, update);
        }
    }

    /// Stores a planner's plans for `service` if the update speaks for it.
    pub fn set_planned(&self, service: &str, planner: &str, update: PlanUpdate) {
        if update.touched().contains(service) {
            self.set_service(service, planner, &update);
        }
    }

    fn set_service(&self, service: &str, planner: &str, update: &PlanUpdate) {
        let plans = update.for_service(service);
        let planned = plans.wide.cloned();
        let per_proxy: HashMap<ProxyId, ServicePlan> = plans
            .per_proxy
            .into_iter()
            .map(|(p, sp)| (p.to_string(), sp.clone()))
            .collect();
        self.change(service, |e, revision| {
            let changed = differs(e.planned.as_deref(), planned.as_ref())
                || e.per_proxy.len() != per_proxy.len()
                || per_proxy
                    .iter()
                    .any(|(p, sp)| differs(e.per_proxy.get(p).map(|x| &**x), Some(sp)))
                || e.planner != planner;
            e.planned = planned.map(|p| share(e.planned.as_ref(), p, revision));
            e.per_proxy = per_proxy
                .into_iter()
                .map(|(p, sp)| {
                    let shared = share(e.per_proxy.get(&p), sp, revision);
                    (p, shared)
                })
                .collect();
            e.planner = planner.to_string();
            changed
        });
    }

    /// Operator override; returns the service's revision after the pin.
    pub fn pin(&self, service: &str, plan: ServicePlan) -> u64 {
        self.change(service, |e, revision| {
            let changed = differs(e.pin.as_deref(), Some(&plan));
            e.pin = Some(share(e.pin.as_ref(), plan, revision));
            changed
        })
    }

    /// Removes a pin; `None` when the service was not pinned.
    pub fn unpin(&self, service: &str) -> Option<u64> {
        let pinned = self
            .book
            .read()
            .services
            .get(service)
            .is_some_and(|e| e.pin.is_some());
        // The planner's plans come back into force now: they carry this revision.
        let restamp = |p: &mut Arc<ServicePlan>, revision: u64| {
            let mut plan = (**p).clone();
            plan.revision = revision;
            *p = Arc::new(plan);
        };
        pinned.then(|| {
            self.change(service, |e, revision| {
                if let Some(p) = e.planned.as_mut() {
                    restamp(p, revision);
                }
                for p in e.per_proxy.values_mut() {
                    restamp(p, revision);
                }
                e.pin.take().is_some()
            })
        })
    }

    /// `f` changes the entry, stamping changed plans with the revision it is given, and says
    /// whether anything changed.
    fn change(&self, service: &str, f: impl FnOnce(&mut Entry, u64) -> bool) -> u64 {
        let mut book = self.book.write();
        let next = book.revision + 1;
        let e = book.services.entry(service.to_string()).or_default();
        let before = e.in_force().cloned();
        if !f(e, next) {
            return e.revision;
        }
        e.revision = next;
        let event = differs(e.in_force(), before.as_ref()).then(|| PlanChange {
            service: service.to_string(),
            plan: e.in_force().cloned(),
            revision: next,
            source: e.source(),
            unix_ms: unix_ms(),
        });
        book.revision = next;
        drop(book);
        if let Some(ev) = event {
            // No watcher is fine.
            let _ = self.events.send(ev);
        }
        self.revision.send_replace(next);
        next
    }

    /// The plans one proxy should run for the services it calls: pin, else its own per-proxy
    /// plan, else the service-wide plan.
    pub fn for_proxy(
        &self,
        proxy: &str,
        services: &[String],
    ) -> BTreeMap<String, Arc<ServicePlan>> {
        let book = self.book.read();
        services
            .iter()
            .filter_map(|s| {
                let e = book.services.get(s)?;
                let p = e
                    .pin
                    .as_ref()
                    .or(e.per_proxy.get(proxy))
                    .or(e.planned.as_ref())?;
                Some((s.clone(), p.clone()))
            })
            .collect()
    }

    /// What is in force for a service.
    pub fn view(&self, service: &str) -> ServiceView {
        let book = self.book.read();
        book.services
            .get(service)
            .map(|e| ServiceView {
                plan: e.in_force().cloned(),
                revision: e.revision,
                pinned: e.pin.is_some(),
                source: e.source(),
            })
            .unwrap_or_default()
    }
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(w: f64) -> ServicePlan {
        ServicePlan {
            endpoint_weights: [("127.0.0.1:1".into(), w)].into(),
            ..Default::default()
        }
    }

    #[test]
    fn pin_wins_until_unpinned_and_per_proxy_beats_service_wide() {
        let book = PlanBook::new();
        let mut events = book.events();
        let up = PlanUpdate {
            services: [("a".into(), sp(1.0))].into(),
            per_proxy: [("p2".into(), [("a".into(), sp(2.0))].into())].into(),
        };
        book.set_planned("a", "even", up.clone());
        let names = vec!["a".to_string(), "zz".to_string()];
        let first = book.view("a").revision;
        let stamped = |w: f64, revision: u64| ServicePlan { revision, ..sp(w) };
        assert_eq!(*book.for_proxy("p1", &names)["a"], stamped(1.0, first));
        assert_eq!(*book.for_proxy("p2", &names)["a"], stamped(2.0, first));
        assert_eq!(events.try_recv().unwrap().source, "planner:even");

        let r = book.pin("a", sp(9.0));
        assert!(r > first);
        assert_eq!(*book.for_proxy("p2", &names)["a"], stamped(9.0, r));
        assert_eq!(
            book.view("a"),
            ServiceView {
                plan: Some(stamped(9.0, r)),
                revision: r,
                pinned: true,
                source: "pin".into()
            }
        );
        assert_eq!(events.try_recv().unwrap().plan, Some(stamped(9.0, r)));

        // The planner keeps planning underneath; nothing visible changes.
        let rev = *book.subscribe().borrow();
        book.set_planned("a", "even", up.clone());
        assert_eq!(
            *book.subscribe().borrow(),
            rev,
            "an identical plan is not a change"
        );

        let back = book.unpin("a").unwrap();
        assert!(book.unpin("a").is_none());
        // The planner's plan is back in force, under the revision of the unpin.
        assert_eq!(*book.for_proxy("p1", &names)["a"], stamped(1.0, back));
        assert_eq!(events.try_recv().unwrap().plan, Some(stamped(1.0, back)));
        assert_eq!(book.view("a").revision, back);
    }
}
