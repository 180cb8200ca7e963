//! `imbres-shift` and `imbres-shift-pure`: Imbres Algorithm 1 (seed 002 §4.1.1) per service over
//! hosts, run by the control plane. The algorithm itself is [`loadshift_core::shift`]; this module
//! feeds it and turns host shares into plans.
//!
//! `l_j` is the mean, over the service's containers on host `j` that served requests in the window,
//! of each container's mean latency as measured by its own inbound sidecar (the paper's container
//! latency); a container whose inbound sidecar has not reported falls back to the merged outbound
//! view of its callers. Samples behind `l_j` are the summed request counts (hosts below
//! `min_samples` hold).
//!
//! - `imbres-shift` (the product's shifting planner): host shares as `host_weights` with
//!   `weighted_p2c = true`: the proxy draws two candidates by weight and keeps the one with the lower
//!   Peak-EWMA cost, so the data plane still steers around a stall inside the planned shares. Its
//!   latencies are what the **caller** pays (below). With `planner_settings.inner_pick: hot-cold`
//!   the two candidates are settled by Prequal's hot-cold rule over the endpoints' reported load
//!   instead (`algorithm: prequal` with the weights; measured against the default in
//!   `docs/balancing.md`).
//! - `imbres-shift-pure` (the paper's variant): host shares as weights only, from container
//!   latency only.
//!
//! **Caller-side cost** (`imbres-shift` only). Alg. 1 compares container latencies, which hold no
//! network time: when the link between two zones slows, the paper's rule keeps sending a zone's
//! calls across it to a host whose container is faster. `imbres-shift` therefore runs Alg. 1 once
//! per caller zone `z` of a service whose hosts span more than one zone, on
//!
//! ```text
//! c_j(z) = l_j + n(z, zone_j) - min_k n(z, zone_k)
//! n(z, Z) = count-weighted mean over containers c in zone Z of (outbound_z(c) - inbound(c))
//! ```
//!
//! `outbound_z(c)` is the mean latency of calls from zone `z`'s callers to `c` (their sidecars'
//! outbound windows), `inbound(c)` the container's own (its inbound sidecar), so the difference is
//! the network and proxy time between the zones. `n` is estimated over every service of the
//! snapshot (a link is shared by all of them), from pairs with at least [`MIN_NETWORK_SAMPLES`]
//! calls, and kept from the last estimate otherwise: when shifting has moved a zone's calls off a
//! slow link, its cost is still known. Subtracting the zone's cheapest `n` leaves `c_j = l_j` when
//! every host is as near as the nearest (one zone: exactly today's rule, same step sizes). Each
//! caller proxy in zone `z` gets `z`'s shares as its own plan (per-proxy `host_weights`); callers of
//! unknown zone, and services on one zone, get the service-wide container-latency shares. The floor
//! keeps a remote host's probe share; recovery of a remote container is also seen by the callers
//! of its own zone, through its inbound latency.
//!
//! A new plan goes out only when some host's share moved by at least `deadband` (default 0.05;
//! the paper's variant 0) from the shares last published: a balanced, healthy service whose
//! measured latencies wander otherwise got a new plan, pushed to every caller, every round. On
//! `imbalance`, `hotel` and `multicloud` (3 seeds each) 0.05 cut the simulated plan pushes from
//! 610 / 427 / 405 to 55 / 63 / 54 at a p95 within 0.8 % (102.1 against 101.3 ms, 28.7 against
//! 28.5, 132.2 against 132.3); 0.1 cut them to about 30 but cost 2.7 % of p95 on `imbalance`.
//!
//! Both step once per call, every `interval_ms` (paper: 5 s). `imbres-shift` takes
//! [`ShiftParams::default`] (`eta` 0.5: the paper's 0.2 needed ~11 iterations to settle in the
//! simulator, see [`loadshift_core::shift`]); `imbres-shift-pure` takes [`ShiftParams::paper`].

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use loadshift_core::{
    plan::{Algorithm, ServicePlan},
    shift::{HostSample, ShiftParams, Shifter},
};
use serde::{Deserialize, Serialize};

use crate::{ContainerState, PlanUpdate, Planner, ProxyId, ServiceState, Snapshot};

