//! Hostile clients and broken upstreams on the wire, one test per defence: HTTP/2 connections
//! that trickle, idle or never finish a header block are closed; slow readers and zero windows
//! are cut off; Host and `:authority` are validated and the forwarded Host always names the
//! routed target; client faults get 4xx and are never charged to an endpoint; the upstream
//! side's 1xx, malformed chunks, stray bytes and 204 lengths are handled; plans whose weights
//! overflow are refused.

// Helpers below panic on purpose: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Two services, `web` and `api`, each with its own upstream.
async fn two_services(extra: &str) -> (Upstream, Upstream, loadshift_proxy::Running) {
    let web = Upstream::start("web").await;
    let api = Upstream::start("api").await;
    let yaml = format!(
        "{}  - name: api\n    endpoints: [{{ addr: \"{}\" }}]\n{extra}",
        standalone_yaml(&[&web], ""),
        api.addr
    );
    let proxy = start_proxy(&yaml);
    (web, api, proxy)
}

fn one_upstream_yaml(addr: SocketAddr, extra: &str) -> String {
    format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nworkers: 1\nservices:\n  - name: web\n    endpoints: [{{ addr: \"{addr}\" }}]\n{extra}"
    )
}

async fn exchange(proxy: SocketAddr, raw: &[u8]) -> Wire {
    let mut s = connect(proxy).await;
    s.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    read_response(&mut s, &mut buf, false).await
}

/// Waits (bounded) until the proxy has closed `s`, reading and dropping what it sends; the
/// time it took.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t = std::time::Instant::now();
    let mut b = [0u8; 4096];
    while t.elapsed() < limit {
        match tokio::time::timeout(limit - t.elapsed(), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
    None
}

const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_that_trickle_idle_or_never_finish_a_header_block_are_closed() {
    let up = Upstream::start("up").await;
    let proxy = start_proxy(&standalone_yaml(
        &[&up],
        "timeouts: { header_read_ms: 600, client_idle_ms: 1500 }\n",
    ));

    // The preface, one byte every 200 ms: cut off at header_read_ms however slow the trickle.
    let mut s = connect(proxy.outbound).await;
    let trickle = async {
        for b in PREFACE {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let t = std::time::Instant::now();
    trickle.await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "the trickled preface was not cut off ({:?})",
        t.elapsed()
    );
    assert!(
        closed_within(&mut s, Duration::from_secs(3))
            .await
            .is_some()
    );

    // A preface and SETTINGS, then silence: no stream by header_read_ms of the accept, so
    // GOAWAY and close then, not after the longer idle limit.
    let mut s = connect(proxy.outbound).await;
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&SETTINGS).await.unwrap();
    let took = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(
        took.is_some_and(|d| d >= Duration::from_millis(450) && d < Duration::from_millis(1400)),
        "{took:?}"
    );
    // A connection that sends nothing at all is closed as soon.
    let mut s = connect(proxy.outbound).await;
    let took = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(
        took.is_some_and(|d| d >= Duration::from_millis(450) && d < Duration::from_millis(1400)),
        "{took:?}"
    );
    // After a served stream, the idle limit applies.
    let (tx, conn) = h2_client(proxy.outbound, 65_535).await;
    let mut tx = tx.ready().await.unwrap();
    let (resp, _) = tx
        .send_request(http::Request::get("http://web/").body(()).unwrap(), true)
        .unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    let t = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
    assert!(
        t.elapsed() >= Duration::from_millis(1300),
        "closed before the idle limit: {:?}",
        t.elapsed()
    );

    // A HEADERS frame without END_HEADERS, and no CONTINUATION ever.
    let mut s = connect(proxy.outbound).await;
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&SETTINGS).await.unwrap();
    s.write_all(&[0, 0, 1, 1, 0, 0, 0, 0, 1, 0x82])
        .await
        .unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(5))
            .await
            .is_some()
    );

    let stats = admin_json(proxy.admin, "/stats").await;
    assert!(stats["admission"]["header_timeouts"].as_u64().unwrap() >= 1);
    assert_eq!(up.count(), 1, "only the served stream reached the upstream");
    // A well-behaved HTTP/2 client is still served.
    assert_eq!(send_h2(proxy.outbound, "web", b"x").await.status, 200);
    proxy.shutdown();
}

