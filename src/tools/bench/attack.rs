//! `loadshift bench attack` (hidden): the hostile clients of `loadshift bench soak`, run as
//! child processes so that each stays under the open-file limit. Every connection is bound to
//! one of the given loopback source addresses, does its one hostile thing, and when the proxy
//! closes it, reconnects after a pause (uniform in half to one and a half times
//! `--reconnect-after`, so reconnects do not come in waves), until the run ends. Prints a JSON
//! [`AttackReport`].
//!
//! - `h2c-idle`: the HTTP/2 preface and an empty SETTINGS frame, then nothing.
//! - `slowloris`: an HTTP/1.1 request line and Host, then one more header line every few
//!   seconds, never the end of the head.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::Instant;

use crate::tools::load::cli::parse_duration;

/// What the attacking connections do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// HTTP/2 preface + SETTINGS, then silence.
    H2cIdle,
    /// An HTTP/1.1 head that never ends, one header line at a time.
    Slowloris,
}

/// Arguments of `loadshift bench attack`.
#[derive(clap::Args, Debug)]
pub struct AttackArgs {
    /// What each connection does.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// The proxy's address.
    #[arg(long)]
    pub target: SocketAddr,
    /// Loopback source addresses, used in turn.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.2")]
    pub sources: Vec<IpAddr>,
    /// Connections to keep trying to hold.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// How long to attack.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Mean pause before reconnecting after the proxy closed a connection.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub reconnect_after: Duration,
    /// Slowloris: gap between header lines.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub trickle: Duration,
}

/// What an attack achieved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttackReport {
    /// What was done.
    pub kind: Option<Kind>,
    /// Connections established.
    pub connected: u64,
    /// Connects that failed or timed out.
    pub connect_errors: u64,
    /// Connections the proxy closed.
    pub closed_by_proxy: u64,
    /// Most connections open at once.
    pub peak_open: usize,
    /// Connections open when the attack ended.
    pub open_at_end: usize,
}

#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    connect_errors: AtomicU64,
    closed: AtomicU64,
    open: AtomicUsize,
    peak: AtomicUsize,
}

/// Entry point: runs the attack on a current-thread runtime and prints the report.
pub fn run(args: &AttackArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("attack runtime")?;
    let report = rt.block_on(attack(args));
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn attack(args: &AttackArgs) -> AttackReport {
    let c = Arc::new(Counters::default());
    let end = Instant::now() + args.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.connections {
        let source = args.sources[i % args.sources.len().max(1)];
        let (c, kind, target) = (c.clone(), args.kind, args.target);
        let (again, trickle) = (args.reconnect_after, args.trickle);
        tasks.spawn(async move {
            let mut rng = SmallRng::seed_from_u64(i as u64);
            while Instant::now() < end {
                match tokio::time::timeout_at(end, hold(kind, source, target, trickle, &c)).await {
                    Err(_) => return,
                    Ok(Ok(())) => {
                        c.closed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(())) => {
                        c.connect_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let pause = again.mul_f64(rng.random_range(0.5..1.5));
                tokio::time::sleep_until(end.min(Instant::now() + pause)).await;
            }
        });
    }
    let watch = async {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            eprintln!(
                "open {}  connected {}  closed by the proxy {}  connect errors {}",
                c.open.load(Ordering::Relaxed),
                c.connected.load(Ordering::Relaxed),
                c.closed.load(Ordering::Relaxed),
                c.connect_errors.load(Ordering::Relaxed)
            );
        }
    };
    let open_at_end = tokio::select! {
        () = async { while tasks.join_next().await.is_some() {} } => 0,
        () = watch => 0,
        () = tokio::time::sleep_until(end) => c.open.load(Ordering::Relaxed),
    };
    tasks.abort_all();
    AttackReport {
        kind: Some(args.kind),
        connected: c.connected.load(Ordering::Relaxed),
        connect_errors: c.connect_errors.load(Ordering::Relaxed),
        closed_by_proxy: c.closed.load(Ordering::Relaxed),
        peak_open: c.peak.load(Ordering::Relaxed),
        open_at_end,
    }
}

/// One connection from connect to the proxy closing it: `Err` when it could not connect.
async fn hold(
    kind: Kind,
    source: IpAddr,
    target: SocketAddr,
    trickle: Duration,
    c: &Counters,
) -> Result<(), ()> {
    let sock = if source.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|_| ())?;
    sock.bind(SocketAddr::new(source, 0)).map_err(|_| ())?;
    let mut s = tokio::time::timeout(Duration::from_secs(10), sock.connect(target))
        .await
        .map_err(|_| ())?
        .map_err(|_| ())?;
    c.connected.fetch_add(1, Ordering::Relaxed);
    let open = c.open.fetch_add(1, Ordering::Relaxed) + 1;
    c.peak.fetch_max(open, Ordering::Relaxed);
    let mut buf = [0u8; 1024];
    let _ = async {
        match kind {
            Kind::H2cIdle => {
                s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
                    .await?;
                // Whatever the proxy sends (its SETTINGS, a GOAWAY) is read and ignored.
                while s.read(&mut buf).await? > 0 {}
            }
            Kind::Slowloris => {
                s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n").await?;
                loop {
                    tokio::select! {
                        n = s.read(&mut buf) => if n? == 0 { break },
                        () = tokio::time::sleep(trickle) => s.write_all(b"X-Slow: 1\r\n").await?,
                    }
                }
            }
        }
        Ok::<_, std::io::Error>(())
    }
    .await;
    c.open.fetch_sub(1, Ordering::Relaxed);
    Ok(())
}
