//! `loadshift bench proxy`: the data plane against HAProxy and nginx in one run on this machine
//! (issue 2's benchmark; SPEC §8 lists the numbers it should be read against).
//!
//! Layout on a 2-core machine: each proxy pinned to core 0 with one worker / thread; the
//! upstream nginx (`return 200`, one worker) and every load generator pinned to core 1. Every
//! proxy keeps its upstream connections alive (HAProxy `http-reuse always`, nginx `keepalive`).
//!
//! Phases, every target in the same run:
//! 1. RSS idle, right after start;
//! 2. closed-loop saturation, `wrk -t1 -c32` (req/s; wrk's own latencies are closed-loop and
//!    only indicative), in alternating rounds (every target once per round) so that a busy
//!    moment of the machine hits each target rather than one; the throughput ratio is the median
//!    of the per-round ratios;
//! 3. open-loop fixed rates at 25 / 50 / 75 % of HAProxy's measured maximum with
//!    `loadshift load` (latency from the intended send time: p50 / p99 / p99.9), in alternating
//!    rounds as well; each target's table row is its median-p99 round and each latency ratio is
//!    the median of the per-round ratios;
//! 4. RSS with 1000 idle keep-alive client connections (each made one request first).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use super::peers::{self, Server, Target};
use super::wrk::{self, WrkResult};
use crate::tools::load::Summary;
use crate::tools::support::process::Guard;

/// Arguments of `loadshift bench proxy`.
#[derive(clap::Args, Debug)]
pub struct ProxyBenchArgs {
    /// Short run (3 s phases, no warm-up): checks the harness, numbers are rough.
    #[arg(long)]
    pub quick: bool,
    /// Targets to measure (HAProxy is needed for the open-loop rates and the ratios).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "direct,haproxy,nginx,loadshift"
    )]
    pub targets: Vec<Target>,
    /// Core the proxies are pinned to.
    #[arg(long, default_value_t = 0)]
    pub proxy_core: u32,
    /// Core the upstream and the load generators are pinned to.
    #[arg(long, default_value_t = 1)]
    pub load_core: u32,
    /// Rounds of the closed loop and of each open-loop level, alternating targets: 3 s each,
    /// default 8 (short rounds close together cancel more of the machine's own swings); one
    /// round with `--quick`.
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Idle client connections held open for the second RSS reading.
    #[arg(long, default_value_t = 1000)]
    pub idle_connections: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Open-loop loads, as fractions of HAProxy's saturation throughput.
const LOADS: [f64; 3] = [0.25, 0.5, 0.75];

/// Everything measured for one target.
#[derive(Debug, Serialize)]
pub struct TargetResult {
    /// Which target.
    pub target: Target,
    /// RSS right after start, KiB.
    pub rss_idle_kib: u64,
    /// RSS with the idle client connections open, KiB.
    pub rss_conns_kib: u64,
    /// Closed-loop saturation: the round with the median req/s.
    pub saturation: WrkResult,
    /// req/s of every closed-loop round, in order.
    pub saturation_rounds: Vec<f64>,
    /// Open-loop runs, in the order of [`LOADS`].
    pub open_loop: Vec<OpenLoop>,
}

/// One open-loop load level.
#[derive(Debug, Serialize)]
pub struct OpenLoop {
    /// Fraction of HAProxy's maximum.
    pub load: f64,
    /// Requested rate, req/s.
    pub rate: f64,
    /// The round with the median p99.
    pub summary: Summary,
    /// What the generator measured in every round, in order.
    pub rounds: Vec<Summary>,
}

struct Running {
    target: Target,
    addr: SocketAddr,
    pid: u32,
    _guard: Option<Guard>,
}