/// The container latency Alg. 1 uses: inbound when reported with traffic, else outbound.
pub(crate) fn container_latency(c: &ContainerState) -> (f64, u64) {
    match c.inbound {
        Some(w) if w.count > 0 => (w.mean_ms, w.count),
        _ => (c.outbound.mean_ms, c.outbound.count),
    }
}

/// Per host of `svc`: `l_j` (mean of container latencies), samples, and `S_j`.
pub(crate) fn host_samples(svc: &ServiceState) -> BTreeMap<String, HostSample> {
    // (sum of container means, containers with traffic, samples, containers)
    let mut acc: BTreeMap<&str, (f64, u32, u64, u32)> = BTreeMap::new();
    for c in &svc.containers {
        let (mean, n) = container_latency(c);
        let e = acc.entry(c.endpoint.host.as_str()).or_default();
        e.3 += 1;
        if n > 0 && mean.is_finite() {
            e.0 += mean;
            e.1 += 1;
            e.2 += n;
        }
    }
    acc.into_iter()
        .map(|(host, (sum, with_traffic, samples, containers))| {
            let latency_ms = if with_traffic == 0 {
                f64::NAN
            } else {
                sum / f64::from(with_traffic)
            };
            (
                host.to_string(),
                HostSample {
                    latency_ms,
                    samples,
                    containers,
                },
            )
        })
        .collect()
}

/// Alg. 1 state for every service a planner owns; shared by the shifting and connection planners.
#[derive(Clone, Debug)]
pub(crate) struct Shifters {
    params: ShiftParams,
    by_service: BTreeMap<String, Shifter>,
}

impl Shifters {
    pub(crate) fn new(params: ShiftParams) -> Self {
        Self {
            params,
            by_service: BTreeMap::new(),
        }
    }

    pub(crate) fn params(&self) -> &ShiftParams {
        &self.params
    }

    /// One step for every service with containers; forgets services that are gone.
    pub(crate) fn step_all(&mut self, snap: &Snapshot) {
        self.by_service.retain(|name, _| {
            snap.services
                .get(name)
                .is_some_and(|s| !s.containers.is_empty())
        });
        for (name, svc) in &snap.services {
            if svc.containers.is_empty() {
                continue;
            }
            let params = self.params;
            let sh = self
                .by_service
                .entry(name.clone())
                .or_insert_with(|| Shifter::new(params));
            sh.step(&host_samples(svc));
        }
    }

    pub(crate) fn get(&self, service: &str) -> Option<&Shifter> {
        self.by_service.get(service)
    }
}

/// Calls from a zone to a zone behind an estimate of the network time between them.
pub const MIN_NETWORK_SAMPLES: u64 = 20;

/// `n(z, Z)`: network and proxy time from callers in zone `z` to containers in zone `Z`,
/// milliseconds, estimated from the snapshot's windows and kept across rounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkCosts {
    by_pair: BTreeMap<(String, String), f64>,
}

impl NetworkCosts {
    /// Folds in one snapshot: every pair with enough calls gets its new estimate.
    pub fn update(&mut self, snap: &Snapshot) {
        let mut acc: BTreeMap<(&str, &str), (f64, u64)> = BTreeMap::new();
        for svc in snap.services.values() {
            for c in &svc.containers {
                let Some(inb) = c.inbound.filter(|w| w.count > 0 && w.mean_ms.is_finite()) else {
                    continue;
                };
                for (z, ob) in &c.outbound_by_zone {
                    if ob.count == 0 || !ob.mean_ms.is_finite() {
                        continue;
                    }
                    let e = acc.entry((z, &c.endpoint.zone)).or_default();
                    e.0 += (ob.mean_ms - inb.mean_ms).max(0.0) * ob.count as f64;
                    e.1 += ob.count;
                }
            }
        }
        for ((z, to), (sum, n)) in acc {
            if n >= MIN_NETWORK_SAMPLES {
                self.by_pair
                    .insert((z.to_string(), to.to_string()), sum / n as f64);
            }
        }
    }

    /// The estimate for `from -> to`, if there has been one.
    pub fn get(&self, from: &str, to: &str) -> Option<f64> {
        self.by_pair
            .get(&(from.to_string(), to.to_string()))
            .copied()
    }
}

