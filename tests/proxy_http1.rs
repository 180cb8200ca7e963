//! The client-facing HTTP/1.1 connection on the wire, with raw sockets so every byte is the
//! test's: pipelining, chunked and large streamed bodies, `Expect: 100-continue`, HEAD, HTTP/1.0,
//! malformed and ambiguous heads (400 and close), a slow head (408), the connection closing
//! when the client asks, and an HTTP/1.1 upstream's fields reaching HTTP/1.1 and HTTP/2 clients
//! without its hop-by-hop ones.

// Helpers below panic on purpose: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::{net::SocketAddr, time::Duration};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn proxy_with(extra: &str) -> (Upstream, loadshift_proxy::Running) {
    let up = Upstream::start("up").await;
    let proxy = start_proxy(&standalone_yaml(&[&up], extra));
    (up, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (up, proxy) = proxy_with("").await;
    let mut s = connect(proxy.outbound).await;
    s.write_all(
        b"POST /a HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\n\r\none\
          POST /b HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\n\r\ntwo\
          GET /c HTTP/1.1\r\nHost: web\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    for want in [&b"one"[..], b"two", b""] {
        let r = read_response(&mut s, &mut buf, false).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, want);
    }
    assert_eq!(up.count(), 3);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_large_bodies_stream_through() {
    let (_up, proxy) = proxy_with("").await;
    let mut s = connect(proxy.outbound).await;
    // Chunked, split across writes with pauses, with an extension and a trailer.
    let parts: [&[u8]; 4] = [
        b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhel",
        b"lo\r\n6\r\n world\r\n",
        b"0\r\nX-Trailer: 1\r\n",
        b"\r\n",
    ];
    for p in parts {
        s.write_all(p).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world"[..]));

    // 4 MiB with a content-length, written in 64 KiB pieces on the same connection.
    let body: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let head = format!(
        "PUT /big HTTP/1.1\r\nHost: web\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for piece in body.chunks(64 << 10) {
            wr.write_all(piece).await.unwrap();
        }
        (wr, body)
    });
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let mut head_len = None;
    while head_len.is_none_or(|h| got.len() < h + (4 << 20)) {
        let n = tokio::time::timeout(Duration::from_secs(10), rd.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
        if head_len.is_none() {
            head_len = got.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
        }
    }
    let (_wr, body) = writer.await.unwrap();
    let h = head_len.unwrap();
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert_eq!(&got[h..], body.as_slice(), "echoed 4 MiB body differs");
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_head_and_http10() {
    let (_up, proxy) = proxy_with("").await;
    let mut s = connect(proxy.outbound).await;
    s.write_all(
        b"PUT / HTTP/1.1\r\nHost: web\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(r.status, 100, "the client is told to send its body");
    s.write_all(b"data").await.unwrap();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"data"[..]));

    s.write_all(b"HEAD / HTTP/1.1\r\nHost: web\r\n\r\nGET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, &mut buf, true).await;
    assert_eq!(r.status, 200);
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(r.status, 200, "the HEAD response carried no body bytes");

    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut s = connect(proxy.outbound).await;
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(r.status, 200);
    assert!(closed(&mut s).await);

    // `Connection: close` from an HTTP/1.1 client: answered with `connection: close`, closed.
    let mut s = connect(proxy.outbound).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(closed(&mut s).await);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_heads_get_4xx_and_the_connection_closes() {
    let (up, proxy) = proxy_with("timeouts: { header_read_ms: 300 }\n").await;
    let cases: [(&[u8], u16); 4] = [
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: x\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
        ),
    ];
    for (raw, status) in cases {
        let mut s = connect(proxy.outbound).await;
        s.write_all(raw).await.unwrap();
        let mut buf = Vec::new();
        let r = read_response(&mut s, &mut buf, false).await;
        assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(raw));
        assert_eq!(r.header("loadshift-error"), Some("bad-request"));
        assert!(closed(&mut s).await);
    }
    // A head that never completes: 408 after header_read_ms.
    let mut s = connect(proxy.outbound).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: w").await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(r.status, 408);
    assert!(closed(&mut s).await);
    assert_eq!(up.count(), 0, "no malformed request reached the upstream");
    // A body cut short: the upstream sees an error, the connection closes.
    let mut s = connect(proxy.outbound).await;
    s.write_all(b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    assert!(closed(&mut s).await);
    // The proxy still serves.
    let c = h1_client();
    assert_eq!(send(&c, proxy.outbound, "web", &[], b"").await.status, 200);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_close_after_client_idle_ms() {
    let (_up, proxy) = proxy_with("timeouts: { client_idle_ms: 300 }\n").await;
    let mut s = connect(proxy.outbound).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut s, &mut buf, false).await.status, 200);
    let t = std::time::Instant::now();
    assert!(closed(&mut s).await);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    proxy.shutdown();
}