/// Runs the benchmark and prints its tables.
pub fn run(args: &ProxyBenchArgs) -> anyhow::Result<()> {
    let (phase, warmup) = if args.quick {
        (Duration::from_secs(3), None)
    } else {
        (Duration::from_secs(10), Some(Duration::from_secs(2)))
    };
    let dir = std::env::temp_dir().join(format!("loadshift-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let load_before = loadavg();
    let result = measure(args, &dir, phase, warmup);
    // Logs stay behind only when something failed.
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("logs and configs kept in {}", dir.display());
    }
    let results = result?;
    print_tables(&results);
    // Other work on the machine skews every number above; say how busy it was.
    println!(
        "\nload average (1/5/15 min) before: {load_before}, after: {}",
        loadavg()
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

fn measure(
    args: &ProxyBenchArgs,
    dir: &Path,
    phase: Duration,
    warmup: Option<Duration>,
) -> anyhow::Result<Vec<TargetResult>> {
    let me = std::env::current_exe().context("locate the loadshift binary")?;
    eprintln!("starting upstream nginx on core {}", args.load_core);
    let upstream: Server = peers::upstream(dir, args.load_core)?;
    let mut running = Vec::new();
    for &target in &args.targets {
        if target == Target::Direct {
            running.push(Running {
                target,
                addr: upstream.addr,
                pid: upstream.guard.pid(),
                _guard: None,
            });
            continue;
        }
        eprintln!("starting {} on core {}", target.name(), args.proxy_core);
        let server = peers::proxy(target, dir, args.proxy_core, upstream.addr, &me)?;
        running.push(Running {
            target,
            addr: server.addr,
            pid: server.guard.pid(),
            _guard: Some(server.guard),
        });
    }

    let mut idle_rss = Vec::new();
    for r in &running {
        idle_rss.push(crate::tools::support::process::rss_kib(r.pid)?);
        if let Some(w) = warmup {
            wrk::run(r.addr, w, 32, args.load_core)?;
        }
    }
    let (rounds, round_len) = if args.quick {
        (args.rounds.unwrap_or(1), phase)
    } else {
        (args.rounds.unwrap_or(8), Duration::from_secs(3))
    };
    let per_target = alternate(&running, rounds, |round, r| {
        eprintln!(
            "round {round}: saturating {} for {} s",
            r.target.name(),
            round_len.as_secs()
        );
        wrk::run(r.addr, round_len, 32, args.load_core)
    })?;
    let mut results = Vec::new();
    for ((r, rss_idle_kib), mut runs) in running.iter().zip(idle_rss).zip(per_target) {
        let saturation_rounds = runs.iter().map(|w| w.rps).collect();
        runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        // The lower median: a real round whatever the count.
        let saturation = runs.swap_remove((runs.len() - 1) / 2);
        results.push(TargetResult {
            target: r.target,
            rss_idle_kib,
            rss_conns_kib: 0,
            saturation,
            saturation_rounds,
            open_loop: Vec::new(),
        });
    }

    let reference = match results.iter().find(|t| t.target == Target::Haproxy) {
        Some(h) => h.saturation.rps,
        None => {
            let best = results
                .iter()
                .filter(|t| t.target != Target::Direct)
                .map(|t| t.saturation.rps)
                .fold(0.0, f64::max);
            eprintln!(
                "haproxy not measured: open-loop rates are fractions of the best proxy ({best:.0} req/s)"
            );
            best
        }
    };
    if reference <= 0.0 {
        bail!("no proxy saturation measured; add haproxy to --targets");
    }
    for load in LOADS {
        let rate = (reference * load).round();
        let per_target = alternate(&running, rounds, |round, r| {
            eprintln!(
                "round {round}: open loop {} at {rate:.0} req/s ({:.0}% of reference)",
                r.target.name(),
                load * 100.0
            );
            open_loop(&me, r.addr, rate, round_len, args.load_core)
        })?;
        for (runs, t) in per_target.into_iter().zip(results.iter_mut()) {
            let mut by_p99: Vec<&Summary> = runs.iter().collect();
            by_p99.sort_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
            // The lower median, as for saturation: a real round whatever the count.
            let summary = by_p99[(by_p99.len() - 1) / 2].clone();
            t.open_loop.push(OpenLoop {
                load,
                rate,
                summary,
                rounds: runs,
            });
        }
    }

    for (r, t) in running.iter().zip(results.iter_mut()) {
        let conns = hold_idle(r.addr, args.idle_connections).with_context(|| {
            format!(
                "open {} idle connections to {}",
                args.idle_connections,
                r.target.name()
            )
        })?;
        std::thread::sleep(Duration::from_millis(500));
        t.rss_conns_kib = crate::tools::support::process::rss_kib(r.pid)?;
        drop(conns);
    }
    Ok(results)
}

/// Measures every target once per round, the targets in turn, so a busy moment of the machine
/// lands on each of them rather than on one. One list of results per target, in round order.
fn alternate<T>(
    running: &[Running],
    rounds: u32,
    mut measure: impl FnMut(u32, &Running) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<Vec<T>>> {
    let mut per_target: Vec<Vec<T>> = running.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds.max(1) {
        for (r, runs) in running.iter().zip(per_target.iter_mut()) {
            runs.push(measure(round, r)?);
        }
    }
    Ok(per_target)
}

/// Runs `loadshift load` pinned to the load core and reads its JSON summary.
fn open_loop(
    me: &Path,
    addr: SocketAddr,
    rate: f64,
    duration: Duration,
    core: u32,
) -> anyhow::Result<Summary> {
    run_load(me, core, addr, rate, duration, &["--connections", "64"])
}

/// `loadshift load` at `rate` for `duration` with `extra` arguments, pinned to `core`; its JSON
/// summary.
pub(super) fn run_load(
    me: &Path,
    core: u32,
    addr: SocketAddr,
    rate: f64,
    duration: Duration,
    extra: &[&str],
) -> anyhow::Result<Summary> {
    let out = Command::new("taskset")
        .arg("-c")
        .arg(core.to_string())
        .arg(me)
        .args([
            "load",
            &format!("http://{addr}/"),
            "--rate",
            &rate.to_string(),
        ])
        .args(["--duration", &format!("{}ms", duration.as_millis())])
        .args(extra)
        .arg("--json")
        .output()
        .context("run loadshift load")?;
    if !out.status.success() {
        bail!(
            "loadshift load failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("parse loadshift load output")
}

/// Opens `n` keep-alive connections, makes one request on each, and keeps them open.
fn hold_idle(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")?;
        conns.push(s);
    }
    let mut buf = [0u8; 4096];
    for s in &mut conns {
        let n = s.read(&mut buf)?;
        if !buf[..n].starts_with(b"HTTP/1.1 200") {
            bail!(
                "unexpected response: {}",
                String::from_utf8_lossy(&buf[..n.min(80)])
            );
        }
    }
    Ok(conns)
}

/// Median of sorted values (mean of the middle two for an even count); NaN when empty.
fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn print_tables(results: &[TargetResult]) {
    println!("\n## Saturation (closed loop, wrk -t1 -c32; the median round, then every round)\n");
    println!("| target | req/s | p50 ms | p99 ms | errors | rounds req/s |");
    println!("|---|---|---|---|---|---|");
    for t in results {
        let s = &t.saturation;
        let rounds: Vec<String> = t
            .saturation_rounds
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect();
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {} | {} |",
            t.target.name(),
            s.rps,
            s.p50_ms,
            s.p99_ms,
            s.errors,
            rounds.join(" ")
        );
    }
    println!("\n## Open loop (loadshift load, latency from intended send time)\n");
    println!(
        "| target | load | rate req/s | achieved | p50 ms | p99 ms | p99.9 ms | max ms | errors | late |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (i, load) in LOADS.iter().enumerate() {
        for t in results {
            if let Some(o) = t.open_loop.get(i) {
                let s = &o.summary;
                let errors: u64 = s.errors.values().sum();
                println!(
                    "| {} | {:.0}% | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} |",
                    t.target.name(),
                    load * 100.0,
                    o.rate,
                    s.achieved_rps,
                    s.p50_ms,
                    s.p99_ms,
                    s.p999_ms,
                    s.max_ms,
                    errors,
                    s.late
                );
            }
        }
    }
    println!("\n## Memory (VmRSS)\n");
    println!("| target | idle MiB | with idle connections MiB |");
    println!("|---|---|---|");
    for t in results {
        println!(
            "| {} | {:.1} | {:.1} |",
            t.target.name(),
            t.rss_idle_kib as f64 / 1024.0,
            t.rss_conns_kib as f64 / 1024.0
        );
    }
    let (Some(ls), Some(ha)) = (
        results.iter().find(|t| t.target == Target::Loadshift),
        results.iter().find(|t| t.target == Target::Haproxy),
    ) else {
        return;
    };
    println!("\n## loadshift / HAProxy\n");
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let mut per_round: Vec<f64> = ls
        .saturation_rounds
        .iter()
        .zip(&ha.saturation_rounds)
        .map(|(&a, &b)| ratio(a, b))
        .collect();
    let shown: Vec<String> = per_round.iter().map(|r| format!("{r:.2}")).collect();
    per_round.sort_by(f64::total_cmp);
    let tput = median(&per_round);
    println!(
        "throughput: {tput:.2}x, median of the rounds [{}] (bar >= 1.0x, goal 1.3x)",
        shown.join(", ")
    );
    let direct = results.iter().find(|t| t.target == Target::Direct);
    for (i, load) in LOADS.iter().enumerate() {
        // More than 1% of the upstream's own requests late: the load core, not a proxy, is
        // the limit at this rate, and the ratios below compare nothing.
        if let Some(d) = direct.and_then(|d| d.open_loop.get(i))
            && d.summary.late * 100 > d.summary.sent
        {
            println!(
                "at {:.0}% load: the upstream alone had {} of {} requests late: the load core \
                 cannot drive this rate, so this level compares the harness, not the proxies",
                load * 100.0,
                d.summary.late,
                d.summary.sent
            );
            continue;
        }
        if let (Some(a), Some(b)) = (ls.open_loop.get(i), ha.open_loop.get(i)) {
            let per_round = |f: fn(&Summary) -> f64| {
                let mut r: Vec<f64> = a
                    .rounds
                    .iter()
                    .zip(&b.rounds)
                    .map(|(x, y)| ratio(f(x), f(y)))
                    .collect();
                r.sort_by(f64::total_cmp);
                r
            };
            let p99 = per_round(|s| s.p99_ms);
            let shown: Vec<String> = a
                .rounds
                .iter()
                .zip(&b.rounds)
                .map(|(x, y)| format!("{:.2}", ratio(x.p99_ms, y.p99_ms)))
                .collect();
            println!(
                "at {:.0}% load: p50 {:.2}x  p99 {:.2}x  p99.9 {:.2}x, p99 of the rounds [{}]{}",
                load * 100.0,
                median(&per_round(|s| s.p50_ms)),
                median(&p99),
                median(&per_round(|s| s.p999_ms)),
                shown.join(", "),
                if *load == 0.5 {
                    " (bar: p99 <= 1.1x)"
                } else {
                    ""
                }
            );
        }
    }
    println!(
        "RSS: idle {:.2}x, with idle connections {:.2}x ({:.1} MiB; bar <= 20 MiB)",
        ratio(ls.rss_idle_kib as f64, ha.rss_idle_kib as f64),
        ratio(ls.rss_conns_kib as f64, ha.rss_conns_kib as f64),
        ls.rss_conns_kib as f64 / 1024.0
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(
            median(&[0.82, 0.87, 0.90, 1.01, 1.06, 1.08]),
            (0.90 + 1.01) / 2.0
        );
        assert!(median(&[]).is_nan());
    }
}
