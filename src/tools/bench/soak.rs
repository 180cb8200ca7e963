//! `loadshift bench soak`: the proxy under a long steady load, then under connection storms,
//! with normal clients measured throughout (issue 10's soak and storm benchmark).
//!
//! Layout as in `loadshift bench proxy`: the proxy (one worker) pinned to the proxy core; the
//! upstream nginx, the normal clients (`loadshift load`) and the attackers (`loadshift bench
//! attack`, one process per 10,000 connections so each stays under the open-file limit) on the
//! load core. Normal clients come from 127.0.0.1; each attack from its own loopback addresses.
//!
//! Phases:
//! 1. saturation (`wrk -t1 -c32`), to set the rate: 75 % of it;
//! 2. baseline: the normal clients alone, open loop at that rate over 1000 connections that
//!    are churned (closed after 100 requests each, reopened);
//! 3. soak: the same for `--duration` (default 10 min) in 30 s slices, with the proxy's RSS
//!    and open descriptors after every slice;
//! 4. storms, each beside the normal clients: idle h2c connections (default 20,000, from two
//!    addresses), a slowloris (default 5,000, one address), and the h2c storm again spread
//!    over 16 addresses so the per-source cap does not hold it back (only the listener cap
//!    and the first-request limit do); RSS and descriptors during and after each. The normal
//!    clients send `--storm-load` of the soak's rate (the attackers share their core) and get
//!    their own unattacked baseline at that rate (the quieter of two slices). Each storm runs twice: first at a decoy
//!    (a second loadshift on the load core) while the normal clients still go to the proxy
//!    under test, which measures what the attackers cost the shared core, then at the proxy.
//!
//! The bars it prints: RSS flat within 10 % after the first minute of the soak; no errors at
//! the normal clients besides configured sheds (503 with `loadshift-error: overloaded`); the
//! normal clients' p99 during each storm within 2x of the storm baseline's.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use super::attack::{AttackReport, Kind};
use super::peers;
use super::wrk;
use crate::tools::load::{ErrorClass, Summary};
use crate::tools::support::process::{Guard, free_port, rss_kib};

/// Arguments of `loadshift bench soak`.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// Soak length (steady load, 30 s slices).
    #[arg(long, default_value = "10m", value_parser = crate::tools::load::cli::parse_duration)]
    pub duration: Duration,
    /// Length of each storm.
    #[arg(long, default_value = "60s", value_parser = crate::tools::load::cli::parse_duration)]
    pub storm: Duration,
    /// Short run: 1-minute soak, 20 s storms, 2,000 / 1,000 attackers.
    #[arg(long)]
    pub quick: bool,
    /// Fraction of the measured saturation the normal clients send.
    #[arg(long, default_value_t = 0.75)]
    pub load: f64,
    /// Normal clients' connections (churned).
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Requests per normal connection before it is closed and reopened.
    #[arg(long, default_value_t = 100)]
    pub requests_per_connection: u32,
    /// Idle h2c connections of the storm.
    #[arg(long, default_value_t = 20_000)]
    pub h2c_storm: usize,
    /// Slowloris connections.
    #[arg(long, default_value_t = 5_000)]
    pub slowloris: usize,
    /// Normal clients' rate during the storms, as a fraction of the soak's.
    #[arg(long, default_value_t = 0.5)]
    pub storm_load: f64,
    /// `limits.max_connections_per_source` of the proxy under test.
    #[arg(long, default_value_t = 2_500)]
    pub per_source_cap: usize,
    /// Core the proxy is pinned to.
    #[arg(long, default_value_t = 0)]
    pub proxy_core: u32,
    /// Core of the upstream, the clients and the attackers.
    #[arg(long, default_value_t = 1)]
    pub load_core: u32,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// Attackers per child process: under the default open-file limit with room to spare.
const PER_ATTACKER: usize = 10_000;
/// Length of a soak slice.
const SLICE: Duration = Duration::from_secs(30);
/// The soak's warm-up, excluded from the RSS bar.
const WARM_UP: Duration = Duration::from_secs(60);

