//! Parsing and validation: every error names the field path, the value and the reason; every
//! shipped scenario loads.

use std::path::Path;

use super::*;

const BASE: &str = "
name: t
duration_s: 60
hosts: [{name: h1}, {name: h2}]
services:
  - name: a
    service_time: {dist: exponential, mean_ms: 5}
    replicas: {h1: 1, h2: 1}
    calls: [{service: b}]
  - name: b
    service_time: {dist: constant, mean_ms: 2}
    replicas: {h1: 1}
flows:
  - {name: f, entry: a, arrival: {process: poisson, rate: 10}, sla: {latency_ms: 50}}
";

fn err(yaml: &str) -> String {
    Scenario::parse(yaml, None).unwrap_err().to_string()
}

#[test]
fn base_parses_with_defaults() {
    let s = Scenario::parse(BASE, None).unwrap();
    assert_eq!(s.seed, 1);
    assert_eq!(s.services[0].concurrency, 1);
    assert!(!s.services[1].optional);
    let optional = Scenario::parse(
        &BASE.replace("mean_ms: 2}\n", "mean_ms: 2}\n    optional: true\n"),
        None,
    )
    .unwrap();
    assert!(optional.services[1].optional);
    assert_eq!(s.flows[0].sla.percentile, 95.0);
    assert_eq!(s.zone_names(), vec!["default"]);
    assert_eq!(s.planner_for("a"), "p2c-ewma");
    assert_eq!(s.container_count(), 3);
}

#[test]
fn errors_name_path_value_and_reason() {
    let cases = [
        (
            BASE.replace("calls: [{service: b}]", "calls: [{service: ratings}]"),
            "services[0].calls[0].service: \"ratings\" is not a declared service",
        ),
        (
            BASE.replace("replicas: {h1: 1}", "replicas: {h9: 1}"),
            "services[1].replicas.h9: \"h9\" is not a declared host",
        ),
        (
            BASE.replace("mean_ms: 2", "mean_ms: -2"),
            "services[1].service_time.mean_ms: -2.0 must be a finite number > 0",
        ),
        (
            BASE.replace("duration_s: 60", "duration_s: 60\nwarmup_s: 90"),
            "warmup_s: 90.0 must be >= 0 and below duration_s",
        ),
        (
            BASE.replace("entry: a", "entry: zz"),
            "flows[0].entry: \"zz\" is not a declared service",
        ),
        (BASE.replace("rate: 10", "rate: -1"), "flows[0].arrival:"),
        (
            BASE.replace(
                "replicas: {h1: 1}\n",
                "replicas: {h1: 1}\n    calls: [{service: a}]\n",
            ),
            "closes a cycle in the call graph (a -> b -> a)",
        ),
        (
            BASE.replace(
                "hosts: [{name: h1}, {name: h2}]",
                "hosts: [{name: h1, interference: {cpu: 1.5}}, {name: h2}]",
            ),
            "hosts[0].interference.cpu",
        ),
        (
            BASE.replace(
                "name: t\n",
                "name: t\npolicy: {services: {q: {planner: even}}}\n",
            ),
            "policy.services.q: \"q\" is not a declared service",
        ),
        (
            BASE.replace(
                "    calls: [{service: b}]\n",
                "    calls: [{service: b}]\n    optional: true\n",
            ),
            "services[0].optional: true is refused for an entry service (flow \"f\" enters here)",
        ),
    ];
    for (yaml, want) in cases {
        let e = err(&yaml);
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    }
}

#[test]
fn unknown_fields_and_bad_types_are_refused_with_their_path() {
    let e = err(&BASE.replace("concurrency", "x").replace(
        "replicas: {h1: 1, h2: 1}",
        "replicas: {h1: 1, h2: 1}\n    colour: red",
    ));
    assert!(e.contains("services[0]") && e.contains("colour"), "{e}");
    let e = err(&BASE.replace("process: poisson", "process: poison"));
    assert!(
        e.contains("flows[0].arrival") && e.contains("poison"),
        "{e}"
    );
}

