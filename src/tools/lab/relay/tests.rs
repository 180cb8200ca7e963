//! The relays on loopback: forwarding, removal, delays for identified callers.

use super::*;

const TWO_ZONES: &str = r#"
name: z
duration_s: 10
zones: [{name: a}, {name: b}]
rtt:
  - {between: [a, b], ms: 20}
hosts: [{name: h1, zone: a}, {name: h2, zone: b}]
services:
  - {name: s, service_time: {dist: constant, mean_ms: 1}, replicas: {h1: 1, h2: 1}}
flows:
  - {name: f, entry: s, arrival: {process: constant, rate: 1}, sla: {latency_ms: 10, percentile: 95}}
"#;

#[test]
fn relays_forward_to_their_container_and_close_when_dropped() {
    use std::io::{Read, Write};
    let s = Scenario::parse(TWO_ZONES, None).expect("valid scenario");
    let mut layout = super::super::layout::layout(&s, 600.0, 10).expect("layout");
    let mut relays = ZoneRelays::bind(&s, &layout).unwrap().expect("rtt set");
    relays.route(&mut layout).unwrap();
    // One echo server stands in for every container's sidecar.
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in echo.incoming().take(1) {
            let mut c = conn.unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).unwrap();
            c.write_all(&buf).unwrap();
        }
    });
    let targets = layout
        .containers
        .iter()
        .map(|c| (c.name.clone(), echo_addr))
        .collect();
    relays.start(&targets, Duration::from_secs(1)).unwrap();
    let front = layout.containers[0].front.expect("routed");
    let mut c = std::net::TcpStream::connect(front).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"hello").unwrap();
    let mut got = [0u8; 5];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    // This process is no lab proxy: forwarded without delay, and said so.
    assert!(relays.describe(Duration::from_secs(1))[0].contains("unidentified"));
    drop(relays);
    // A process another test forks at that moment holds a copy of every descriptor until it
    // execs, so the socket may outlive the drop by a moment: give it a second.
    let closed = (0..50).any(|_| {
        let refused = std::net::TcpStream::connect(front).is_err();
        if !refused {
            std::thread::sleep(Duration::from_millis(20));
        }
        refused
    });
    assert!(closed, "the relay still listens after the run");
}

/// Whether `addr` refuses connections within a second. A process another test forks at the
/// moment a socket closes holds a copy of it until it execs, so it may outlive its close by
/// a moment.
fn refused_soon(addr: SocketAddr) -> bool {
    (0..50).any(|_| {
        let refused = std::net::TcpStream::connect(addr).is_err();
        if !refused {
            std::thread::sleep(Duration::from_millis(20));
        }
        refused
    })
}

#[test]
fn a_relay_added_at_run_time_delays_its_callers_and_closes_when_removed() {
    use std::io::{Read, Write};
    let s = Scenario::parse(TWO_ZONES, None).expect("valid scenario");
    let mut layout = super::super::layout::layout(&s, 600.0, 10).expect("layout");
    let mut relays = ZoneRelays::bind(&s, &layout).unwrap().expect("rtt set");
    relays.route(&mut layout).unwrap();
    // An echo server stands in for every sidecar, the initial ones and the replica's.
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in echo.incoming() {
            let Ok(mut c) = conn else { return };
            let mut buf = [0u8; 5];
            if c.read_exact(&mut buf).is_ok() {
                let _ = c.write_all(&buf);
            }
        }
    });
    let targets = layout
        .containers
        .iter()
        .map(|c| (c.name.clone(), echo_addr))
        .collect();
    relays.start(&targets, Duration::from_secs(1)).unwrap();
    let handle = relays.handle().expect("started");
    let added = handle.add("s-h2-r1", "b", echo_addr).unwrap();

    // The caller is a child process whose command line reads like a lab proxy of zone `a`
    // (`... proxy --config FILE`), so the relay identifies it as such; bash opens the
    // connection itself, sends five bytes and reads the echo.
    let dir = std::env::temp_dir().join(format!("loadshift-relay-add-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("caller.yaml");
    std::fs::write(&cfg, "identity:\n  zone: a\n").unwrap();
    let script = "exec 3<>/dev/tcp/127.0.0.1/$RELAY_PORT && printf hello >&3 \
                  && read -r -N 5 got <&3 && printf %s \"$got\"";
    let out = std::process::Command::new("bash")
        .args(["-c", script, "proxy", "--config"])
        .arg(&cfg)
        .env("RELAY_PORT", added.port().to_string())
        .output()
        .expect("run bash");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 20 ms between a and b: 10 ms each way, applied to the replica's relay like any other.
    // The relay files the connection's RTT once it has seen both directions end, which may
    // be a moment after the caller exits: wait up to a second for it.
    let measured_rtt = || {
        let lines = relays.describe(Duration::from_secs(1));
        let ms = lines
            .iter()
            .find_map(|l| l.strip_prefix("zone relay a->b: 1 connections, measured RTT "))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|ms| ms.parse::<f64>().ok());
        (ms, lines)
    };
    let mut got = measured_rtt();
    for _ in 0..50 {
        if got.0.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        got = measured_rtt();
    }
    let (measured, lines) = got;
    assert!(measured.is_some_and(|ms| ms >= 15.0), "{lines:?}");

    assert!(handle.remove("s-h2-r1"));
    assert!(!handle.remove("s-h2-r1"), "removed once");
    assert!(refused_soon(added), "the removed relay still listens");
    // The initial containers' relays are untouched.
    let front = layout.containers[0].front.expect("routed");
    assert!(std::net::TcpStream::connect(front).is_ok());
    drop(relays);
    assert!(refused_soon(front), "the relay still listens after the run");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rtt_table_is_symmetric_and_zero_for_missing_pairs() {
    let s = Scenario::parse(
        r#"
name: z
duration_s: 10
zones: [{name: a}, {name: b}, {name: c}]
rtt:
  - {between: [a, b], ms: {linear: [[0, 10], [10, 30]]}}
hosts: [{name: h, zone: a}]
services:
  - {name: s, service_time: {dist: constant, mean_ms: 1}, replicas: {h: 1}}
flows:
  - {name: f, entry: s, arrival: {process: constant, rate: 1}, sla: {latency_ms: 10, percentile: 95}}
"#,
        None,
    )
    .expect("valid scenario");
    let t = RttTable::new(&s);
    assert!((t.ms("a", "b", 5.0) - 20.0).abs() < 1e-9);
    assert!((t.ms("b", "a", 5.0) - 20.0).abs() < 1e-9);
    assert_eq!(t.ms("a", "c", 5.0), 0.0);
    assert_eq!(measured_rtt_ms(&[(10_000, 2), (6_000, 2)]), Some(8.0));
    assert_eq!(measured_rtt_ms(&[(10_000, 2), (0, 0)]), None);
}