/// One slice of normal load and the proxy's state at its end.
#[derive(Debug, Clone, Serialize)]
pub struct Slice {
    /// Seconds since the phase started, at the slice's end.
    pub at_s: f64,
    /// What the normal clients measured (empty when they could not run).
    pub load: Summary,
    /// Why the normal clients could not run (for example no connection accepted).
    pub failure: Option<String>,
    /// Proxy RSS, KiB.
    pub rss_kib: u64,
    /// Proxy open descriptors.
    pub fds: usize,
}

/// One storm.
#[derive(Debug, Clone, Serialize)]
pub struct Storm {
    /// What it was.
    pub name: String,
    /// Normal clients while the same attack hit the decoy on the load core.
    pub control: Vec<Slice>,
    /// Normal clients during it.
    pub slices: Vec<Slice>,
    /// Each attacking process's report.
    pub attackers: Vec<AttackReport>,
    /// Proxy RSS 10 s after the attackers stopped, KiB.
    pub rss_after_kib: u64,
    /// Proxy descriptors 10 s after the attackers stopped.
    pub fds_after: usize,
    /// The proxy's `/stats` admission counters after the storm.
    pub admission: serde_json::Value,
}

/// Everything measured.
#[derive(Debug, Serialize)]
pub struct SoakResult {
    /// Closed-loop req/s.
    pub saturation_rps: f64,
    /// `--load` of the saturation.
    pub wanted_rate: f64,
    /// Normal clients' rate: the wanted one, or the most the load core drives cleanly.
    pub rate: f64,
    /// RSS after start, KiB.
    pub rss_start_kib: u64,
    /// Normal clients alone.
    pub baseline: Slice,
    /// The soak's slices.
    pub soak: Vec<Slice>,
    /// Normal clients' rate during the storms.
    pub storm_rate: f64,
    /// Normal clients alone at the storm rate (the quieter of two slices).
    pub storm_baseline: Slice,
    /// The storms.
    pub storms: Vec<Storm>,
}