fn yaml_for(addr: SocketAddr) -> String {
    format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nworkers: 1\nservices:\n  - name: web\n    endpoints: [{{ addr: \"{addr}\" }}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_close_delimited_upstream_responses_are_reframed() {
    let (chunked, _) = raw_upstream(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-u: 1\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        false,
    )
    .await;
    let proxy = start_proxy(&yaml_for(chunked));
    let c = h1_client();
    for _ in 0..3 {
        let got = send(&c, proxy.outbound, "web", &[], b"").await;
        assert_eq!(
            (got.status.as_u16(), got.body.as_ref()),
            (200, &b"hello world"[..])
        );
    }
    proxy.shutdown();

    let (until_close, conns) = raw_upstream(
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nstreamed until close",
        true,
    )
    .await;
    let proxy = start_proxy(&yaml_for(until_close));
    for _ in 0..3 {
        let got = send(&c, proxy.outbound, "web", &[], b"").await;
        assert_eq!(
            (got.status.as_u16(), got.body.as_ref()),
            (200, &b"streamed until close"[..])
        );
    }
    assert_eq!(conns.load(std::sync::atomic::Ordering::Relaxed), 3);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_closed_by_the_upstream_are_not_reused() {
    // Says keep-alive (HTTP/1.1, no `connection: close`), then closes: every pooled connection
    // is dead by the next request.
    let (addr, conns) = raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
    let proxy = start_proxy(&yaml_for(addr));
    let c = h1_client();
    for i in 0..20 {
        let got = send(&c, proxy.outbound, "web", &[], b"").await;
        assert_eq!(got.status, 200, "request {i}");
        // Let the upstream's FIN arrive before the next request.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(conns.load(std::sync::atomic::Ordering::Relaxed), 20);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upstream_heads_and_bodies_arrive_whole() {
    // A 20 KiB response head (several reads) and a 300 KiB body.
    let big: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: {}\r\n\r\n{}",
            "h".repeat(20 << 10),
            300 << 10,
            "b".repeat(300 << 10)
        )
        .into_boxed_str(),
    );
    let (addr, _) = raw_upstream(big.as_bytes(), false).await;
    let proxy = start_proxy(&yaml_for(addr));
    let c = h1_client();
    for _ in 0..2 {
        let got = send(&c, proxy.outbound, "web", &[], b"").await;
        assert_eq!(got.status.as_u16(), 200);
        assert_eq!(got.headers["x-big"].len(), 20 << 10);
        assert_eq!(got.body.len(), 300 << 10);
    }
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_fields_reach_http1_and_http2_clients_without_hop_by_hop_ones() {
    let (addr, _) = raw_upstream(
        b"HTTP/1.1 200 OK\r\nX-Up: 1\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n\
          Keep-Alive: timeout=5\r\nX-Up: 2\r\nContent-Length: 5\r\n\r\nhello",
        false,
    )
    .await;
    let yaml = yaml_for(addr).replace("    endpoints:", "    protocol: http1\n    endpoints:");
    let proxy = start_proxy(&yaml);
    let check = |got: &Got| {
        assert_eq!(got.status, 200);
        let up: Vec<&str> = got
            .headers
            .get_all("x-up")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(up, ["1", "2"]);
        for gone in ["x-secret", "keep-alive", "connection"] {
            assert!(
                !got.headers.contains_key(gone),
                "{gone} forwarded: {:?}",
                got.headers
            );
        }
        assert_eq!(got.body.as_ref(), b"hello");
    };
    let c = h1_client();
    for _ in 0..3 {
        let got = send(&c, proxy.outbound, "web", &[], b"").await;
        check(&got);
        assert_eq!(got.header("content-length"), Some("5"));
    }
    for _ in 0..3 {
        check(&send_h2(proxy.outbound, "web", b"").await);
    }
    // A HEAD response has no body but keeps the upstream's length.
    let mut s = connect(proxy.outbound).await;
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let w = read_response(&mut s, &mut buf, true).await;
    assert_eq!(w.status, 200);
    assert_eq!(w.header("content-length"), Some("5"), "{w:?}");
    assert_eq!(w.header("x-up"), Some("1"));
    proxy.shutdown();
}
