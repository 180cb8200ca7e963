//! The README's control-plane quick start, run as written: every line of its first `sh` block
//! under "## Control plane", with `loadshift` the built binary, in a scratch directory holding
//! `deploy/control.example.yaml` (so the token file it creates lands there). A line ending in `&`
//! runs in the background until the test ends; the others must exit 0.
// Test set-up: a failed step should fail the test on the spot.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    net::TcpListener,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The quick start's command lines, comments removed.
fn quick_start(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## Control plane")
        .nth(1)
        .expect("README has a Control plane section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the section opens with an sh block");
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Kills the background control plane when the test ends, however it ends.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_control_plane_quick_start_works_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lines = quick_start(&std::fs::read_to_string(root.join("README.md")).unwrap());
    assert!(lines.len() >= 4, "{lines:?}");
    // The example binds fixed ports; elsewhere in use, the quick start cannot run here.
    for port in [7070, 7071, 9091] {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            eprintln!("skipped: 127.0.0.1:{port}, which the example binds, is in use");
            return;
        }
    }
    let dir = common::temp_dir("quickstart");
    std::fs::create_dir_all(dir.join("deploy")).unwrap();
    std::fs::copy(
        root.join("deploy/control.example.yaml"),
        dir.join("deploy/control.example.yaml"),
    )
    .unwrap();
    let mut background = Vec::new();
    for line in &lines {
        let (line, bg) = match line.strip_suffix('&') {
            Some(l) => (l.trim(), true),
            None => (line.as_str(), false),
        };
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("loadshift"), "{line}");
        let mut cmd = Command::new(common::bin());
        cmd.args(words).current_dir(&dir);
        if bg {
            let child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            background.push(Background(child));
            // Until the operator API answers.
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", 7071)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "`{line}` did not start listening"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "`{line}` failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        if line.ends_with("ctl status") {
            assert!(
                stdout.contains("checkout") && stdout.contains("payments"),
                "{stdout}"
            );
        }
    }
    assert_eq!(background.len(), 1, "{lines:?}");
    drop(background);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `ctl status --json | head -c 1`: the reader goes away first; `ctl` ends with 0 and says
/// nothing.
#[test]
fn ctl_ends_quietly_on_a_closed_pipe() {
    use loadshift_control::ControlConfig;
    let dir = common::temp_dir("ctl-pipe");
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let mut yaml = String::from("listen: 127.0.0.1:0\noperator_listen: 127.0.0.1:0\n");
    yaml.push_str(&format!("token_file: {}\nservices:\n", token.display()));
    // Enough services that the JSON outgrows a pipe's buffer.
    for i in 0..400 {
        yaml.push_str(&format!(
            "  svc-{i}:\n    endpoints:\n      - {{ addr: 127.0.0.1:{}, host: h, zone: z }}\n",
            10_000 + i
        ));
    }
    let cfg_path = dir.join("control.yaml");
    std::fs::write(&cfg_path, &yaml).unwrap();
    ControlConfig::load(&cfg_path).unwrap();
    let mut control = Background(
        Command::new(common::bin())
            .args(["control", "--config"])
            .arg(&cfg_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(control.0.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let operator = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("operator_api="))
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    let script = format!(
        "{} ctl --server http://{operator} --token-file {} status --json | head -c 1; exit ${{PIPESTATUS[0]}}",
        common::bin(),
        token.display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert_eq!(&out.stdout[..], b"{");
    assert!(!stderr.contains("panicked"), "{stderr}");
    drop(control);
    std::fs::remove_dir_all(&dir).unwrap();
}
