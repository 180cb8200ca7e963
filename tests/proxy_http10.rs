//! HTTP/1.0 clients on the wire: a client that asks for `keep-alive` is told `connection:
//! keep-alive` while its connection stays open, and `connection: close` when it does not (a
//! response of unknown length is delimited by the close); no `100 Continue` ever reaches one
//! (RFC 9110 §15.2); and ApacheBench's `ab -k`, an HTTP/1.0 keep-alive client nobody here wrote,
//! completes every request over kept-alive connections.

// Helpers panic on purpose: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_keep_alive_is_answered_with_keep_alive_while_the_connection_stays_open() {
    let up = Upstream::start("up").await;
    let proxy = start_proxy(&standalone_yaml(&[&up], ""));
    let mut s = connect(proxy.outbound).await;
    let mut buf = Vec::new();
    for body in [&b"one"[..], b"two", b"three"] {
        let head = format!(
            "POST / HTTP/1.0\r\nHost: web\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let r = read_response(&mut s, &mut buf, false).await;
        assert_eq!((r.status, r.body.as_slice()), (200, body));
        assert_eq!(r.header("connection"), Some("keep-alive"), "{r:?}");
        assert_eq!(r.header("content-length"), Some(&*body.len().to_string()));
    }
    // Without keep-alive: told so, and closed.
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(closed(&mut s).await);
    // HTTP/1.1 needs no `keep-alive` to stay open, and is not told one.
    let mut s = connect(proxy.outbound).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!((r.status, r.header("connection")), (200, None));
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_of_unknown_length_to_http10_is_delimited_by_the_close() {
    // Chunked from the upstream: no length to announce to an HTTP/1.0 client.
    let (addr, _) = raw_upstream(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        false,
    )
    .await;
    let proxy = start_proxy(&format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         services:\n  - name: web\n    endpoints: [{{ addr: \"{addr}\" }}]\n"
    ));
    let mut s = connect(proxy.outbound).await;
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the proxy closes after the body")
        .unwrap();
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(!head.contains("keep-alive"), "{head}");
    assert!(!head.contains("transfer-encoding") && !head.contains("content-length"));
    assert_eq!(body, "hello world");
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_clients_are_sent_no_100_continue() {
    let up = Upstream::start("up").await;
    let proxy = start_proxy(&standalone_yaml(&[&up], ""));
    let mut s = connect(proxy.outbound).await;
    s.write_all(
        b"PUT / HTTP/1.0\r\nHost: web\r\nConnection: keep-alive\r\nExpect: 100-continue\r\n\
          Content-Length: 4\r\n\r\n",
    )
    .await
    .unwrap();
    // An HTTP/1.1 client would have its 100 by now.
    let mut early = [0u8; 64];
    let waited = tokio::time::timeout(Duration::from_millis(500), s.read(&mut early)).await;
    assert!(waited.is_err(), "the proxy sent {:?}", waited);
    s.write_all(b"data").await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"data"[..]));
    assert!(
        up.last_headers.lock().unwrap().get("expect").is_none(),
        "the expectation is not forwarded"
    );
    proxy.shutdown();
}

/// `Complete requests:` and the like from ab's report.
fn ab_field(report: &str, name: &str) -> Option<u64> {
    report
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache_bench_keep_alive_completes_every_request() {
    if !std::path::Path::new("/usr/bin/ab").exists() {
        eprintln!("skipped: /usr/bin/ab is not installed (Debian's apache2-utils)");
        return;
    }
    let up = Upstream::start("up").await;
    // ab sends `Host: 127.0.0.1:PORT`: the default service takes it.
    let proxy = start_proxy(&standalone_yaml(&[&up], "default_service: web\n"));
    let out = tokio::process::Command::new("/usr/bin/ab")
        .args(["-k", "-n", "200", "-c", "4", "-s", "10"])
        .arg(format!("http://{}/", proxy.outbound))
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    for line in report.lines().filter(|l| {
        l.starts_with("Complete requests:")
            || l.starts_with("Failed requests:")
            || l.starts_with("Keep-Alive requests:")
            || l.starts_with("Requests per second:")
    }) {
        eprintln!("ab -k: {line}");
    }
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ab_field(&report, "Complete requests:"),
        Some(200),
        "{report}"
    );
    assert_eq!(ab_field(&report, "Failed requests:"), Some(0), "{report}");
    assert_eq!(
        ab_field(&report, "Keep-Alive requests:"),
        Some(200),
        "{report}"
    );
    assert_eq!(up.count(), 200);
    proxy.shutdown();
}
