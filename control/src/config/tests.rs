use loadshift_policy::{
    registry,
    schedule::{Role, Schedule},
};

use super::*;

fn parse(y: &str) -> Result<ControlConfig, String> {
    let c: ControlConfig = serde_yaml_ng::from_str(y).map_err(|e| e.to_string())?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// The period of the task of `role` that owns service `a`, as the control loop runs it.
fn interval_of(c: &ControlConfig, role: Role) -> Duration {
    let mut sch = Schedule::new();
    sch.sync(
        c.assignment().tasks().unwrap(),
        Duration::ZERO,
        registry::build,
    )
    .unwrap();
    sch.owner(role, "a").unwrap().interval
}

#[test]
fn defaults_apply() {
    let c = parse("listen: 127.0.0.1:0\ntoken_file: /t\nservices:\n  a:\n    endpoints:\n      - addr: 127.0.0.1:1\n").unwrap();
    assert_eq!(interval_of(&c, Role::Planner), Duration::from_secs(5));
    assert_eq!(interval_of(&c, Role::Scaler), Duration::from_secs(60));
    assert_eq!(c.services["a"].planner, "even");
    assert_eq!(c.services["a"].scaler, "none");
    assert_eq!(c.services["a"].endpoints[0].weight, 1.0);
}

#[test]
fn errors_name_field_value_and_reason() {
    let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nservices:\n  a:\n    planner: magic\n")
        .unwrap_err();
    assert!(
        e.contains("services.a.planner") && e.contains("magic") && e.contains("unknown planner"),
        "{e}"
    );
    let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nplanner_settings: {interval_ms: 0}\n")
        .unwrap_err();
    assert!(
        e.contains("planner_settings.interval_ms = 0: must be > 0"),
        "{e}"
    );
    let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nservices:\n  a:\n    endpoints:\n      - {addr: 127.0.0.1:1, weight: -1}\n").unwrap_err();
    assert!(e.contains("services.a.endpoints[0].weight = -1"), "{e}");
    let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nbogus: 1\n").unwrap_err();
    assert!(e.contains("bogus"), "{e}");
    let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nactuator: webhook\n").unwrap_err();
    assert!(
        e.contains("webhook") && e.contains("needs a webhook section"),
        "{e}"
    );
    let e = parse(
        "listen: 127.0.0.1:0\ntoken_file: /t\nactuator: webhook\nwebhook: {url: https://h/}\n",
    )
    .unwrap_err();
    assert!(e.contains("webhook.url") && e.contains("https"), "{e}");
    let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\ndiscovery: {file: /e, poll_ms: 0}\n")
        .unwrap_err();
    assert!(e.contains("discovery.poll_ms = 0"), "{e}");
    let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nservices:\n  a:\n    scaler: hpa\n    scaler_settings: {hpa: {min_replicas: 4, max_replicas: 2}}\n").unwrap_err();
    assert!(
        e.contains("services.a.scaler_settings.hpa.max_replicas = 2"),
        "{e}"
    );
    let c = parse("listen: 127.0.0.1:0\ntoken_file: /t\nactuator: webhook\nwebhook: {url: 'http://127.0.0.1:9/scale'}\ndiscovery: {file: /e}\nservices:\n  a:\n    scaler: hpa\n    scaler_settings: {hpa: {max_replicas: 3}}\n").unwrap();
    assert_eq!(
        c.services["a"]
            .scaler_settings
            .as_ref()
            .unwrap()
            .hpa
            .max_replicas,
        3
    );
    assert_eq!(c.discovery.map(|d| d.poll_ms), Some(1000));
    // A top-level section applies to every service without its own; a service's replaces it.
    let c = parse("listen: 127.0.0.1:0\ntoken_file: /t\nscaler_settings: {hpa: {max_replicas: 7}}\nservices:\n  a:\n    scaler: hpa\n  b:\n    scaler: hpa\n    scaler_settings: {hpa: {max_replicas: 2}}\n").unwrap();
    let a = c.assignment();
    assert_eq!(a.services["a"].scaler_settings.hpa.max_replicas, 7);
    assert_eq!(a.services["b"].scaler_settings.hpa.max_replicas, 2);
    let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nscaler_settings: {hpa: {tolerance: 2}}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("scaler_settings.hpa.tolerance"), "{e}");
}

proptest::proptest! {
    /// The parser and the validator take any text without panicking.
    #[test]
    fn arbitrary_yaml_never_panics(head in "(listen|token_file|services|planner_interval_ms|operator_listen): ", body in ".{0,80}") {
        let _ = parse(&format!("{head}{body}"));
        let _ = parse(&format!("listen: 127.0.0.1:0\ntoken_file: /t\nservices:\n  a:\n    {head}{body}\n"));
    }
}

#[test]
fn example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/control.example.yaml");
    let c = ControlConfig::load(&path).unwrap();
    assert!(!c.services.is_empty());
}

#[test]
fn applications_and_settings_are_checked_with_their_field() {
    let base =
        "listen: 127.0.0.1:0\ntoken_file: /t\nservices:\n  a: {}\n  b: {planner: imbres-connect}\n";
    let c = parse(&format!(
        "{base}applications:\n  shop:\n    services: [a, b]\n    management: {{kind: mo1, bounds_ms: {{a: 100}}}}\n    flows: {{buy: {{entry: a, sla_ms: 300}}}}\n"
    ))
    .unwrap();
    let tasks = c.assignment().tasks().unwrap();
    let connect = tasks.iter().find(|t| t.name == "imbres-connect").unwrap();
    assert_eq!(connect.scope.label, "application shop");
    assert_eq!(connect.scope.sees.len(), 2);
    for (yaml, want) in [
        (
            "applications:\n  shop: {services: [a, zz]}\n",
            "applications.shop.services[1] = zz: is not a configured service",
        ),
        (
            "applications:\n  x: {services: [a]}\n  y: {services: [a]}\n",
            "applications.y.services[0] = a: is already in application x",
        ),
        (
            "applications:\n  default: {services: [a]}\n",
            "application names must be non-empty and not \"default\"",
        ),
        (
            "applications:\n  shop: {services: [a], management: {kind: mo1, bounds_ms: {b: 10}}}\n",
            "applications.shop.management.bounds_ms.b = b: is not a service here",
        ),
        (
            "applications:\n  shop: {services: [a], flows: {f: {entry: b}}}\n",
            "applications.shop.flows.f.entry = b: is not a service of the application",
        ),
        (
            "planner_settings: {shift: {eta: -1}}\n",
            "planner_settings.shift.eta = -1: must be finite and > 0",
        ),
    ] {
        let e = parse(&format!("{base}{yaml}")).unwrap_err();
        assert!(e.contains(want), "{e}\nwanted: {want}");
    }
    let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nservices:\n  a:\n    planner_settings: {table_store: {kind: redb, path: /x}}\n").unwrap_err();
    assert!(
        e.contains("services.a.planner_settings.table_store") && e.contains("top-level"),
        "{e}"
    );
    let e = parse("listen: 127.0.0.1:0\ntoken_file: /t\nactuator: kubernetes\n").unwrap_err();
    assert!(e.contains("kubernetes") && e.contains("dry-run"), "{e}");
}
