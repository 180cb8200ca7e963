//! A `loadshift lab` run in the background, its files, and the scale decisions a test sends to
//! its receiver the way the control plane's webhook actuator does.
// Test support: a failed step fails the test on the spot.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};

use super::{bin, h1_client};

/// A running `loadshift lab`; SIGTERM on drop, so a failing test still leaves no process.
pub struct Lab {
    child: Option<Child>,
    /// The report directory.
    pub out: PathBuf,
    /// `OUT/run/<planner>`: every process's config and log.
    pub run: PathBuf,
    stderr: PathBuf,
}

impl Lab {
    /// Writes `scenario` into `dir` and starts `loadshift lab` on it with `--planner planner`
    /// and `args`.
    pub fn start(dir: &Path, scenario: &str, planner: &str, args: &[&str]) -> Self {
        let file = dir.join("scenario.yaml");
        std::fs::write(&file, scenario).unwrap();
        let out = dir.join("out");
        let stderr = dir.join("lab.stderr");
        let child = Command::new(bin())
            .arg("lab")
            .arg(&file)
            .arg("--out")
            .arg(&out)
            .args(["--planner", planner])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self {
            child: Some(child),
            run: out.join("run").join(planner),
            out,
            stderr,
        }
    }

    /// A YAML file of the run (`control.yaml`, `endpoints.yaml`, `sidecar-NAME.yaml`, ...).
    pub fn yaml(&self, name: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.run.join(name)).unwrap();
        serde_yaml_ng::from_str(&text).unwrap()
    }

    /// A process's log, empty when missing.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.run.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The app address of a container, from its sidecar's config.
    pub fn app(&self, container: &str) -> SocketAddr {
        let cfg = self.yaml(&format!("sidecar-{container}.yaml"));
        cfg["inbound"]["app"].as_str().unwrap().parse().unwrap()
    }

    /// Where the load generator sends.
    pub fn gateway(&self) -> SocketAddr {
        let cfg = self.yaml("gateway.yaml");
        cfg["outbound"]["listen"].as_str().unwrap().parse().unwrap()
    }

    /// The scale receiver's URL once the lab's containers are up (at most 60 s): until then it
    /// answers 503 to any decision.
    pub async fn receiver(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let url = std::fs::read_to_string(self.run.join("control.yaml"))
                .ok()
                .and_then(|t| serde_yaml_ng::from_str::<serde_json::Value>(&t).ok())
                .and_then(|c| c["webhook"]["url"].as_str().map(str::to_string));
            if let Some(url) = url {
                // A decision for no service: 404 once the fleet answers, changing nothing.
                let probe =
                    serde_json::json!({"service": "-", "from": 1, "to": 1, "reason": "probe"});
                if let Some((404, _)) = try_decide(&url, &probe).await {
                    return url;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "the lab's receiver did not come up; stderr:\n{}",
            self.stderr()
        );
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the run to end; panics with its stderr when it failed.
    pub fn finish(mut self) {
        let status = self.child.take().unwrap().wait().unwrap();
        assert!(status.success(), "{}", self.stderr());
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// POSTs `decision` to the receiver: status and JSON body.
pub async fn decide(url: &str, decision: &serde_json::Value) -> (u16, serde_json::Value) {
    try_decide(url, decision)
        .await
        .unwrap_or_else(|| panic!("no answer from {url} to {decision}"))
}

async fn try_decide(url: &str, decision: &serde_json::Value) -> Option<(u16, serde_json::Value)> {
    let req = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(decision.to_string())))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), h1_client().request(req))
        .await
        .ok()?
        .ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, serde_json::from_slice(&body).ok()?))
}