/// An h2 client connection with the given initial stream window.
async fn h2_client(
    proxy: SocketAddr,
    window: u32,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let io = TcpStream::connect(proxy).await.unwrap();
    let (tx, conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake(io)
        .await
        .unwrap();
    (tx, tokio::spawn(conn))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_window_and_slow_reading_clients_are_cut_off_after_send_progress_ms() {
    let up = Upstream::start("up").await;
    let proxy = start_proxy(&standalone_yaml(
        &[&up],
        "timeouts: { send_progress_ms: 400 }\n",
    ));

    // HTTP/2 with a zero stream window: the response head arrives, its body never can.
    let (tx, conn) = h2_client(proxy.outbound, 0).await;
    let mut tx = tx.ready().await.unwrap();
    let req = http::Request::post("http://web/echo").body(()).unwrap();
    let (resp, mut body) = tx.send_request(req, false).unwrap();
    body.send_data(Bytes::from(vec![b'z'; 100_000]), true)
        .unwrap();
    let t = std::time::Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(5), resp).await;
    // Whether or not the head got out, the connection must end soon after the limit.
    drop(resp);
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "the zero-window connection stayed open");
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );

    // HTTP/1.1 asking for 32 MiB and reading none of it.
    let mut s = connect(proxy.outbound).await;
    let big = 32usize << 20;
    let head = format!("POST / HTTP/1.1\r\nHost: web\r\nContent-Length: {big}\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'y'; 1 << 20];
    for _ in 0..32 {
        s.write_all(&chunk).await.unwrap();
    }
    let mut timeouts = 0;
    for _ in 0..100 {
        let stats = admin_json(proxy.admin, "/stats").await;
        timeouts = stats["admission"]["send_timeouts"].as_u64().unwrap();
        if timeouts >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(timeouts >= 2, "send timeouts counted: {timeouts}");
    // The reader finds the connection closed after what was buffered.
    assert!(
        closed_within(&mut s, Duration::from_secs(10))
            .await
            .is_some()
    );
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarded_host_always_names_the_routed_target() {
    let (web, api, proxy) = two_services("").await;
    // Absolute form routes by the URI; the upstream sees that authority as Host, not the
    // client's own Host field.
    let r = exchange(
        proxy.outbound,
        b"GET http://api/abs HTTP/1.1\r\nHost: web\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("api"));
    assert_eq!(api.last_headers.lock().unwrap()["host"], "api");
    assert_eq!(web.count(), 0);

    // HTTP/2 with `:authority: api` and a `host: web` field: refused, reaches nobody.
    let (tx, _conn) = h2_client(proxy.outbound, 65_535).await;
    let mut tx = tx.ready().await.unwrap();
    let req = http::Request::get("http://api/h2")
        .header("host", "web")
        .body(())
        .unwrap();
    let (resp, _) = tx.send_request(req, true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 400);
    // The same with agreeing values is served, with Host equal to the authority.
    let req = http::Request::get("http://api/h2")
        .header("host", "api")
        .body(())
        .unwrap();
    let mut tx = tx.ready().await.unwrap();
    let (resp, _) = tx.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    assert_eq!(api.count(), 2);
    assert_eq!(web.count(), 0);

    // `Connection: host` does not strip Host before routing.
    let r = exchange(
        proxy.outbound,
        b"GET / HTTP/1.1\r\nHost: api\r\nConnection: host\r\n\r\n",
    )
    .await;
    assert_eq!((r.status, r.header("x-upstream")), (200, Some("api")));
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_fields_are_validated() {
    let (web, api, proxy) = two_services("default_service: web\n").await;
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: api\r\nHost: web\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: we b/\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web/x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web:99999\r\n\r\n",
    ] {
        let r = exchange(proxy.outbound, raw).await;
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(raw));
    }
    assert_eq!(web.count() + api.count(), 0);
    // HTTP/1.0 may omit Host: the default service takes it.
    let r = exchange(proxy.outbound, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!((r.status, r.header("x-upstream")), (200, Some("web")));
    // A port and an IPv6 literal are fine.
    let r = exchange(proxy.outbound, b"GET / HTTP/1.1\r\nHost: api:8080\r\n\r\n").await;
    assert_eq!(r.status, 200);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_faults_get_4xx_and_never_eject_endpoints() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let proxy = start_proxy(&standalone_yaml(
        &[&a, &b],
        "timeouts: { body_progress_ms: 300 }\nejection: { consecutive_failures: 2 }\n",
    ));
    // Twelve malformed chunked bodies: 400 each, and the error does not name an upstream.
    for i in 0..12 {
        let r = exchange(
            proxy.outbound,
            b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(r.status, 400, "request {i}");
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert!(
            !body.contains("127.0.0.1"),
            "the error names an address: {body}"
        );
    }
    // Slow bodies: 408 after body_progress_ms, on HTTP/1.1 and HTTP/2.
    for _ in 0..3 {
        let mut s = connect(proxy.outbound).await;
        s.write_all(b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 10\r\n\r\nabc")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let t = std::time::Instant::now();
        let r = read_response(&mut s, &mut buf, false).await;
        assert_eq!(r.status, 408);
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }
    let (tx, _conn) = h2_client(proxy.outbound, 65_535).await;
    let mut tx = tx.ready().await.unwrap();
    let req = http::Request::post("http://web/slow").body(()).unwrap();
    let (resp, mut body) = tx.send_request(req, false).unwrap();
    body.send_data(Bytes::from_static(b"part"), false).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .expect("answered within the limit")
        .unwrap();
    assert_eq!(resp.status(), 408);

    let stats = admin_json(proxy.admin, "/stats").await;
    for e in stats["services"][0]["endpoints"].as_array().unwrap() {
        assert_eq!(e["ejected"], false, "{e}");
        assert_eq!(e["window"]["errors"], 0, "{e}");
    }
    assert!(stats["admission"]["body_timeouts"].as_u64().unwrap() >= 4);
    // A healthy request still goes through.
    let c = h1_client();
    assert_eq!(send(&c, proxy.outbound, "web", &[], b"").await.status, 200);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused_and_malformed_transfer_encodings_are_not_forwarded() {
    let up = raw_upstream_recording(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false).await;
    let proxy = start_proxy(&one_upstream_yaml(up.addr, ""));
    let r = exchange(
        proxy.outbound,
        b"CONNECT internal:443 HTTP/1.1\r\nHost: internal:443\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 501);
    let r = exchange(
        proxy.outbound,
        b"POST / HTTP/1.1\r\nHost: web\r\nTransfer_Encoding: chunked\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(up.connections(), 0, "nothing reached the upstream");

    // Chunked-decoder strictness: each of these is a 400.
    for body in [
        &b"\r\n"[..],
        b"5\nhello\r\n0\r\n\r\n",
        b"5;a=\x01\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nno colon here\r\n\r\n",
    ] {
        let mut raw =
            b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(body);
        let r = exchange(proxy.outbound, &raw).await;
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(body));
    }

    // `gzip, chunked` keeps its gzip on the way upstream.
    let r = exchange(
        proxy.outbound,
        b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.received().to_ascii_lowercase();
    assert!(
        seen.contains("transfer-encoding: gzip, chunked\r\n"),
        "{seen}"
    );
    assert!(seen.contains("\r\n\r\n2\r\nzz\r\n0\r\n\r\n"), "{seen}");
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_request_body_reaches_the_upstream_as_it_arrives() {
    let up = raw_upstream_recording(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false).await;
    let proxy = start_proxy(&one_upstream_yaml(up.addr, ""));
    let mut s = connect(proxy.outbound).await;
    s.write_all(b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 100\r\n\r\nfirst-ten!")
        .await
        .unwrap();
    let mut seen = String::new();
    for _ in 0..100 {
        seen = up.received();
        if seen.ends_with("first-ten!") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen.ends_with("first-ten!"),
        "the first 10 bytes waited for more: {seen:?}"
    );
    s.write_all(&[b'.'; 90]).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut s, &mut buf, false).await.status, 200);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_interim_responses_in_the_same_read_as_the_final_one_are_parsed() {
    let up = raw_upstream_recording(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
        false,
    )
    .await;
    let proxy = start_proxy(&one_upstream_yaml(
        up.addr,
        "timeouts: { request_ms: 5000 }\n",
    ));
    let t = std::time::Instant::now();
    let r = exchange(proxy.outbound, b"GET / HTTP/1.1\r\nHost: web\r\n\r\n").await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"final"[..]));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_first_chunk_from_the_upstream_is_a_502() {
    let up = raw_upstream_recording(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nbroken\r\n",
        false,
    )
    .await;
    let proxy = start_proxy(&one_upstream_yaml(up.addr, ""));
    let r = exchange(proxy.outbound, b"GET / HTTP/1.1\r\nHost: web\r\n\r\n").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("loadshift-error"), Some("upstream"));
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_response_with_stray_body_bytes_is_not_pooled() {
    // Every answer carries 5 body bytes, even to HEAD.
    let up =
        raw_upstream_recording(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false).await;
    let proxy = start_proxy(&one_upstream_yaml(up.addr, ""));
    let mut s = connect(proxy.outbound).await;
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut s, &mut buf, true).await.status, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..3 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
            .await
            .unwrap();
        let r = read_response(&mut s, &mut buf, false).await;
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    }
    assert_eq!(up.connections(), 2, "the HEAD's connection was not reused");
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_204_never_carries_a_content_length() {
    let up = raw_upstream_recording(
        b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
        false,
    )
    .await;
    let proxy = start_proxy(&one_upstream_yaml(up.addr, ""));
    let r = exchange(proxy.outbound, b"GET / HTTP/1.1\r\nHost: web\r\n\r\n").await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None, "{r:?}");
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_whose_weights_overflow_are_refused() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let proxy = start_proxy(&standalone_yaml(&[&a, &b], ""));
    let yaml = format!(
        "version: 2\nservices:\n  web:\n    endpoint_weights: {{ \"{}\": 1.7e308, \"{}\": 1.7e308 }}\n",
        a.addr, b.addr
    );
    let plan: loadshift_core::plan::Plan = serde_yaml_ng::from_str(&yaml).unwrap();
    let err = proxy.shared.apply_plan(plan).unwrap_err().to_string();
    assert!(err.contains("endpoint_weights"), "{err}");
    assert_eq!(proxy.shared.plan().version, 0);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_listener_and_per_source() {
    let up = Upstream::start("up").await;
    let proxy = start_proxy(&standalone_yaml(
        &[&up],
        "limits: { max_connections: 3, max_connections_per_source: 2 }\n",
    ));
    // Two from 127.0.0.1, both served.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect(proxy.outbound).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_response(&mut s, &mut buf, false).await.status, 200);
        held.push(s);
    }
    // A third from the same address is closed at once.
    let mut s = connect(proxy.outbound).await;
    assert!(
        closed_within(&mut s, Duration::from_secs(3))
            .await
            .is_some()
    );
    // One from 127.0.0.2 fills the listener's cap of 3; a fourth (127.0.0.3) waits in the
    // backlog until a connection closes.
    let from = |ip: &str| {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        sock.connect(proxy.outbound)
    };
    let mut third = from("127.0.0.2").await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut third, &mut buf, false).await.status, 200);
    let mut fourth = from("127.0.0.3").await.unwrap();
    fourth
        .write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let mut b = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), fourth.read(&mut b))
            .await
            .is_err(),
        "the fourth connection was served past the cap"
    );
    drop(held.pop());
    let mut buf = Vec::new();
    assert_eq!(
        read_response(&mut fourth, &mut buf, false).await.status,
        200
    );
    let stats = admin_json(proxy.admin, "/stats").await;
    let a = &stats["admission"];
    assert_eq!(a["refused_source_cap"], 1, "{a}");
    assert!(a["accept_pauses"].as_u64().unwrap() >= 1, "{a}");
    assert_eq!(a["limits"]["max_connections"], 3);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_in_flight_cap_are_shed_with_retry_after() {
    let up = Upstream::start("up").await;
    up.set(Behaviour::Delay(Duration::from_millis(800)));
    let proxy = start_proxy(&standalone_yaml(&[&up], "overload: { max_in_flight: 2 }\n"));
    let addr = proxy.outbound;
    let slow = tokio::spawn(async move {
        let c = h1_client();
        let (a, b) = tokio::join!(
            send(&c, addr, "web", &[], b""),
            send(&c, addr, "web", &[], b"")
        );
        (a.status, b.status)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = exchange(addr, b"GET / HTTP/1.1\r\nHost: web\r\n\r\n").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("loadshift-error"), Some("overloaded"));
    // The admin listener and the admitted requests are served.
    let stats = admin_json(proxy.admin, "/stats").await;
    assert_eq!(stats["admission"]["shed_in_flight"], 1);
    assert_eq!(
        slow.await.unwrap(),
        (http::StatusCode::OK, http::StatusCode::OK)
    );
    let metrics = h1_client()
        .get(format!("http://{}/metrics", proxy.admin).parse().unwrap())
        .await
        .unwrap();
    let text = http_body_util::BodyExt::collect(metrics.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("loadshift_proxy_shed_total{reason=\"in-flight\"} 1"),
        "{text}"
    );
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_memory_threshold_new_work_is_shed_and_the_admin_listener_still_answers() {
    let up = Upstream::start("up").await;
    // 1 MiB: the process is always past it.
    let proxy = start_proxy(&standalone_yaml(&[&up], "overload: { max_memory_mb: 1 }\n"));
    let mut over = false;
    for _ in 0..40 {
        let stats = admin_json(proxy.admin, "/stats").await;
        if stats["admission"]["over_memory"] == true {
            over = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(over, "the memory threshold was never crossed");
    // A connection the listener had already taken gets its requests shed; after it the
    // listener stops accepting, and new clients wait in the backlog with no answer.
    let mut answered = 0;
    for _ in 0..2 {
        let mut s = connect(proxy.outbound).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let got = tokio::time::timeout(
            Duration::from_millis(500),
            read_response(&mut s, &mut buf, false),
        )
        .await;
        if let Ok(r) = got {
            assert_eq!(r.status, 503);
            assert_eq!(r.header("loadshift-error"), Some("overloaded"));
            answered += 1;
        }
    }
    assert!(answered <= 1, "both connections were accepted");
    let stats = admin_json(proxy.admin, "/stats").await;
    assert!(stats["admission"]["accept_pauses"].as_u64().unwrap() >= 1);
    assert_eq!(up.count(), 0);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_plan_file_is_not_applied() {
    let a = Upstream::start("a").await;
    let dir = temp_dir("empty-plan");
    let path = dir.join("plan.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 3\nservices:\n  web:\n    endpoint_weights: {{ \"{}\": 1.0 }}\n",
            a.addr
        ),
    )
    .unwrap();
    let proxy = start_proxy(&standalone_yaml(
        &[&a],
        &format!("plan_file: {}\n", path.display()),
    ));
    for _ in 0..50 {
        if proxy.shared.plan().version == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(proxy.shared.plan().version, 3);
    std::fs::write(&path, "").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        proxy.shared.plan().version,
        3,
        "the empty file replaced the plan"
    );
    assert_eq!(proxy.shared.plan().services.len(), 1);
    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(proxy.shared.plan().version, 3);
    proxy.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `loadshift proxy` on `yaml` and returns its exit code and standard error.
async fn run_proxy_binary(yaml: &str) -> (Option<i32>, String) {
    let dir = temp_dir("proxy-exit");
    let cfg = dir.join("proxy.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(bin())
            .args(["proxy", "--config"])
            .arg(&cfg)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the proxy exits by itself")
    .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_or_a_descriptor_limit_below_the_floor_exits_64() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let yaml = format!(
        "outbound: {{ listen: \"{addr}\" }}\nadmin: {{ listen: 127.0.0.1:0 }}\nservices: []\n"
    );
    let (code, err) = run_proxy_binary(&yaml).await;
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains(&addr.to_string()), "{err}");

    let yaml = "outbound: { listen: 127.0.0.1:0 }\nadmin: { listen: 127.0.0.1:0 }\nservices: []\nlimits: { min_fds: 1000000000 }\n";
    let (code, err) = run_proxy_binary(yaml).await;
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("limits.min_fds"), "{err}");

    let yaml = "outbound: { listen: 127.0.0.1:0 }\nadmin: { listen: 127.0.0.1:0 }\nservices: []\nlimits: { max_connections: 1000000000 }\n";
    let (code, err) = run_proxy_binary(yaml).await;
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("limits.max_connections"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_full_listener_a_connection_that_sent_no_request_makes_room() {
    let up = Upstream::start("up").await;
    let proxy = start_proxy(&standalone_yaml(
        &[&up],
        "workers: 1\nlimits: { max_connections: 2 }\n",
    ));
    let from = |ip: &str| {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        sock.connect(proxy.outbound)
    };
    // Two connections that never send a request fill the listener.
    let mut oldest = from("127.0.0.2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut newer = from("127.0.0.3").await.unwrap();
    // Younger than a second, neither is evicted: a new client waits.
    let mut client = from("127.0.0.4").await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let t = std::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        read_response(&mut client, &mut buf, false),
    )
    .await
    .expect("served once the oldest idle connection was a second old");
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );
    // The oldest idle connection was closed to make room; the newer one stays.
    assert!(
        closed_within(&mut oldest, Duration::from_secs(1))
            .await
            .is_some()
    );
    let mut b = [0u8; 16];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), newer.read(&mut b))
            .await
            .is_err(),
        "the newer idle connection was closed too"
    );
    let stats = admin_json(proxy.admin, "/stats").await;
    assert_eq!(stats["admission"]["evicted_before_first_request"], 1);
    proxy.shutdown();
}