/// Runs the benchmark and prints its tables.
pub fn run(args: &SoakArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("loadshift-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let result = measure(args, &dir);
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("logs and configs kept in {}", dir.display());
    }
    let result = result?;
    print(&result);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

struct Proxy {
    guard: Guard,
    addr: SocketAddr,
    admin: SocketAddr,
}

fn start_proxy(
    args: &SoakArgs,
    dir: &Path,
    upstream: SocketAddr,
    name: &str,
    core: u32,
) -> anyhow::Result<Proxy> {
    let me = std::env::current_exe().context("locate the loadshift binary")?;
    let (port, admin) = (free_port()?, free_port()?);
    let yaml = format!(
        "mode: standalone\nidentity: {{ pod: soak-0, container: soak-0, host: h0, zone: z0 }}\n\
         outbound: {{ listen: 127.0.0.1:{port} }}\nadmin: {{ listen: 127.0.0.1:{admin} }}\n\
         workers: 1\ndefault_service: web\nlimits: {{ max_connections_per_source: {} }}\n\
         services:\n  - name: web\n    endpoints:\n      - {{ addr: \"{upstream}\" }}\n",
        args.per_source_cap
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml)?;
    let p = path.display().to_string();
    let mut guard = Guard::spawn_pinned(name, core, &me, &["proxy", "--config", &p], dir)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    guard.wait_ready(addr)?;
    Ok(Proxy {
        guard,
        addr,
        admin: SocketAddr::from(([127, 0, 0, 1], admin)),
    })
}

fn measure(args: &SoakArgs, dir: &Path) -> anyhow::Result<SoakResult> {
    let me = std::env::current_exe().context("locate the loadshift binary")?;
    let (soak_len, storm_len, h2c, slowloris) = if args.quick {
        (
            Duration::from_secs(60),
            Duration::from_secs(20),
            args.h2c_storm.min(2_000),
            args.slowloris.min(1_000),
        )
    } else {
        (args.duration, args.storm, args.h2c_storm, args.slowloris)
    };
    eprintln!("starting upstream nginx on core {}", args.load_core);
    let upstream = peers::upstream(dir, args.load_core)?;
    eprintln!("starting loadshift on core {}", args.proxy_core);
    let proxy = start_proxy(args, dir, upstream.addr, "loadshift-proxy", args.proxy_core)?;
    let pid = proxy.guard.pid();
    let rss_start_kib = rss_kib(pid)?;

    wrk::run(proxy.addr, Duration::from_secs(2), 32, args.load_core)?;
    let mut sat = Vec::new();
    for _ in 0..3 {
        sat.push(wrk::run(proxy.addr, Duration::from_secs(5), 32, args.load_core)?.rps);
    }
    sat.sort_by(f64::total_cmp);
    let saturation_rps = sat[1];
    let wanted = (saturation_rps * args.load).round();
    // One core runs the upstream and the clients; it may not drive the wanted rate. Step down
    // until a probe has no errors and (almost) no request that found every connection busy.
    let mut rate = wanted;
    loop {
        let probe = normal_load(&me, args, proxy.addr, rate, Duration::from_secs(5))?;
        if probe.errors.is_empty() && probe.late * 1000 <= probe.sent {
            break;
        }
        eprintln!(
            "the load core cannot drive {rate:.0} req/s cleanly (late {} of {}, errors {:?})",
            probe.late, probe.sent, probe.errors
        );
        rate = (rate * 0.8).round();
        if rate < 100.0 {
            bail!("the load core cannot drive even 100 req/s");
        }
    }
    eprintln!(
        "saturation {saturation_rps:.0} req/s; {:.0} % of it is {wanted:.0}; normal clients at {rate:.0} req/s over {} churned connections",
        args.load * 100.0,
        args.connections
    );
    let normal = |len: Duration| normal_load(&me, args, proxy.addr, rate, len);

    eprintln!("baseline: normal clients alone for {} s", SLICE.as_secs());
    let baseline = slice(Ok(normal(SLICE)?), 0.0, pid)?;

    let soak = slices(&normal, soak_len, SLICE, pid, "soak ")?;

    let loopback = |first: u8, n: u8| -> Vec<String> {
        (0..n).map(|i| format!("127.0.0.{}", first + i)).collect()
    };
    let plans = [
        (
            format!("{h2c} idle h2c connections from 2 addresses"),
            Kind::H2cIdle,
            h2c,
            loopback(2, 2),
        ),
        (
            format!("{slowloris} slowloris connections from 1 address"),
            Kind::Slowloris,
            slowloris,
            loopback(4, 1),
        ),
        (
            format!("{h2c} idle h2c connections from 16 addresses (past the per-source cap)"),
            Kind::H2cIdle,
            h2c,
            loopback(10, 16),
        ),
    ];
    let storm_rate = (rate * args.storm_load).round();
    let during_storm = |len: Duration| normal_load(&me, args, proxy.addr, storm_rate, len);
    // Two unattacked slices; the quieter one is the bar's reference, so one slow slice cannot
    // make the storms look better than they are.
    eprintln!("storm baseline: normal clients alone at {storm_rate:.0} req/s");
    let storm_baseline = [0.0, SLICE.as_secs_f64()]
        .into_iter()
        .map(|at| slice(Ok(during_storm(SLICE)?), at, pid))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .min_by(|a, b| a.load.p99_ms.total_cmp(&b.load.p99_ms))
        .context("a storm baseline")?;
    let decoy = start_proxy(args, dir, upstream.addr, "loadshift-decoy", args.load_core)?;
    let mut storms = Vec::new();
    for (name, kind, n, sources) in plans {
        let attack = Attack {
            kind,
            connections: n,
            sources: &sources,
            len: storm_len,
        };
        eprintln!("storm at the decoy: {name} for {} s", storm_len.as_secs());
        let (control, ..) = storm(&me, args, dir, &decoy, &attack, pid, &during_storm)?;
        eprintln!("storm: {name} for {} s", storm_len.as_secs());
        let (slices, attackers) = storm(&me, args, dir, &proxy, &attack, pid, &during_storm)?;
        std::thread::sleep(Duration::from_secs(10));
        storms.push(Storm {
            name,
            control,
            slices,
            attackers,
            rss_after_kib: rss_kib(pid)?,
            fds_after: fds(pid)?,
            admission: admin_stats(proxy.admin)
                .map(|s| s["admission"].clone())
                .unwrap_or_default(),
        });
    }
    Ok(SoakResult {
        saturation_rps,
        wanted_rate: wanted,
        rate,
        rss_start_kib,
        baseline,
        soak,
        storm_rate,
        storm_baseline,
        storms,
    })
}

/// One storm's attackers.
struct Attack<'a> {
    kind: Kind,
    connections: usize,
    sources: &'a [String],
    len: Duration,
}