/// Per caller zone of `svc`: the hosts' samples with the caller-side cost `c_j(z)` as latency.
/// Empty when the service's hosts are all in one zone (the container rule is the caller's then).
pub(crate) fn caller_samples(
    svc: &ServiceState,
    zones: &BTreeSet<String>,
    net: &NetworkCosts,
) -> BTreeMap<String, BTreeMap<String, HostSample>> {
    let mut host_zone: BTreeMap<&str, &str> = BTreeMap::new();
    for c in &svc.containers {
        host_zone.insert(&c.endpoint.host, &c.endpoint.zone);
    }
    let host_zones: BTreeSet<&str> = host_zone.values().copied().collect();
    if host_zones.len() < 2 {
        return BTreeMap::new();
    }
    let base = host_samples(svc);
    zones
        .iter()
        .map(|z| {
            // Unknown pairs count as no extra network time until measured: the proportional
            // start sends every zone some calls everywhere, which measures them.
            let n = |to: &str| net.get(z, to).unwrap_or(0.0);
            let nearest = host_zones
                .iter()
                .map(|to| n(to))
                .fold(f64::INFINITY, f64::min);
            let samples = base
                .iter()
                .map(|(h, s)| {
                    let to = host_zone.get(h.as_str()).copied().unwrap_or("");
                    let extra = n(to) - nearest;
                    (
                        h.clone(),
                        HostSample {
                            latency_ms: s.latency_ms + extra,
                            ..*s
                        },
                    )
                })
                .collect();
            (z.clone(), samples)
        })
        .collect()
}

/// How `imbres-shift`'s callers pick inside the host shares (`planner_settings.inner_pick`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InnerPick {
    /// Weighted P2C over Peak-EWMA: two candidates drawn by weight, the lower cost wins. The
    /// default.
    #[default]
    P2cEwma,
    /// Two candidates drawn by weight, settled by Prequal's hot-cold rule over the endpoints'
    /// server-reported requests in flight and latency (`algorithm: prequal` with weights).
    HotCold,
}

impl InnerPick {
    /// The plan fields that say it (weights come on top).
    fn plan(self) -> ServicePlan {
        match self {
            Self::P2cEwma => ServicePlan {
                weighted_p2c: true,
                ..Default::default()
            },
            Self::HotCold => ServicePlan {
                algorithm: Algorithm::Prequal,
                ..Default::default()
            },
        }
    }
}

/// The `imbres-shift` / `imbres-shift-pure` planner.
#[derive(Clone, Debug)]
pub struct ImbresShift {
    name: &'static str,
    /// Every published plan's fields besides the weights: how callers pick inside the shares.
    inside: ServicePlan,
    shifters: Shifters,
    /// Per service: the shares last published (the deadband's reference).
    published: BTreeMap<String, BTreeMap<String, f64>>,
    /// Caller-side cost: `None` for the paper's variant.
    callers: Option<CallerSide>,
}

/// The caller-side state of `imbres-shift`.
#[derive(Clone, Debug, Default)]
struct CallerSide {
    net: NetworkCosts,
    /// (service, caller zone) -> Alg. 1 state on `c_j(z)`.
    shifters: BTreeMap<(String, String), Shifter>,
    /// (service, caller zone) -> shares last published.
    published: BTreeMap<(String, String), BTreeMap<String, f64>>,
}

/// Whether `now` differs from `published` enough to publish: a host added or gone, or a share
/// moved by at least `deadband`.
fn moved_past(
    published: &BTreeMap<String, f64>,
    now: &BTreeMap<String, f64>,
    deadband: f64,
) -> bool {
    published.len() != now.len()
        || now
            .iter()
            .any(|(h, v)| published.get(h).is_none_or(|p| (v - p).abs() >= deadband))
}

impl ImbresShift {
    /// `imbres-shift`: Alg. 1 shares with weighted P2C inside them.
    pub fn new(params: ShiftParams) -> Self {
        Self {
            name: "imbres-shift",
            inside: InnerPick::default().plan(),
            shifters: Shifters::new(params),
            published: BTreeMap::new(),
            callers: Some(CallerSide::default()),
        }
    }

