//! `loadshift bench control`: plan propagation, CPU per report and memory of the control plane
//! with N proxy streams (default N = 100, 1000, 5000), each calling 10 services of 3 endpoints.
//!
//! The control plane runs as its own process (`loadshift control`, so its CPU and RSS are its
//! own); the proxies are lightweight in-process streams speaking the real protocol (Hello,
//! a report every second with 30 endpoint windows, ACK for every plan), multiplexed over one
//! HTTP/2 connection per 50 streams. Each round pins a new plan for one service and measures,
//! per stream, the time from the `PinPlan` call to the moment the stream sends its ACK.
//! Bars (issue): propagation to 1000 proxies p99 < 500 ms, RSS < 200 MB at 5000 proxies.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use loadshift_proto::v1::{
    self as pb, control_message, operator_client::OperatorClient,
    proxy_control_client::ProxyControlClient, proxy_message,
};
use tokio::sync::{Notify, mpsc};
use tonic::{
    codegen::tokio_stream::wrappers::ReceiverStream,
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};

/// Arguments of `loadshift bench control`.
#[derive(clap::Args, Debug)]
pub struct ControlBenchArgs {
    /// Proxy counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    pub sizes: Vec<usize>,
    /// Pin rounds per size.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Report interval of every stream, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub report_ms: u64,
    /// Seconds of steady reporting over which CPU per report is measured.
    #[arg(long, default_value_t = 5)]
    pub cpu_window_s: u64,
}

const SERVICES: usize = 10;
const ENDPOINTS: usize = 3;
const STREAMS_PER_CONN: usize = 50;
const TOKEN: &str = "bench-control-token";

/// Shared between the streams and the driver.
struct Probe {
    /// Weight of the probe endpoint in the current round's pin (bits of an f64); 0 = none.
    expect: AtomicU64,
    t0: Mutex<Instant>,
    samples: Mutex<Vec<f64>>,
    acked: AtomicUsize,
    ready: AtomicUsize,
    reports: AtomicU64,
    notify: Notify,
}

pub fn run(args: &ControlBenchArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "{:>6} {:>10} {:>9} {:>9} {:>9} {:>8} {:>12} {:>10} {:>8}",
        "N",
        "connect_s",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "missing",
        "cpu_us/rep",
        "cpu_core%",
        "rss_MB"
    );
    for &n in &args.sizes {
        let r = rt.block_on(one_size(n, args))?;
        println!(
            "{:>6} {:>10.2} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>12.1} {:>10.1} {:>8.1}",
            n,
            r.connect_s,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.missing,
            r.cpu_us_per_report,
            r.cpu_core_pct,
            r.rss_mb
        );
    }
    Ok(())
}

struct SizeResult {
    connect_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    missing: usize,
    cpu_us_per_report: f64,
    cpu_core_pct: f64,
    rss_mb: f64,
}

/// The control plane child; killed on drop.
struct ControlProcess {
    child: Child,
    proxy: SocketAddr,
    operator: SocketAddr,
    dir: PathBuf,
}

impl Drop for ControlProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_control() -> Result<ControlProcess> {
    let dir = std::env::temp_dir().join(format!("loadshift-bench-control-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let token = dir.join("token");
    std::fs::write(&token, TOKEN)?;
    let mut yaml = format!(
        "listen: 127.0.0.1:0\noperator_listen: 127.0.0.1:0\ntoken_file: {}\nservices:\n",
        token.display()
    );
    for s in 0..SERVICES {
        yaml.push_str(&format!("  svc-{s}:\n    planner: even\n    endpoints:\n"));
        for e in 0..ENDPOINTS {
            yaml.push_str(&format!(
                "      - {{ addr: 10.0.{s}.{e}:8080, host: node-{e}, zone: z1, container: svc-{s}-{e} }}\n"
            ));
        }
    }
    let cfg = dir.join("control.yaml");
    std::fs::write(&cfg, yaml)?;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["control", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting loadshift control")?;
    let stdout = child.stdout.take().context("control stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let field = |k: &str| -> Result<SocketAddr> {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .context("control did not print its addresses")?
            .parse()
            .context("address")
    };
    let (proxy, operator) = (field("proxy_api=")?, field("operator_api=")?);
    Ok(ControlProcess {
        child,
        proxy,
        operator,
        dir,
    })
}

/// utime + stime of a process, seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(") ").context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("VmRSS")?
        .parse()?;
    Ok(kib / 1024.0)
}

async fn channel(addr: SocketAddr) -> Result<Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?,
    )
}

