//! The example configs and plan shipped in `examples/` are valid, and the plan example applies to
//! the standalone example's endpoints.

use std::collections::HashMap;

use loadshift_proxy::{config::ProxyConfig, plan_file};

fn example(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

#[test]
fn every_mode_example_validates() {
    for name in ["standalone.yaml", "sidecar.yaml"] {
        ProxyConfig::load(&example(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn plan_example_applies_to_standalone_example() {
    let cfg = ProxyConfig::load(&example("standalone.yaml")).unwrap();
    let plan = plan_file::parse(&std::fs::read_to_string(example("plan.yaml")).unwrap()).unwrap();
    let known: HashMap<_, _> = cfg
        .services
        .iter()
        .map(|s| (s.name.clone(), s.endpoint_list()))
        .collect();
    plan.validate(&known).unwrap();
    assert_eq!(plan.version, 7);
}

#[test]
fn check_flag_validates_without_binding() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadshift"))
        .args(["proxy", "--check", "--config"])
        .arg(example("sidecar.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