    /// `imbres-shift-pure`: Alg. 1 shares as weights only, as in the paper.
    pub fn pure(params: ShiftParams) -> Self {
        Self {
            name: "imbres-shift-pure",
            inside: ServicePlan::default(),
            shifters: Shifters::new(params),
            published: BTreeMap::new(),
            callers: None,
        }
    }

    /// `imbres-shift` with its callers picking inside the shares by `pick`.
    pub fn inner_pick(self, pick: InnerPick) -> Self {
        Self {
            inside: pick.plan(),
            ..self
        }
    }

    /// Current host shares of a service (`D_j`), for reports and tests.
    pub fn shares(&self, service: &str) -> Option<&BTreeMap<String, f64>> {
        self.shifters.get(service).map(Shifter::shares)
    }

    /// Current host shares of a service for callers in `zone` (caller-side cost), if it has them.
    pub fn zone_shares(&self, service: &str, zone: &str) -> Option<&BTreeMap<String, f64>> {
        self.callers
            .as_ref()?
            .shifters
            .get(&(service.to_string(), zone.to_string()))
            .map(Shifter::shares)
    }
}

impl Planner for ImbresShift {
    fn name(&self) -> &str {
        self.name
    }

    fn interval(&self) -> Duration {
        self.shifters.params().interval()
    }

    fn plan(&mut self, snap: &Snapshot) -> PlanUpdate {
        self.shifters.step_all(snap);
        let deadband = self.shifters.params().deadband;
        let services = snap
            .services
            .keys()
            .filter_map(|name| {
                let shares = self.shifters.get(name)?.shares();
                if shares.is_empty() {
                    return None;
                }
                // Within the deadband the plan in force stays: the same plan, nothing pushed.
                let published = match self.published.get(name) {
                    Some(p) if !moved_past(p, shares, deadband) => p.clone(),
                    _ => {
                        self.published.insert(name.clone(), shares.clone());
                        shares.clone()
                    }
                };
                let plan = ServicePlan {
                    host_weights: published,
                    ..self.inside.clone()
                };
                Some((name.clone(), plan))
            })
            .collect();
        let per_proxy = match self.callers.as_mut() {
            Some(cs) => cs.plan(snap, *self.shifters.params(), &self.inside),
            None => BTreeMap::new(),
        };
        PlanUpdate {
            services,
            per_proxy,
        }
    }
}

