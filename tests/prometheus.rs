//! A real Prometheus (Debian's `prometheus`, installed by `.ci/run`) scrapes a proxy and a
//! control plane with the shipped rules (`deploy/prometheus/loadshift.rules.yml`): `promtool check
//! metrics` passes on both `/metrics` pages, `promtool check rules` and `check config` on the
//! shipped files, every rule evaluates without error, and a service-wide p95 computed by
//! `histogram_quantile` over the proxy's latency histogram lands in the bucket of the upstream's
//! real latency, as does the recording rule.
// Test set-up: a failed step should fail the test on the spot.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::Write,
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use http_body_util::BodyExt;

/// Kills a background process when the test ends, however it ends.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn get(url: &str) -> (u16, String) {
    let c = h1_client();
    match c.get(url.parse().unwrap()).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(_) => (0, String::new()),
    }
}

/// `promtool check <what> <args>` with `stdin` piped in; returns its output when it fails.
fn promtool(args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// One instant query; the first sample's value, if any.
async fn query(prom: SocketAddr, q: &str) -> Option<f64> {
    let url = format!("http://{prom}/api/v1/query?query={}", percent_encode(q));
    let (status, body) = get(&url).await;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .filter(|x: &f64| x.is_finite())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn wait_for_value(prom: SocketAddr, q: &str, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = query(prom, q).await {
            return v;
        }
        assert!(Instant::now() < deadline, "no value for {q} in {within:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_both_and_computes_a_service_wide_p95() {
    if !installed("prometheus") || !installed("promtool") {
        eprintln!(
            "skipped: prometheus / promtool not installed (.ci/run installs Debian's prometheus)"
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = root.join("deploy/prometheus/loadshift.rules.yml");
    promtool(&["check", "rules", rules.to_str().unwrap()], None).unwrap();
    promtool(
        &[
            "check",
            "config",
            root.join("deploy/prometheus/prometheus.yml")
                .to_str()
                .unwrap(),
        ],
        None,
    )
    .unwrap();

    // A proxy in front of an upstream that answers in 38 ms: calls land in the (0.03, 0.05]
    // bucket unless the machine stalls them.
    let up = Upstream::start("slow").await;
    up.set(Behaviour::Delay(Duration::from_millis(38)));
    let proxy = start_proxy(&standalone_yaml(&[&up], ""));

    // A control plane, the real binary, with its metrics listener.
    let dir = temp_dir("prometheus");
    std::fs::write(dir.join("token"), "prometheus-test-token\n").unwrap();
    let control_metrics = free_port();
    std::fs::write(
        dir.join("control.yaml"),
        format!(
            "listen: {}\noperator_listen: {}\nmetrics_listen: {control_metrics}\ntoken_file: {}\nservices:\n  web:\n    planner: even\n    endpoints:\n      - {{ addr: \"{}\", host: h0, zone: z0, container: slow }}\n",
            free_port(),
            free_port(),
            dir.join("token").display(),
            up.addr
        ),
    )
    .unwrap();
    let _control = Background(
        Command::new(bin())
            .args(["control", "--config"])
            .arg(dir.join("control.yaml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Both pages pass promtool's lint.
    let deadline = Instant::now() + Duration::from_secs(10);
    let control_page = loop {
        let (status, body) = get(&format!("http://{control_metrics}/metrics")).await;
        if status == 200 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "control plane /metrics never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let c = h1_client();
    for _ in 0..5 {
        assert_eq!(send(&c, proxy.outbound, "web", &[], b"").await.status, 200);
    }
    let (_, proxy_page) = get(&format!("http://{}/metrics", proxy.admin)).await;
    assert!(
        proxy_page.contains("loadshift_proxy_response_latency_seconds_bucket"),
        "{proxy_page}"
    );
    promtool(&["check", "metrics"], Some(&proxy_page))
        .unwrap_or_else(|e| panic!("proxy /metrics: {e}\n{proxy_page}"));
    promtool(&["check", "metrics"], Some(&control_page))
        .unwrap_or_else(|e| panic!("control /metrics: {e}\n{control_page}"));

    // Prometheus with the shipped rules, scraping both every second.
    let prom = free_port();
    std::fs::copy(&rules, dir.join("loadshift.rules.yml")).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: [loadshift.rules.yml]\nscrape_configs:\n  - job_name: loadshift-proxy\n    static_configs: [{{ targets: [\"{}\"] }}]\n  - job_name: loadshift-control\n    static_configs: [{{ targets: [\"{control_metrics}\"] }}]\n",
            proxy.admin
        ),
    )
    .unwrap();
    let _prometheus = Background(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Traffic for about 6 s, 8 calls at a time.
    let until = Instant::now() + Duration::from_secs(6);
    let mut took = Vec::new();
    while Instant::now() < until {
        let batch: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                let addr = proxy.outbound;
                tokio::spawn(async move {
                    let t = Instant::now();
                    let status = send(&c, addr, "web", &[], b"").await.status;
                    (status, t.elapsed().as_secs_f64())
                })
            })
            .collect();
        for h in batch {
            let (status, secs) = h.await.unwrap();
            assert_eq!(status, 200);
            took.push(secs);
        }
    }
    assert!(took.len() > 100, "{} calls", took.len());
    // The p95 the client measured, and the histogram buckets around it: the proxy's own span is
    // a little shorter than the client's, so Prometheus' interpolated p95 may sit one bucket
    // lower, never higher.
    took.sort_by(f64::total_cmp);
    let client_p95 = took[took.len() * 95 / 100];
    let bounds = loadshift_proxy::metrics::LATENCY_BUCKETS;
    let i = bounds.partition_point(|&b| b < client_p95);
    let (lo, hi) = (
        bounds[i.saturating_sub(2)],
        bounds.get(i).copied().unwrap_or(f64::INFINITY),
    );

    let wait = Duration::from_secs(30);
    let up_control = wait_for_value(prom, "up{job=\"loadshift-control\"}", wait).await;
    assert_eq!(up_control, 1.0);
    let p95 = wait_for_value(
        prom,
        "histogram_quantile(0.95, sum by (service, le) (rate(loadshift_proxy_response_latency_seconds_bucket{service=\"web\"}[30s])))",
        wait,
    )
    .await;
    assert!(
        (lo..=hi).contains(&p95),
        "p95 {p95} s outside [{lo}, {hi}] (client-measured p95 {client_p95} s)"
    );
    let recorded = wait_for_value(
        prom,
        "service:loadshift_proxy_response_latency_seconds:p95_1m{service=\"web\"}",
        wait,
    )
    .await;
    assert!(
        (lo..=hi).contains(&recorded),
        "recording rule p95 {recorded} s outside [{lo}, {hi}]"
    );
    eprintln!(
        "client-measured p95 {client_p95:.4} s; Prometheus histogram_quantile {p95:.4} s; recording rule {recorded:.4} s"
    );
    let loops = wait_for_value(prom, "sum(loadshift_control_loop_seconds_count)", wait).await;
    assert!(loops >= 1.0, "control loop histogram count {loops}");

    // Every shipped rule evaluates without error against real series.
    let deadline = Instant::now() + wait;
    loop {
        let (_, body) = get(&format!("http://{prom}/api/v1/rules")).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let rules: Vec<&serde_json::Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let bad: Vec<String> = rules
            .iter()
            .filter(|r| r["health"] != "ok")
            .map(|r| format!("{} {} {}", r["name"], r["health"], r["lastError"]))
            .collect();
        if rules.len() >= 12 && bad.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} rules loaded, unhealthy: {bad:?}",
            rules.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