fn bearer() -> Result<MetadataValue<Ascii>> {
    Ok(format!("Bearer {TOKEN}").parse()?)
}

async fn one_size(n: usize, args: &ControlBenchArgs) -> Result<SizeResult> {
    let control = start_control()?;
    let pid = control.child.id();
    let probe = Arc::new(Probe {
        expect: AtomicU64::new(0),
        t0: Mutex::new(Instant::now()),
        samples: Mutex::new(Vec::new()),
        acked: AtomicUsize::new(0),
        ready: AtomicUsize::new(0),
        reports: AtomicU64::new(0),
        notify: Notify::new(),
    });
    let report = Arc::new(report_template());
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut ch = None;
    for i in 0..n {
        if i % STREAMS_PER_CONN == 0 {
            ch = Some(channel(control.proxy).await?);
        }
        let Some(c) = ch.clone() else {
            bail!("no channel")
        };
        tasks.push(tokio::spawn(stream(
            c,
            i,
            probe.clone(),
            report.clone(),
            Duration::from_millis(args.report_ms),
        )));
    }
    wait_until(&probe, Duration::from_secs(120), || {
        probe.ready.load(Ordering::Relaxed) >= n
    })
    .await;
    let ready = probe.ready.load(Ordering::Relaxed);
    if ready < n {
        bail!("only {ready} of {n} streams got their first plan within 120 s");
    }
    let connect_s = started.elapsed().as_secs_f64();

    // Steady reporting: CPU per report.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, rep0, t0) = (
        cpu_seconds(pid)?,
        probe.reports.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(args.cpu_window_s)).await;
    let (cpu1, rep1, dt) = (
        cpu_seconds(pid)?,
        probe.reports.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64(),
    );
    let reports = (rep1 - rep0).max(1) as f64;
    let cpu_us_per_report = (cpu1 - cpu0) * 1e6 / reports;
    let cpu_core_pct = (cpu1 - cpu0) / dt * 100.0;
    let rss = rss_mb(pid)?;

    // Propagation rounds.
    let mut op = OperatorClient::with_interceptor(channel(control.operator).await?, {
        let b = bearer()?;
        move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", b.clone());
            Ok(r)
        }
    });
    let mut missing = 0;
    for round in 1..=args.rounds {
        let w = round as f64 + 1.0;
        probe.acked.store(0, Ordering::Relaxed);
        probe.expect.store(w.to_bits(), Ordering::Relaxed);
        *probe.t0.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Instant::now();
        let plan = pb::ServicePlan {
            endpoint_weights: [
                ("10.0.0.0:8080".to_string(), w),
                ("10.0.0.1:8080".to_string(), 1.0),
            ]
            .into(),
            ..Default::default()
        };
        op.pin_plan(pb::PinPlanRequest {
            service: "svc-0".into(),
            plan: Some(plan),
        })
        .await?;
        wait_until(&probe, Duration::from_secs(30), || {
            probe.acked.load(Ordering::Relaxed) >= n
        })
        .await;
        missing += n - probe.acked.load(Ordering::Relaxed).min(n);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for t in tasks {
        t.abort();
    }
    let mut s = probe
        .samples
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    s.sort_by(f64::total_cmp);
    let q = |p: f64| {
        s.get(((s.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(SizeResult {
        connect_s,
        p50_ms: q(0.50),
        p99_ms: q(0.99),
        max_ms: s.last().copied().unwrap_or(f64::NAN),
        missing,
        cpu_us_per_report,
        cpu_core_pct,
        rss_mb: rss,
    })
}

async fn wait_until(probe: &Probe, limit: Duration, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        let wait = probe.notify.notified();
        if tokio::time::timeout_at(deadline, wait).await.is_err() {
            return;
        }
    }
}

/// One report as every stream sends it: 10 services x 3 endpoints.
fn report_template() -> pb::Report {
    let window = pb::Window {
        count: 100,
        errors: 1,
        mean_ms: 5.0,
        p50_ms: 4.0,
        p95_ms: 9.0,
        p99_ms: 12.0,
        window_s: 10.0,
    };
    let mut endpoints = Vec::new();
    for s in 0..SERVICES {
        for e in 0..ENDPOINTS {
            endpoints.push(pb::EndpointReport {
                service: format!("svc-{s}"),
                endpoint: Some(pb::Endpoint {
                    addr: format!("10.0.{s}.{e}:8080"),
                    host: format!("node-{e}"),
                    zone: "z1".into(),
                    container: format!("svc-{s}-{e}"),
                }),
                window: Some(window),
                in_flight: 2,
                ewma_ms: 5.0,
            });
        }
    }
    pb::Report {
        endpoints,
        host: Some(pb::HostPressure {
            cpu_util: 0.3,
            ..Default::default()
        }),
        offered: (0..SERVICES)
            .map(|s| pb::OfferedCount {
                service: format!("svc-{s}"),
                count: 100,
                window_s: 10.0,
            })
            .collect(),
        ..Default::default()
    }
}

async fn stream(
    ch: Channel,
    i: usize,
    probe: Arc<Probe>,
    report: Arc<pb::Report>,
    every: Duration,
) {
    if let Err(e) = stream_inner(ch, i, &probe, &report, every).await {
        eprintln!("stream {i}: {e}");
    }
}

async fn stream_inner(
    ch: Channel,
    i: usize,
    probe: &Probe,
    report: &pb::Report,
    every: Duration,
) -> Result<()> {
    let b = bearer()?;
    let mut client = ProxyControlClient::with_interceptor(ch, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", b.clone());
        Ok(r)
    });
    let (tx, rx) = mpsc::channel(16);
    let hello = pb::Hello {
        pod: format!("pod-{i}"),
        container: format!("caller-{i}"),
        host: format!("node-{}", i % 50),
        zone: "z1".into(),
        inbound_service: String::new(),
        outbound_services: (0..SERVICES).map(|s| format!("svc-{s}")).collect(),
        proxy_version: "bench".into(),
    };
    tx.send(pb::ProxyMessage {
        msg: Some(proxy_message::Msg::Hello(hello)),
    })
    .await?;
    let mut inbound = client.connect(ReceiverStream::new(rx)).await?.into_inner();
    // Spread the reports over the interval as a real fleet would.
    let phase = every.mul_f64((i % 1000) as f64 / 1000.0);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
    let mut first = true;
    let mut seq = 0;
    loop {
        tokio::select! {
            msg = inbound.message() => {
                let Some(msg) = msg? else { return Ok(()) };
                let Some(control_message::Msg::Plan(u)) = msg.msg else { continue };
                let expect = f64::from_bits(probe.expect.load(Ordering::Relaxed));
                let hit = u.services.get("svc-0").and_then(|p| p.endpoint_weights.get("10.0.0.0:8080")) == Some(&expect);
                tx.send(pb::ProxyMessage { msg: Some(proxy_message::Msg::Ack(pb::Ack { version: u.version, nonce: u.nonce })) }).await?;
                if hit {
                    let t0 = *probe.t0.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    probe.samples.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(t0.elapsed().as_secs_f64() * 1000.0);
                    probe.acked.fetch_add(1, Ordering::Relaxed);
                    probe.notify.notify_waiters();
                }
                if first {
                    first = false;
                    probe.ready.fetch_add(1, Ordering::Relaxed);
                    probe.notify.notify_waiters();
                }
            }
            _ = ticker.tick() => {
                seq += 1;
                let mut r = report.clone();
                r.seq = seq;
                tx.send(pb::ProxyMessage { msg: Some(proxy_message::Msg::Report(r)) }).await?;
                probe.reports.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