/// Runs `attack` at `target` with the normal clients beside it; their slices (with the state of
/// the proxy `pid`) and the attackers' reports.
fn storm(
    me: &Path,
    args: &SoakArgs,
    dir: &Path,
    target: &Proxy,
    attack: &Attack<'_>,
    pid: u32,
    normal: &dyn Fn(Duration) -> anyhow::Result<Summary>,
) -> anyhow::Result<(Vec<Slice>, Vec<AttackReport>)> {
    let &Attack {
        kind,
        connections,
        sources,
        len,
    } = attack;
    let kind_arg = match kind {
        Kind::H2cIdle => "h2c-idle",
        Kind::Slowloris => "slowloris",
    };
    // The attack outlasts the normal clients' slices, so they never run alone and the
    // proxy's state is read while it is under attack.
    let attack_len = len + Duration::from_secs(15);
    let mut children = Vec::new();
    let procs = connections.div_ceil(PER_ATTACKER).max(1);
    for i in 0..procs {
        let n = (connections - i * PER_ATTACKER).min(PER_ATTACKER);
        // Each process gets its own share of the source addresses (all of them if fewer).
        let mine: Vec<&str> = sources
            .iter()
            .enumerate()
            .filter(|(j, _)| sources.len() < procs || j % procs == i)
            .map(|(_, s)| s.as_str())
            .collect();
        let out = dir.join(format!("attack-{kind_arg}-{}-{i}.json", target.addr.port()));
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg(args.load_core.to_string())
            .arg(me)
            .args(["bench", "attack", "--kind", kind_arg])
            .args(["--target", &target.addr.to_string()])
            .args(["--sources", &mine.join(",")])
            .args(["--connections", &n.to_string()])
            .args(["--duration", &format!("{}ms", attack_len.as_millis())])
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(dir.join(format!(
                "attack-{kind_arg}-{}-{i}.log",
                target.addr.port()
            )))?);
        children.push((cmd.spawn().context("start an attacker")?, out));
    }
    // Let the attackers connect before measuring.
    std::thread::sleep(Duration::from_secs(2));
    let slices = slices(normal, len, len.min(SLICE), pid, "  ")?;
    let mut attackers = Vec::new();
    for (mut child, out) in children {
        let status = child.wait().context("wait for an attacker")?;
        if !status.success() {
            bail!("an attacker exited with {status}");
        }
        let text = std::fs::read_to_string(&out)?;
        attackers.push(serde_json::from_str(text.trim()).context("attacker report")?);
    }
    Ok((slices, attackers))
}

/// Normal clients in slices of `slice_len` for about `len`, each printed as it ends.
fn slices(
    normal: &dyn Fn(Duration) -> anyhow::Result<Summary>,
    len: Duration,
    slice_len: Duration,
    pid: u32,
    label: &str,
) -> anyhow::Result<Vec<Slice>> {
    let mut out = Vec::new();
    let start = Instant::now();
    while start.elapsed() + slice_len / 2 < len {
        let s = slice(normal(slice_len), start.elapsed().as_secs_f64(), pid)?;
        eprintln!(
            "{label}{:>4.0} s: p99 {:.3} ms, errors {}, RSS {:.1} MiB, fds {}",
            s.at_s,
            s.load.p99_ms,
            s.load.errors.values().sum::<u64>(),
            s.rss_kib as f64 / 1024.0,
            s.fds
        );
        out.push(s);
    }
    Ok(out)
}

