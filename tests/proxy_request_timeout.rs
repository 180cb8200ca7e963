//! The request timeout starts when the proxy has the whole request body: an upload slower than
//! `timeouts.request_ms` completes, on HTTP/1.1 and HTTP/2; a client that stalls its upload is
//! cut off by the progress limit (`body_progress_ms`, 408, its own fault); an upstream that stops
//! taking a body the client is still sending is cut off by the same limit (504
//! `upload-stalled`, the upstream's fault); once the body is whole, a slow upstream still gets
//! `request_ms` and no more.

// Helpers below panic on purpose: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    convert::Infallible,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHUNK: usize = 1024;
const CHUNKS: usize = 12;

/// An h2c POST whose body is `CHUNKS` chunks, one every `every`.
async fn h2_trickle(proxy: SocketAddr, every: Duration) -> (u16, usize) {
    let io = TokioIo::new(tokio::net::TcpStream::connect(proxy).await.unwrap());
    let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let frames = futures_util::stream::unfold(0, move |i| async move {
        if i == CHUNKS {
            return None;
        }
        tokio::time::sleep(every).await;
        Some((
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'u'; CHUNK]))),
            i + 1,
        ))
    });
    let req = Request::post("http://web/upload")
        .body(StreamBody::new(frames).boxed_unsync())
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, body.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_slower_than_the_request_timeout_completes() {
    let up = Upstream::start("up").await;
    // About 1.2 s of upload against a 300 ms request timeout.
    let proxy = start_proxy(&standalone_yaml(&[&up], "timeouts: { request_ms: 300 }\n"));
    let every = Duration::from_millis(100);

    let mut s = connect(proxy.outbound).await;
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: {}\r\n\r\n",
        CHUNK * CHUNKS
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let t = Instant::now();
    for _ in 0..CHUNKS {
        tokio::time::sleep(every).await;
        s.write_all(&[b'u'; CHUNK]).await.unwrap();
    }
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(r.status, 200, "{:?}", r.header("loadshift-error"));
    assert_eq!(
        r.body.len(),
        CHUNK * CHUNKS,
        "the upstream got the whole body"
    );
    assert!(t.elapsed() >= every * CHUNKS as u32, "{:?}", t.elapsed());

    assert_eq!(
        h2_trickle(proxy.outbound, every).await,
        (200, CHUNK * CHUNKS)
    );

    // Once the body is whole, a slow upstream still gets request_ms and no more.
    up.set(Behaviour::Delay(Duration::from_secs(3)));
    let got = send(&h1_client(), proxy.outbound, "web", &[], b"posted").await;
    assert_eq!(got.status, 504);
    assert_eq!(got.header("loadshift-error"), Some("timeout"));
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_cut_off_by_the_progress_limit_as_the_clients_fault() {
    let up = Upstream::start("up").await;
    // The request timeout is shorter than the progress limit: the stall, not it, must end the
    // request, and as the client's fault.
    let proxy = start_proxy(&standalone_yaml(
        &[&up],
        "timeouts: { request_ms: 200, body_progress_ms: 700 }\n",
    ));
    let mut s = connect(proxy.outbound).await;
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: 100\r\n\r\nsome")
        .await
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(r.status, 408);
    assert_eq!(r.header("loadshift-error"), Some("bad-request-body"));
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    let stats = admin_json(proxy.admin, "/stats").await;
    let ep = &stats["services"][0]["endpoints"][0];
    assert_eq!(ep["window"]["errors"], 0, "{ep}");
    proxy.shutdown();
}

/// An upstream that reads request heads and none of their bodies, and never answers: plain
/// HTTP/1.1, or h2c (hyper's server, whose stream window the unread body fills).
async fn upstream_that_reads_no_body(h2: bool) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if h2 {
                    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        std::future::pending::<()>().await;
                        drop(req);
                        Ok::<_, Infallible>(http::Response::new(String::new()))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                } else {
                    let mut b = [0u8; 4096];
                    let _ = s.read(&mut b).await;
                    std::future::pending::<()>().await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stops_taking_the_body_is_cut_off_by_the_progress_limit() {
    for h2 in [false, true] {
        let addr = upstream_that_reads_no_body(h2).await;
        let protocol = if h2 { "http2" } else { "http1" };
        let proxy = start_proxy(&format!(
            "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nworkers: 1\nservices:\n  - name: web\n    protocol: {protocol}\n    endpoints: [{{ addr: \"{addr}\" }}]\ntimeouts: {{ body_progress_ms: 400, drain_ms: 500 }}\n"
        ));
        // More than every buffer on the way can hold; the client writes while it waits for the
        // answer.
        let big = 96usize << 20;
        let s = connect(proxy.outbound).await;
        let (mut rd, mut wr) = s.into_split();
        let writer = tokio::spawn(async move {
            let head =
                format!("POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: {big}\r\n\r\n");
            wr.write_all(head.as_bytes()).await?;
            let chunk = vec![b'b'; 1 << 20];
            for _ in 0..96 {
                wr.write_all(&chunk).await?;
            }
            Ok::<_, std::io::Error>(wr)
        });
        let mut buf = Vec::new();
        let t = Instant::now();
        let r = loop {
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(_) = resp.parse(&buf).unwrap() {
                let code = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("loadshift-error"))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned());
                break (resp.code.unwrap(), code);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(15), rd.read(&mut chunk))
                .await
                .expect("an answer within 15 s")
                .unwrap();
            assert!(n > 0, "{protocol}: closed without an answer");
            buf.extend_from_slice(&chunk[..n]);
        };
        assert_eq!(r, (504, Some("upload-stalled".to_string())), "{protocol}");
        assert!(
            t.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
        writer.abort();
        let stats = admin_json(proxy.admin, "/stats").await;
        let ep = &stats["services"][0]["endpoints"][0];
        assert_eq!(
            ep["window"]["errors"], 1,
            "{protocol}: charged to the endpoint: {ep}"
        );
        proxy.shutdown();
    }
}
