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
    for name in ["standalone.yaml", "sidecar.yaml", "standalone-tls.yaml"] {
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

/// Runs the `loadshift` binary in `dir`; panics with its error output unless it succeeds.
fn run_in(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadshift"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("loadshift runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_tls_examples_check_with_certificates_from_loadshift_identity() {
    let dir = std::env::temp_dir().join(format!("loadshift-examples-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The commands at the top of standalone-tls.yaml, then its --check (which reads the files).
    let tls = std::fs::read_to_string(example("standalone-tls.yaml")).unwrap();
    let commands: Vec<_> = tls
        .lines()
        .filter_map(|l| l.strip_prefix("#   loadshift "))
        .collect();
    assert_eq!(commands.len(), 3, "{tls}");
    for c in commands {
        run_in(&dir, &c.split_whitespace().collect::<Vec<_>>());
    }
    std::fs::write(dir.join("standalone-tls.yaml"), &tls).unwrap();
    run_in(
        &dir,
        &["proxy", "--check", "--config", "standalone-tls.yaml"],
    );
    // The sidecar example with its mesh_tls section uncommented.
    run_in(
        &dir,
        &[
            "identity",
            "issue",
            "--ca",
            "certs/ca",
            "--name",
            "frontend",
            "--out",
            "id/frontend",
        ],
    );
    let sidecar = std::fs::read_to_string(example("sidecar.yaml")).unwrap();
    let start = sidecar
        .find("# mesh_tls:")
        .expect("a commented mesh_tls section");
    let uncommented: String = sidecar[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let mesh = format!("{}{uncommented}\n", &sidecar[..start]);
    let cfg = loadshift_proxy::config::ProxyConfig::parse(&mesh).unwrap();
    assert!(cfg.mesh_tls.is_some());
    std::fs::write(dir.join("sidecar.yaml"), &mesh).unwrap();
    run_in(&dir, &["proxy", "--check", "--config", "sidecar.yaml"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