fn slice(load: anyhow::Result<Summary>, at_s: f64, pid: u32) -> anyhow::Result<Slice> {
    let (load, failure) = match load {
        Ok(l) => (l, None),
        Err(e) => (Summary::default(), Some(format!("{e:#}"))),
    };
    Ok(Slice {
        at_s,
        load,
        failure,
        rss_kib: rss_kib(pid)?,
        fds: fds(pid)?,
    })
}

/// The normal clients: `loadshift load`, open loop, churned connections, pinned to the load core.
fn normal_load(
    me: &Path,
    args: &SoakArgs,
    addr: SocketAddr,
    rate: f64,
    len: Duration,
) -> anyhow::Result<Summary> {
    let connections = args.connections.to_string();
    let per_connection = args.requests_per_connection.to_string();
    super::proxy::run_load(
        me,
        args.load_core,
        addr,
        rate,
        len,
        &[
            "--connections",
            &connections,
            "--max-connections",
            &connections,
            "--requests-per-connection",
            &per_connection,
            "--timeout",
            "5s",
        ],
    )
}

/// Open descriptors of `pid`.
fn fds(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("list /proc/{pid}/fd"))?
        .count())
}

/// The proxy's `/stats`.
fn admin_stats(admin: SocketAddr) -> anyhow::Result<serde_json::Value> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(serde_json::from_str(body)?)
}

/// Errors other than configured sheds (a 503 is one only when the proxy said `overloaded`,
/// which `loadshift load` cannot tell from an upstream's 503, so every 503 is listed apart);
/// a slice whose clients could not run at all counts as one.
fn unexpected_errors(s: &Slice) -> u64 {
    let failed = u64::from(s.failure.is_some());
    failed
        + s.load
            .errors
            .iter()
            .filter(|(c, _)| **c != ErrorClass::Status503)
            .map(|(_, n)| n)
            .sum::<u64>()
}