impl CallerSide {
    /// One step per (service, caller zone); per-proxy plans for the callers of services whose
    /// hosts span zones.
    fn plan(
        &mut self,
        snap: &Snapshot,
        params: ShiftParams,
        inside: &ServicePlan,
    ) -> BTreeMap<ProxyId, BTreeMap<String, ServicePlan>> {
        self.net.update(snap);
        // Recovery's anchor is the proportional share, which a zone's callers should not return
        // to across a costly link: the caller side steps by Alg. 1's line 9 only.
        let caller_params = ShiftParams {
            recovery: 0.0,
            ..params
        };
        let mut live = BTreeSet::new();
        let mut out: BTreeMap<ProxyId, BTreeMap<String, ServicePlan>> = BTreeMap::new();
        for (name, svc) in &snap.services {
            let zone_of = |caller: &ProxyId| snap.proxies.get(caller).map(|p| p.zone.clone());
            let zones: BTreeSet<String> = svc.callers.iter().filter_map(zone_of).collect();
            for (zone, samples) in caller_samples(svc, &zones, &self.net) {
                let key = (name.clone(), zone.clone());
                let sh = self
                    .shifters
                    .entry(key.clone())
                    .or_insert_with(|| Shifter::new(caller_params));
                sh.step(&samples);
                let shares = sh.shares();
                if shares.is_empty() {
                    continue;
                }
                let published = match self.published.get(&key) {
                    Some(p) if !moved_past(p, shares, params.deadband) => p.clone(),
                    _ => {
                        self.published.insert(key.clone(), shares.clone());
                        shares.clone()
                    }
                };
                let plan = ServicePlan {
                    host_weights: published,
                    ..inside.clone()
                };
                for caller in &svc.callers {
                    if zone_of(caller).as_deref() == Some(zone.as_str()) {
                        out.entry(caller.clone())
                            .or_default()
                            .insert(name.clone(), plan.clone());
                    }
                }
                live.insert(key);
            }
        }
        self.shifters.retain(|k, _| live.contains(k));
        self.published.retain(|k, _| live.contains(k));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{container, snapshot};
    use loadshift_core::telemetry::WindowSnapshot;

    #[test]
    fn l_j_is_the_mean_of_container_latencies_with_outbound_fallback() {
        let mut slow_out = container(3, "h2", 0.0, 0);
        slow_out.inbound = None;
        slow_out.outbound = WindowSnapshot {
            count: 50,
            mean_ms: 40.0,
            ..Default::default()
        };
        let svc = ServiceState {
            name: "s".into(),
            containers: vec![
                container(1, "h1", 10.0, 30),
                container(2, "h1", 20.0, 10),
                slow_out,
            ],
            ..Default::default()
        };
        let h = host_samples(&svc);
        assert_eq!(
            h["h1"],
            HostSample {
                latency_ms: 15.0,
                samples: 40,
                containers: 2
            }
        );
        assert_eq!(
            h["h2"],
            HostSample {
                latency_ms: 40.0,
                samples: 50,
                containers: 1
            }
        );
    }

    #[test]
    fn shifts_weight_off_the_slow_host_with_the_right_flags() {
        let svc = ServiceState {
            name: "s".into(),
            containers: vec![
                container(1, "fast", 10.0, 100),
                container(2, "slow", 30.0, 100),
            ],
            ..Default::default()
        };
        let snap = snapshot(vec![svc]);
        let mut p = ImbresShift::new(ShiftParams::paper());
        let first = p.plan(&snap);
        assert_eq!(first.services["s"].host_weights["slow"], 0.5);
        assert!(first.services["s"].weighted_p2c);
        let second = p.plan(&snap);
        // l_mean = 20, dl = 0.5: 0.5 * 0.9 and 0.5 * 1.1, sum 1.
        let w = &second.services["s"].host_weights;
        assert!(
            (w["slow"] - 0.45).abs() < 1e-12 && (w["fast"] - 0.55).abs() < 1e-12,
            "{w:?}"
        );

        let mut pure = ImbresShift::pure(ShiftParams::paper());
        pure.plan(&snap);
        let up = pure.plan(&snap);
        assert!(!up.services["s"].weighted_p2c);
        assert_eq!(up.services["s"].algorithm, Algorithm::Weighted);

        // The hot-cold inner pick: the same shares, Prequal's rule between the two candidates.
        let mut hc = ImbresShift::new(ShiftParams::paper()).inner_pick(InnerPick::HotCold);
        hc.plan(&snap);
        let up = hc.plan(&snap);
        assert_eq!(&up.services["s"].host_weights, w);
        assert_eq!(up.services["s"].algorithm, Algorithm::Prequal);
        assert!(!up.services["s"].weighted_p2c);
        assert_eq!(pure.name(), "imbres-shift-pure");
        assert_eq!(pure.interval(), Duration::from_secs(5));
        assert_eq!(pure.shares("s"), Some(w));
    }

    /// Two zones: host `a` (zone z1) is noisy (20 ms against 10), host `b` sits in z2 behind a
    /// link that costs z1's callers 40 ms. The container rule moves z1's calls to `b`; the
    /// caller-side cost keeps them on `a`, while z2's callers still leave `a`.
    #[test]
    fn caller_side_cost_moves_load_off_a_slow_link() {
        let win = |mean_ms: f64| WindowSnapshot {
            count: 100,
            mean_ms,
            ..Default::default()
        };
        let mut a = container(1, "a", 20.0, 100);
        a.endpoint.zone = "z1".into();
        a.outbound_by_zone = [("z1".into(), win(20.5)), ("z2".into(), win(60.5))].into();
        let mut b = container(2, "b", 10.0, 100);
        b.endpoint.zone = "z2".into();
        b.outbound_by_zone = [("z1".into(), win(50.5)), ("z2".into(), win(10.5))].into();
        let svc = ServiceState {
            name: "s".into(),
            containers: vec![a, b],
            callers: vec!["p1".into(), "p2".into(), "p3".into()],
            ..Default::default()
        };
        let mut snap = snapshot(vec![svc]);
        let info = |zone: &str| crate::ProxyInfo {
            zone: zone.into(),
            ..Default::default()
        };
        // p3's zone is unknown: it keeps the service-wide plan.
        snap.proxies =
            std::sync::Arc::new([("p1".into(), info("z1")), ("p2".into(), info("z2"))].into());

        let mut p = ImbresShift::new(ShiftParams::default());
        let mut up = p.plan(&snap);
        for _ in 0..5 {
            up = p.plan(&snap);
        }
        let z1 = &up.per_proxy["p1"]["s"].host_weights;
        let z2 = &up.per_proxy["p2"]["s"].host_weights;
        assert!(z1["a"] > 0.8, "z1's callers stay near: {z1:?}");
        assert!(
            z2["b"] > 0.8,
            "z2's callers stay near and off the noisy host: {z2:?}"
        );
        assert!(up.per_proxy["p1"]["s"].weighted_p2c);
        assert!(!up.per_proxy.contains_key("p3"));
        // The service-wide plan (container latency only) leaves the noisy host.
        assert!(
            up.services["s"].host_weights["b"] > 0.7,
            "{:?}",
            up.services["s"]
        );
        // Published within the deadband of the raw shares.
        let raw = p.zone_shares("s", "z1").unwrap();
        assert!(
            raw.iter().all(|(h, v)| (v - z1[h]).abs() < 0.05),
            "{raw:?} {z1:?}"
        );
        let net = &p.callers.as_ref().unwrap().net;
        assert_eq!(net.get("z1", "z2"), Some(40.5));
        assert_eq!(net.get("z1", "z1"), Some(0.5));

        // The paper's variant has no caller side.
        let mut pure = ImbresShift::pure(ShiftParams::paper());
        assert!(pure.plan(&snap).per_proxy.is_empty());

        // One zone: no per-caller plans; the container rule is the caller's.
        let one_zone = snapshot(vec![ServiceState {
            name: "s".into(),
            containers: vec![container(1, "a", 20.0, 100), container(2, "b", 10.0, 100)],
            callers: vec!["p1".into()],
            ..Default::default()
        }]);
        assert!(p.plan(&one_zone).per_proxy.is_empty());
    }

    /// A balanced, healthy service whose measured latencies wander by a few per cent: once the
    /// first shares are out, no round changes the plan (nothing is pushed); a real imbalance
    /// still moves it.
    #[test]
    fn a_balanced_service_gets_no_new_plan_inside_the_deadband() {
        let at = |a: f64, b: f64| {
            snapshot(vec![ServiceState {
                name: "s".into(),
                containers: vec![container(1, "h1", a, 100), container(2, "h2", b, 100)],
                ..Default::default()
            }])
        };
        let mut p = ImbresShift::new(ShiftParams::default());
        let first = p.plan(&at(10.0, 10.0)).services["s"].clone();
        // +-4 % noise, alternating which host reads slower.
        let (mut changed, mut raw_moved) = (0, false);
        for k in 0..40 {
            let (a, b) = if k % 2 == 0 { (10.4, 9.6) } else { (9.6, 10.4) };
            if p.plan(&at(a, b)).services["s"] != first {
                changed += 1;
            }
            raw_moved |= p.shares("s") != Some(&first.host_weights);
        }
        assert_eq!(changed, 0, "{:?}", p.shares("s"));
        // The raw shares did move; only the published plan held.
        assert!(raw_moved);
        // Without a deadband (the paper's variant) every round publishes what Alg. 1 says.
        let mut pure = ImbresShift::pure(ShiftParams::paper());
        pure.plan(&at(10.0, 10.0));
        let one = pure.plan(&at(10.4, 9.6)).services["s"].clone();
        let two = pure.plan(&at(9.6, 10.4)).services["s"].clone();
        assert_ne!(one, two);
        // A host three times slower moves the plan past the deadband.
        let moved = p.plan(&at(30.0, 10.0)).services["s"].clone();
        assert!(
            moved.host_weights["h1"] < first.host_weights["h1"] - 0.05,
            "{moved:?}"
        );
    }
}
