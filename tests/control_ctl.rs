//! `loadshift ctl` (the real binary) against a real control plane: status as a table and as JSON,
//! pin / unpin, objective set, decisions, watch; a wrong token fails with a clear message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_support;

use std::process::Stdio;

use control_support::*;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_drives_the_operator_api() {
    let token = token_file(TOKEN);
    let eps = [(addr(1), "b-1", 1.0), (addr(2), "b-2", 1.0)];
    let mut cfg = config(addr(0), &token, vec![("b", service("even", &eps))]);
    cfg.operator_listen = Some(addr(0));
    let control = Control::start(cfg).await;
    let server = format!("http://{}", control.addrs.operator);

    let (ok, out, err) = ctl(&server, &token, &["status"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("service b") && out.contains("planner=even"),
        "{out}"
    );
    assert!(
        out.contains("127.0.0.1:1") && out.contains("50.0%"),
        "{out}"
    );

    let (ok, out, err) = ctl(
        &server,
        &token,
        &[
            "pin",
            "b",
            "--weight",
            "127.0.0.1:2=1",
            "--block",
            "bronze=0.25",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("b: pinned"), "{out}");
    let (ok, out, _) = ctl(&server, &token, &["--json", "status", "b"]).await;
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let b = &v["services"][0];
    assert_eq!(b["pinned"], true);
    assert_eq!(b["plan"]["blocking"]["bronze"]["fraction"], 0.25);
    assert_eq!(b["endpoints"][1]["share"], 1.0);

    // watch prints the current plan first.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadshift"))
        .args(["ctl", "--server", &server, "--token-file"])
        .arg(&token)
        .args(["--json", "watch", "b"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ev: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(ev["source"], "pin");
    let (ok, _, err) = ctl(&server, &token, &["unpin", "b"]).await;
    assert!(ok, "{err}");
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ev: serde_json::Value = serde_json::from_str(&next).unwrap();
    assert_eq!(ev["source"], "planner:even");
    child.kill().await.unwrap();

    // Without --json: a header, then one line per plan with weights rounded for people.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadshift"))
        .args(["ctl", "--server", &server, "--token-file"])
        .arg(&token)
        .args(["watch", "b"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut rows = Vec::new();
    for _ in 0..2 {
        let line = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        rows.push(line);
    }
    assert!(
        rows[0].starts_with("REVISION") && rows[0].contains("PLAN"),
        "{rows:?}"
    );
    assert!(
        rows[1].contains(" b ") && rows[1].contains("planner:even"),
        "{rows:?}"
    );
    assert!(!rows[1].contains("00000"), "weights are rounded: {rows:?}");
    child.kill().await.unwrap();

    let (ok, out, err) = ctl(
        &server,
        &token,
        &[
            "objective",
            "set",
            "b",
            "--sla-ms",
            "40",
            "--planner",
            "static",
            "--mo",
            "mo3",
            "--protected",
            "b",
            "--min-rps",
            "10",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("planner=static"), "{out}");
    let (ok, out, _) = ctl(&server, &token, &["status", "b"]).await;
    assert!(ok && out.contains("objective=p95<40ms"), "{out}");

    let (ok, out, _) = ctl(&server, &token, &["decisions"]).await;
    assert!(ok && out.contains("no scale decisions"), "{out}");

    let (ok, _, err) = ctl(
        &server,
        &token,
        &["objective", "set", "b", "--planner", "magic"],
    )
    .await;
    assert!(!ok && err.contains("unknown planner"), "{err}");
    let wrong = token_file("nope");
    let (ok, _, err) = ctl(&server, &wrong, &["status"]).await;
    assert!(!ok && err.contains("does not match"), "{err}");
    control.stop().await;
}