fn print(r: &SoakResult) {
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "\n# loadshift bench soak\n\nsaturation {:.0} req/s (wrk, closed loop); wanted {:.0} req/s; normal clients at {:.0} req/s{}; RSS at start {:.1} MiB\n",
        r.saturation_rps,
        r.wanted_rate,
        r.rate,
        if r.rate < r.wanted_rate {
            " (the most the load core drives without late requests)"
        } else {
            ""
        },
        mib(r.rss_start_kib)
    );
    println!("## Soak (30 s slices)\n");
    println!("| t s | achieved req/s | p50 ms | p99 ms | errors (kind: n) | RSS MiB | fds |");
    println!("|---|---|---|---|---|---|---|");
    let row = |s: &Slice| {
        let errors: Vec<String> = s
            .load
            .errors
            .iter()
            .map(|(k, n)| format!("{k:?}: {n}"))
            .collect();
        println!(
            "| {:.0} | {:.0} | {:.3} | {:.3} | {} | {:.1} | {} |",
            s.at_s,
            s.load.achieved_rps,
            s.load.p50_ms,
            s.load.p99_ms,
            match (&s.failure, errors.is_empty()) {
                (Some(f), _) => format!("clients failed: {f}"),
                (None, true) => "0".to_string(),
                (None, false) => errors.join(", "),
            },
            mib(s.rss_kib),
            s.fds
        );
    };
    println!("baseline:");
    row(&r.baseline);
    for s in &r.soak {
        row(s);
    }
    let after: Vec<&Slice> = r
        .soak
        .iter()
        .filter(|s| s.at_s > WARM_UP.as_secs_f64())
        .collect();
    if !after.is_empty() {
        // Flat: every sample within 10 % of the steady state's mean.
        let mean = after.iter().map(|s| s.rss_kib as f64).sum::<f64>() / after.len() as f64;
        let worst = after
            .iter()
            .map(|s| (s.rss_kib as f64 - mean).abs() / mean)
            .fold(0.0, f64::max);
        let (lo, hi) = after.iter().fold((u64::MAX, 0), |(lo, hi), s| {
            (lo.min(s.rss_kib), hi.max(s.rss_kib))
        });
        println!(
            "\nRSS after warm-up: mean {:.1} MiB, {:.1} to {:.1} MiB, largest deviation from the mean {:.1} % (bar: within 10 %) -> {}",
            mean / 1024.0,
            mib(lo),
            mib(hi),
            worst * 100.0,
            if worst <= 0.10 { "met" } else { "NOT met" }
        );
    } else {
        println!("\nsoak shorter than its warm-up: no RSS bar");
    }
    let soak_errors: u64 = r.soak.iter().map(unexpected_errors).sum();
    let soak_503: u64 = r
        .soak
        .iter()
        .map(|s| {
            s.load
                .errors
                .get(&ErrorClass::Status503)
                .copied()
                .unwrap_or(0)
        })
        .sum();
    println!(
        "errors during the soak besides 503s: {soak_errors} (bar: 0) -> {}; 503s: {soak_503}",
        if soak_errors == 0 { "met" } else { "NOT met" }
    );
    println!(
        "\n## Storms\n\nnormal clients at {:.0} req/s; their unattacked baseline:\n",
        r.storm_rate
    );
    println!("| t s | achieved req/s | p50 ms | p99 ms | errors (kind: n) | RSS MiB | fds |");
    println!("|---|---|---|---|---|---|---|");
    row(&r.storm_baseline);
    let base = r.storm_baseline.load.p99_ms;
    for st in &r.storms {
        println!("\n## Storm: {}\n", st.name);
        println!("| t s | achieved req/s | p50 ms | p99 ms | errors (kind: n) | RSS MiB | fds |");
        println!("|---|---|---|---|---|---|---|");
        println!("control, the attack at the decoy on the load core:");
        for s in &st.control {
            row(s);
        }
        println!("the attack at the proxy:");
        for s in &st.slices {
            row(s);
        }
        let worst_of = |v: &[Slice]| v.iter().map(|s| s.load.p99_ms).fold(0.0, f64::max);
        let (worst, control) = (worst_of(&st.slices), worst_of(&st.control));
        let ratio = worst / base;
        let errors: u64 = st.slices.iter().map(unexpected_errors).sum();
        let peak: usize = st.attackers.iter().map(|a| a.peak_open).sum();
        let connected: u64 = st.attackers.iter().map(|a| a.connected).sum();
        let closed: u64 = st.attackers.iter().map(|a| a.closed_by_proxy).sum();
        println!(
            "\nattackers: {connected} connections made, at most {peak} open at once, {closed} closed by the proxy"
        );
        println!(
            "normal clients' p99 {worst:.3} ms = {ratio:.2}x the storm baseline's {base:.3} ms (bar: <= 2x) -> {}; errors besides 503s: {errors} -> {}",
            if ratio <= 2.0 && st.slices.iter().all(|s| s.failure.is_none()) {
                "met"
            } else {
                "NOT met"
            },
            if errors == 0 { "met" } else { "NOT met" }
        );
        println!(
            "with the attack at the decoy the p99 was {control:.3} ms ({:.2}x the baseline): the attackers' share of the shared core; at the proxy it is {:.2}x that",
            control / base,
            worst / control
        );
        let peak_rss = st.slices.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        println!(
            "RSS: peak {:.1} MiB, 10 s after the storm {:.1} MiB; fds after {}",
            mib(peak_rss),
            mib(st.rss_after_kib),
            st.fds_after
        );
        println!("proxy admission counters: {}", st.admission);
    }
}
