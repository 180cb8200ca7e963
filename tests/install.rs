//! `loadshift install` / `uninstall` against the Kustomize base: install prints the objects
//! `kubectl kustomize deploy/kubernetes` renders (when kubectl is there) plus a Secret with a
//! fresh token, `--actuator` adds the actuator's RBAC, uninstall names every one of them with the
//! namespace last, and the control plane's config in the ConfigMap passes `control --check`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, process::Command};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loadshift"))
}

fn run(c: &mut Command) -> String {
    let o = c.output().expect("runs");
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn docs(yaml: &str) -> Vec<serde_yaml_ng::Value> {
    yaml.split("\n---")
        .map(|d| d.trim_start_matches("---").trim())
        .filter(|d| !d.is_empty())
        .map(|d| serde_yaml_ng::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

fn key(v: &serde_yaml_ng::Value) -> (String, String) {
    let s = |x: Option<&serde_yaml_ng::Value>| {
        x.and_then(|x| x.as_str()).unwrap_or_default().to_string()
    };
    (
        s(v.get("kind")),
        s(v.get("metadata").and_then(|m| m.get("name"))),
    )
}

#[test]
fn install_prints_the_kustomize_base_with_a_token_and_uninstall_removes_it() {
    let out = run(bin().arg("install"));
    let objects = docs(&out);
    let kinds: BTreeSet<(String, String)> = objects.iter().map(key).collect();
    for want in [
        ("Namespace", "loadshift"),
        ("ServiceAccount", "loadshift-control"),
        ("ClusterRole", "loadshift-control-read"),
        ("Deployment", "loadshift-control"),
        ("Service", "loadshift-control"),
        ("Service", "loadshift-operator"),
        ("PodDisruptionBudget", "loadshift-control"),
        ("ConfigMap", "loadshift-grafana-dashboard"),
        ("Secret", "loadshift-token"),
    ] {
        assert!(
            kinds.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} missing: {kinds:?}"
        );
    }
    assert!(!kinds.iter().any(|k| k.1 == "loadshift-control-actuate"));
    // A fresh token each time.
    let token = |o: &[serde_yaml_ng::Value]| {
        o.iter()
            .find(|v| key(v).0 == "Secret")
            .and_then(|v| v["stringData"]["token"].as_str().map(str::to_string))
            .unwrap()
    };
    let again = docs(&run(bin().arg("install")));
    assert_eq!(token(&objects).len(), 64);
    assert_ne!(token(&objects), token(&again));
    // The dashboard is valid JSON with its panels.
    let dash = objects
        .iter()
        .find(|v| key(v).1 == "loadshift-grafana-dashboard")
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(dash["data"]["loadshift.json"].as_str().unwrap()).unwrap();
    assert!(json["panels"].as_array().unwrap().len() >= 6);

    // The same objects as Kustomize renders, besides the Secret install generates.
    let kubectl = Command::new("kubectl")
        .args([
            "kustomize",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes"),
        ])
        .output();
    match kubectl {
        Ok(o) if o.status.success() => {
            let rendered: BTreeSet<(String, String)> = docs(&String::from_utf8_lossy(&o.stdout))
                .iter()
                .map(key)
                .collect();
            let mut ours = kinds.clone();
            ours.remove(&("Secret".to_string(), "loadshift-token".to_string()));
            assert_eq!(ours, rendered);
        }
        _ => eprintln!("kubectl kustomize not run: kubectl is not installed"),
    }

    let with = docs(&run(bin().args(["install", "--actuator"])));
    let with: BTreeSet<(String, String)> = with.iter().map(key).collect();
    assert!(with.contains(&("ClusterRole".into(), "loadshift-control-actuate".into())));
    assert!(with.contains(&(
        "ClusterRoleBinding".into(),
        "loadshift-control-actuate".into()
    )));

    let gone = docs(&run(bin().arg("uninstall")));
    let named: BTreeSet<(String, String)> = gone.iter().map(key).collect();
    assert_eq!(named, with);
    assert_eq!(key(gone.last().unwrap()).0, "Namespace");
    assert!(
        gone.iter()
            .all(|v| v.get("spec").is_none() && v.get("data").is_none())
    );

    // The control plane accepts the ConfigMap's config (with the token where the test has one).
    let cm = objects
        .iter()
        .find(|v| key(v) == ("ConfigMap".to_string(), "loadshift-control".to_string()))
        .unwrap();
    let dir = std::env::temp_dir().join(format!("loadshift-install-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), "t0ken\n").unwrap();
    let config = cm["data"]["control.yaml"].as_str().unwrap().replace(
        "/var/run/loadshift/token/token",
        &dir.join("token").display().to_string(),
    );
    std::fs::write(dir.join("control.yaml"), config).unwrap();
    run(bin()
        .args(["control", "--check", "--config"])
        .arg(dir.join("control.yaml")));
    let _ = std::fs::remove_dir_all(&dir);
}