#[test]
fn traces_load_relative_to_the_file() {
    let dir = std::env::temp_dir().join(format!("loadshift-scn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("t.csv"), "t_s,rate\n0,5\n30,20\n").unwrap();
    std::fs::write(
        dir.join("s.yaml"),
        BASE.replace("process: poisson, rate: 10", "process: trace, file: t.csv"),
    )
    .unwrap();
    let s = Scenario::load(&dir.join("s.yaml")).unwrap();
    assert_eq!(s.flows[0].arrival.peak_rate(), 20.0);
    std::fs::write(dir.join("t.csv"), "0,5\nnope\n").unwrap();
    let e = Scenario::load(&dir.join("s.yaml")).unwrap_err().to_string();
    assert!(
        e.contains("flows[0].arrival.trace.file") && e.contains("line 2"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_shipped_scenario_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            let s = Scenario::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            names.push(s.name.clone());
            if s.name == "large" {
                assert!(
                    s.services.len() >= 300 && s.hosts.len() >= 50,
                    "{} {}",
                    s.services.len(),
                    s.hosts.len()
                );
                assert!(s.container_count() >= 5000, "{}", s.container_count());
            }
        }
    }
    names.sort();
    assert_eq!(
        names,
        [
            "equal",
            "flash-crowd",
            "hotel",
            "hotel-diurnal",
            "imbalance",
            "imbalance-cold",
            "large",
            "mesh-two-services",
            "mesh-two-services-sin",
            "moving-interference",
            "multicloud",
            "skew",
            "zone-link"
        ]
    );
}

#[test]
fn placement_defaults_to_round_robin_and_refuses_other_names() {
    assert_eq!(
        Scenario::parse(BASE, None).unwrap().placement,
        Placement::RoundRobin
    );
    let s = Scenario::parse(&format!("{BASE}placement: most-free-cores\n"), None).unwrap();
    assert_eq!(s.placement, Placement::MostFreeCores);
    let e = err(&format!("{BASE}placement: random\n"));
    assert!(
        e.contains("placement") && e.contains("random") && e.contains("most-free-cores"),
        "{e}"
    );
}

#[test]
fn sla_scale_multiplies_every_flows_sla_only() {
    let mut s = Scenario::parse(
        &BASE.replace(
            "    calls: [{service: b}]",
            "    calls: [{service: b}]\n    objective: {latency_ms: 20}",
        ),
        None,
    )
    .unwrap();
    s.scale_sla(0.5);
    assert_eq!(s.flows[0].sla.latency_ms, 25.0);
    assert_eq!(s.services[0].objective.as_ref().unwrap().latency_ms, 20.0);
}

/// `hotel-diurnal` is `hotel` with diurnal arrivals: the same graph, hosts and policy, each
/// flow a sinusoid around `hotel`'s rate, half of it in amplitude, one period over the run.
#[test]
fn hotel_diurnal_is_hotel_with_sinusoidal_flows() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let hotel = Scenario::load(&dir.join("hotel.yaml")).unwrap();
    let diurnal = Scenario::load(&dir.join("hotel-diurnal.yaml")).unwrap();
    assert_eq!(diurnal.services, hotel.services);
    assert_eq!(diurnal.hosts, hotel.hosts);
    assert_eq!(diurnal.policy, hotel.policy);
    assert_eq!(diurnal.flows.len(), hotel.flows.len());
    assert!(diurnal.duration_s >= 600.0);
    for (d, h) in diurnal.flows.iter().zip(&hotel.flows) {
        assert_eq!((&d.name, &d.entry, &d.sla), (&h.name, &h.entry, &h.sla));
        let Arrival::Poisson { rate } = h.arrival else {
            panic!("hotel's {} is no longer Poisson", h.name)
        };
        let Arrival::Sinusoid { a, b, period_s, .. } = d.arrival else {
            panic!("{}: {:?}", d.name, d.arrival)
        };
        assert_eq!((a, b, period_s), (rate, rate / 2.0, diurnal.duration_s));
        // One whole period: the mean over the run is hotel's rate.
        let mean = d.arrival.mean_rate(diurnal.duration_s);
        assert!((mean - rate).abs() < 0.01 * rate, "{}: {mean}", d.name);
    }
}

/// `imbalance-cold` is `imbalance` from a cold start: the same hosts, interference, flows and
/// planner, every service as in `imbalance` but for its containers, a quarter of them in all
/// (at least one per service, each on hosts `imbalance` uses), and a longer run.
#[test]
fn imbalance_cold_is_imbalance_from_a_quarter_of_its_containers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let warm = Scenario::load(&dir.join("imbalance.yaml")).unwrap();
    let cold = Scenario::load(&dir.join("imbalance-cold.yaml")).unwrap();
    assert_eq!(cold.hosts, warm.hosts);
    assert_eq!(cold.flows, warm.flows);
    assert_eq!(cold.interference, warm.interference);
    assert_eq!(cold.policy.planner, warm.policy.planner);
    assert_eq!(
        (cold.warmup_s, cold.report_interval_s, cold.duration_s),
        (warm.warmup_s, warm.report_interval_s, 600.0)
    );
    assert_eq!(cold.services.len(), warm.services.len());
    for (c, w) in cold.services.iter().zip(&warm.services) {
        let n: u32 = c.replicas.values().sum();
        assert!(n >= 1 && n < w.replicas.values().sum(), "{}", c.name);
        assert!(
            c.replicas.keys().all(|h| w.replicas.contains_key(h)),
            "{}",
            c.name
        );
        let mut c = c.clone();
        c.replicas = w.replicas.clone();
        assert_eq!(&c, w);
    }
    assert_eq!(4 * cold.container_count(), warm.container_count());
}

proptest::proptest! {
    #[test]
    fn parser_never_panics_on_garbage(text in ".{0,400}") {
        let _ = Scenario::parse(&text, None);
    }

    #[test]
    fn parser_never_panics_on_mutated_scenarios(pos in 0usize..600, junk in "[-0-9a-z:{}\\[\\], .\n]{0,12}") {
        let mut text = BASE.to_string();
        let at = text.char_indices().map(|(i, _)| i).nth(pos % BASE.len()).unwrap_or(0);
        text.insert_str(at, &junk);
        let _ = Scenario::parse(&text, None);
    }
}
