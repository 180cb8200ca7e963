//! Closed-loop saturation with `wrk -t1 -c32 --latency`, pinned to the load core, and the parse
//! of its report (requests/sec and the latency distribution).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::tools::support::process::which;

/// What wrk measured.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct WrkResult {
    /// Requests per second over the run.
    pub rps: f64,
    /// Median latency (closed loop, so only indicative), ms.
    pub p50_ms: f64,
    /// 99th percentile latency (closed loop), ms.
    pub p99_ms: f64,
    /// Non-2xx/3xx responses plus socket errors.
    pub errors: u64,
}

/// Runs wrk against `addr` for `duration` with `connections` connections on one thread.
pub fn run(
    addr: SocketAddr,
    duration: Duration,
    connections: u32,
    core: u32,
) -> anyhow::Result<WrkResult> {
    let wrk = which("wrk").context("wrk not found; install it with `apt-get install -y wrk`")?;
    let out = Command::new("taskset")
        .arg("-c")
        .arg(core.to_string())
        .arg(wrk)
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{}s", duration.as_secs().max(1)),
            "--latency",
        ])
        .arg(format!("http://{addr}/"))
        .output()
        .context("run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
}

/// Parses wrk's text report.
pub fn parse(text: &str) -> Option<WrkResult> {
    let mut r = WrkResult::default();
    let mut seen_rps = false;
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => {
                r.rps = v.parse().ok()?;
                seen_rps = true;
            }
            (Some("50%"), Some(v)) => r.p50_ms = latency_ms(v)?,
            (Some("99%"), Some(v)) => r.p99_ms = latency_ms(v)?,
            (Some("Non-2xx"), _) => {
                r.errors += line
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            (Some("Socket"), Some("errors:")) => {
                r.errors += line
                    .split(',')
                    .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    seen_rps.then_some(r)
}

/// `590.00us`, `1.20ms`, `2.01s` to milliseconds.
fn latency_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    match unit {
        "us" => Some(n / 1000.0),
        "ms" => Some(n),
        "s" => Some(n * 1000.0),
        "m" => Some(n * 60_000.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 10s test @ http://127.0.0.1:8080/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   620.31us  150.12us   5.01ms   90.00%
    Req/Sec    51.20k     1.02k   53.00k    70.00%
  Latency Distribution
     50%  590.00us
     75%  650.00us
     90%  720.00us
     99%    1.20ms
  509876 requests in 10.00s, 60.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  50987.60
Transfer/sec:      6.01MB
";

    #[test]
    fn parses_rate_percentiles_and_errors() {
        let r = parse(SAMPLE).expect("parses");
        assert!((r.rps - 50987.6).abs() < 1e-6);
        assert!((r.p50_ms - 0.59).abs() < 1e-9);
        assert!((r.p99_ms - 1.2).abs() < 1e-9);
        assert_eq!(r.errors, 8);
    }

    #[test]
    fn output_without_a_rate_is_rejected() {
        assert!(parse("unable to connect to 127.0.0.1:1 Connection refused").is_none());
    }
}
