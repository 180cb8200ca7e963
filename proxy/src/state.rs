//! State shared by every worker: the route table behind `arc-swap`, the clock, and the
//! operations that change the table (plans, endpoint discovery). Updates are serialised by one
//! mutex; readers never take it.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::{
    admission::{Admission, AdmissionLimits},
    config::{Protocol, ProxyConfig},
    metrics,
    routes::{RouteSpec, Routes, ServiceRoute, build_service},
};
use loadshift_core::{
    endpoint::Endpoint,
    outlier::OutlierParams,
    plan::{Plan, PlanError},
    telemetry::{
        TelemetryParams, counter::CountWindow, pressure::HostPressure, usage::ContainerUsage,
    },
};

/// Monotonic clock the sans-IO modules read as "time since start". Built on tokio's `Instant`
/// so paused-clock tests drive it.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// The instant `since_start` after the start, for timers armed from a reading of [`now`].
    ///
    /// [`now`]: Clock::now
    pub fn instant(&self, since_start: Duration) -> Instant {
        self.start + since_start
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything workers, the admin server and the control client share.
pub struct Shared {
    pub config: ProxyConfig,
    pub routes: ArcSwap<Routes>,
    pub clock: Clock,
    pub telemetry: TelemetryParams,
    pub outlier: OutlierParams,
    pub host: Mutex<HostPressure>,
    /// The local app's resource use, from `inbound.cgroup`.
    pub usage: Mutex<Option<ContainerUsage>>,
    /// False once draining starts: `/ready` turns 503.
    pub ready: AtomicBool,
    /// Blocked requests per (service, class) over the telemetry window, for reports.
    pub blocked: Mutex<HashMap<(String, String), CountWindow>>,
    /// Connection caps, the overload manager and their counters.
    pub admission: Arc<Admission>,
    /// The span queue's sending side, with `otel` configured.
    pub otel: Option<crate::otel::Tracer>,
    /// Its receiving side, until the admin thread takes it to export.
    pub otel_queue: Mutex<Option<tokio::sync::mpsc::Receiver<crate::otel::Finished>>>,
    /// Serialises table rebuilds.
    update: Mutex<()>,
    /// Current endpoint lists (config, then discovery) and protocols by service.
    services: Mutex<Vec<(String, Protocol, Vec<Endpoint>)>>,
}

impl Shared {
    /// Builds the first table from config, without a plan.
    pub fn new(config: ProxyConfig, admission: AdmissionLimits) -> Arc<Self> {
        let clock = Clock::new();
        let telemetry = config.telemetry_params();
        let services: Vec<(String, Protocol, Vec<Endpoint>)> = config
            .services
            .iter()
            .map(|s| (s.name.clone(), s.protocol, s.endpoint_list()))
            .collect();
        let inbound = config.inbound.as_ref().map(|i| {
            let name = config.inbound_service().unwrap_or_default();
            let ep = Endpoint::new(
                i.app,
                config.identity.host.clone(),
                config.identity.zone.clone(),
                config.identity.container.clone(),
            );
            build_service(
                RouteSpec {
                    name: &name,
                    protocol: i.protocol,
                    endpoints: vec![ep],
                    plan: None,
                },
                None,
                &config.identity.pod,
                &telemetry,
                clock.now(),
            )
        });
        let routes = build_routes(
            &config,
            &services,
            &Plan::default(),
            None,
            inbound,
            &telemetry,
            clock.now(),
            0,
        );
        let (otel, otel_queue) = match &config.otel {
            Some(o) => {
                let (tracer, queue) = crate::otel::queue(o);
                (Some(tracer), Some(queue))
            }
            None => (None, None),
        };
        Arc::new(Self {
            otel,
            otel_queue: Mutex::new(otel_queue),
            outlier: config.outlier_params(),
            routes: ArcSwap::from_pointee(routes),
            clock,
            telemetry,
            host: Mutex::new(HostPressure::default()),
            usage: Mutex::new(None),
            ready: AtomicBool::new(true),
            blocked: Mutex::default(),
            update: Mutex::new(()),
            services: Mutex::new(services),
            admission: Arc::new(Admission::new(admission)),
            config,
        })
    }

    /// Validates a plan against the known endpoints and swaps it in. On error nothing changes.
    pub fn apply_plan(&self, plan: Plan) -> Result<(), PlanError> {
        let _g = self.update.lock();
        let old = self.routes.load_full();
        if let Err(e) = plan.validate(&old.known_endpoints()) {
            ::metrics::counter!(metrics::PLAN_UPDATES, "result" => "rejected").increment(1);
            return Err(e);
        }
        let services = self.services.lock().clone();
        let routes = build_routes(
            &self.config,
            &services,
            &plan,
            Some(&old),
            None,
            &self.telemetry,
            self.clock.now(),
            old.generation + 1,
        );
        ::metrics::gauge!(metrics::PLAN_VERSION).set(plan.version as f64);
        for (name, _, _) in &services {
            let revision = plan.services.get(name).map_or(0, |sp| sp.revision);
            ::metrics::gauge!(metrics::PLAN_REVISION, "service" => name.clone())
                .set(revision as f64);
        }
        ::metrics::counter!(metrics::PLAN_UPDATES, "result" => "applied").increment(1);
        tracing::info!(
            version = plan.version,
            services = plan.services.len(),
            "plan applied"
        );
        self.routes.store(Arc::new(routes));
        Ok(())
    }

    /// Replaces a service's endpoints (discovery). The plan in force stays; weights for endpoints
    /// that left are ignored, new endpoints get none until the next plan names them.
    pub fn set_endpoints(&self, service: &str, endpoints: Vec<Endpoint>) -> Result<(), String> {
        let _g = self.update.lock();
        {
            let mut services = self.services.lock();
            match services.iter_mut().find(|(n, _, _)| n == service) {
                Some(entry) => entry.2 = endpoints,
                None => services.push((service.to_string(), Protocol::Auto, endpoints)),
            }
        }
        let old = self.routes.load_full();
        let services = self.services.lock().clone();
        let routes = build_routes(
            &self.config,
            &services,
            &old.plan,
            Some(&old),
            None,
            &self.telemetry,
            self.clock.now(),
            old.generation + 1,
        );
        self.routes.store(Arc::new(routes));
        Ok(())
    }

    /// Counts one blocked request for reports (the rare path; metrics count it too).
    pub fn count_blocked(&self, service: &str, class: &str) {
        let now = self.clock.now();
        let p = &self.telemetry;
        self.blocked
            .lock()
            .entry((service.to_string(), class.to_string()))
            .or_insert_with(|| CountWindow::new(p.slots, p.slot_width))
            .add(now, 1);
    }

    /// Replaces one service's weights with host weights (local shifting), keeping the rest of its
    /// plan (blocking, subset size). Skips services whose plan already sets weights or a subset of
    /// its own: an operator's plan wins over local measurements.
    pub fn apply_local_weights(
        &self,
        service: &str,
        host_weights: std::collections::BTreeMap<String, f64>,
    ) -> Result<bool, PlanError> {
        let current = self.plan();
        let mut plan = (*current).clone();
        let sp = plan.services.entry(service.to_string()).or_default();
        let own =
            !sp.endpoint_weights.is_empty() || !sp.zone_weights.is_empty() || !sp.subset.is_empty();
        if own {
            return Ok(false);
        }
        sp.host_weights = host_weights;
        sp.weighted_p2c = true;
        plan.version = current.version + 1;
        self.apply_plan(plan).map(|()| true)
    }

    /// The plan in force.
    pub fn plan(&self) -> Arc<Plan> {
        self.routes.load().plan.clone()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[allow(clippy::too_many_arguments)]
fn build_routes(
    config: &ProxyConfig,
    services: &[(String, Protocol, Vec<Endpoint>)],
    plan: &Plan,
    old: Option<&Routes>,
    inbound: Option<ServiceRoute>,
    p: &TelemetryParams,
    now: Duration,
    generation: u64,
) -> Routes {
    let identity = &config.identity.pod;
    let mut by_authority = crate::FastMap::default();
    let built: Vec<ServiceRoute> = services
        .iter()
        .enumerate()
        .map(|(i, (name, protocol, eps))| {
            if let Some(sc) = config.services.iter().find(|s| &s.name == name) {
                for a in sc.authority_list() {
                    by_authority.insert(a.to_ascii_lowercase(), i);
                }
            } else {
                by_authority.insert(name.to_ascii_lowercase(), i);
            }
            let old_svc = old.and_then(|o| o.services.iter().find(|s| &s.name == name));
            let spec = RouteSpec {
                name,
                protocol: *protocol,
                endpoints: eps.clone(),
                plan: plan.services.get(name),
            };
            build_service(spec, old_svc, identity, p, now)
        })
        .collect();
    let default_service = config
        .default_service
        .as_ref()
        .and_then(|d| built.iter().position(|s| &s.name == d));
    let inbound = inbound.or_else(|| {
        old.and_then(|o| o.inbound.as_ref()).map(|i| {
            let spec = RouteSpec {
                name: &i.name,
                protocol: i.protocol,
                endpoints: i.endpoint_list(),
                plan: None,
            };
            build_service(spec, Some(i), identity, p, now)
        })
    });
    Routes {
        services: built,
        by_authority,
        default_service,
        inbound,
        plan: Arc::new(plan.clone()),
        generation,
    }
}
