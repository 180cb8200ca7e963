//! `loadshift load`: run the open-loop generator from the command line and print its report
//! (text, or the [`Summary`](super::Summary) JSON with `--json`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use http::header::{HeaderName, HeaderValue};

use super::{Arrivals, LoadSpec, Rate};

/// Arguments of `loadshift load`.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Target, `http://HOST:PORT/PATH` (plain HTTP/1.1 only).
    pub url: String,
    /// Requests per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Schedule length (`500ms`, `10s`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Ramp the rate up linearly from zero over this long before holding it (`0s`: no ramp).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub ramp_up: Duration,
    /// Arrival spacing.
    #[arg(long, value_enum, default_value_t = Arrivals::Uniform)]
    pub arrivals: Arrivals,
    /// Seed for Poisson arrivals.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Connections opened before the first request.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Most connections (requests in flight) at once.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// `Host` header to send (default: the URL's authority).
    #[arg(long)]
    pub host: Option<String>,
    /// Extra header `NAME: VALUE` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Close each connection after this many requests and open a new one (connection churn;
    /// idle connections are then used oldest first so every one cycles). Default: keep them.
    #[arg(long)]
    pub requests_per_connection: Option<u32>,
    /// Sleep through the whole gap between sends instead of yielding for the last millisecond
    /// (saves a core, adds up to a millisecond of timer lateness to latencies).
    #[arg(long)]
    pub coarse: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `250us`, `500ms`, `10s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "" | "s" => v,
        "m" => v * 60.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use us, ms, s or m)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Splits `http://host:port/path` into a socket address, an authority and a path.
pub fn parse_url(url: &str) -> anyhow::Result<(SocketAddr, String, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to no address"))?;
    Ok((addr, authority.to_string(), path.to_string()))
}

impl LoadArgs {
    /// The run these arguments describe.
    pub fn spec(&self) -> anyhow::Result<LoadSpec> {
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            bail!("--rate must be a positive number, got {}", self.rate);
        }
        let (addr, authority, path) = parse_url(&self.url)?;
        let (target, ramp) = (self.rate, self.ramp_up);
        let rate = if ramp.is_zero() {
            Rate::constant(target)
        } else {
            Rate::from_fn(move |t| target * (t.as_secs_f64() / ramp.as_secs_f64()).min(1.0))
        };
        let mut spec = LoadSpec::new(addr, rate, self.duration);
        spec.host = self.host.clone().unwrap_or(authority);
        spec.path = path;
        spec.arrivals = self.arrivals;
        spec.seed = self.seed;
        spec.connections = self.connections;
        spec.max_connections = self.max_connections.max(1);
        spec.timeout = self.timeout;
        spec.precise = !self.coarse;
        spec.requests_per_connection = self.requests_per_connection;
        for h in &self.headers {
            let (k, v) = h
                .split_once(':')
                .with_context(|| format!("header {h:?} is not NAME: VALUE"))?;
            spec.headers.push((
                HeaderName::from_bytes(k.trim().as_bytes())
                    .with_context(|| format!("header name {k:?}"))?,
                HeaderValue::from_str(v.trim()).with_context(|| format!("header value {v:?}"))?,
            ));
        }
        Ok(spec)
    }
}

/// Entry point of `loadshift load`: exit 64 on invalid arguments, 1 when the run fails.
pub fn main(args: LoadArgs) -> ExitCode {
    let spec = match args.spec() {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("loadshift load: {e:#}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    match run(&args, spec) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadshift load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A single-threaded runtime keeps the generator on one core (benchmarks pin it with `taskset`).
fn run(args: &LoadArgs, spec: LoadSpec) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(super::run(spec))?;
    let summary = report.summary();
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{summary}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn urls_split_into_address_authority_and_path() {
        let (addr, auth, path) = parse_url("http://127.0.0.1:8080/a?b=1").expect("valid");
        assert_eq!(addr.port(), 8080);
        assert_eq!(auth, "127.0.0.1:8080");
        assert_eq!(path, "/a?b=1");
        let (_, _, path) = parse_url("http://127.0.0.1:1").expect("valid");
        assert_eq!(path, "/");
        assert!(parse_url("https://127.0.0.1:1/").is_err());
    }
}
