//! `loadshift proxy --check` validates the `plan_file` as the running proxy would: a plan it
//! would refuse fails the check with exit 64 and the reason.

// Test set-up: a failed step should fail the test on the spot.
#![allow(clippy::unwrap_used)]
mod common;

use std::process::Command;

/// Runs `proxy --check` on a standalone config whose `plan_file` holds `plan`.
fn check(tag: &str, plan: &str) -> (i32, String, String) {
    let dir = common::temp_dir(tag);
    std::fs::create_dir_all(&dir).unwrap();
    let plan_path = dir.join("plan.yaml");
    std::fs::write(&plan_path, plan).unwrap();
    let cfg = format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         plan_file: {}\nservices:\n  - name: web\n    endpoints:\n      \
         - {{ addr: \"127.0.0.1:9001\", host: node-a }}\n      \
         - {{ addr: \"127.0.0.1:9002\", host: node-b }}\n",
        plan_path.display()
    );
    let cfg_path = dir.join("proxy.yaml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let out = Command::new(common::bin())
        .args(["proxy", "--check", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn proxy_check_validates_the_plan_file() {
    let (code, out, err) = check(
        "check-good",
        "version: 7\nservices:\n  web:\n    host_weights: { node-a: 0.8, node-b: 0.2 }\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("plan file version 7"), "{out}");

    for (tag, plan, want) in [
        (
            "check-negative",
            "version: 1\nservices:\n  web:\n    host_weights: { node-a: -1, node-b: 1 }\n",
            "node-a",
        ),
        (
            "check-host",
            "version: 1\nservices:\n  web:\n    host_weights: { node-z: 1 }\n",
            "node-z",
        ),
        (
            "check-field",
            "version: 1\nservices:\n  web:\n    host_weigths: { node-a: 1 }\n",
            "host_weigths",
        ),
        ("check-yaml", "version: [\n", "plan file"),
    ] {
        let (code, _, err) = check(tag, plan);
        assert_eq!(code, 64, "{tag}: {err}");
        assert!(err.contains(want), "{tag}: {err}");
    }
}
