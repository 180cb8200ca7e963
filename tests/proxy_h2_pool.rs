//! HTTP/2 upstream connections: a burst of concurrent requests to an upstream the proxy has no
//! connection to (a first burst, or the first after the upstream restarted) shares one new
//! connection instead of opening one per request.
// Test set-up: a failed step should fail the test on the spot.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use common::start_proxy;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// An h2c server on `listener` answering every request after 20 ms (so a burst overlaps),
/// counting the connections it accepts.
fn serve_h2(listener: TcpListener, accepted: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            conns.spawn(async move {
                let svc = service_fn(|_req: Request<Incoming>| async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// `n` concurrent h2 requests to `web` over one client connection to the proxy; their statuses.
async fn burst(proxy: SocketAddr, n: usize) -> Vec<u16> {
    let io = TokioIo::new(tokio::net::TcpStream::connect(proxy).await.unwrap());
    let (tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..n {
        let mut tx = tx.clone();
        calls.spawn(async move {
            let req = Request::get("http://web/")
                .body(Full::new(Bytes::new()))
                .unwrap();
            match tx.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let _ = resp.into_body().collect().await;
                    status
                }
                Err(_) => 0,
            }
        });
    }
    let mut statuses = Vec::new();
    while let Some(s) = calls.join_next().await {
        statuses.push(s.unwrap());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_a_new_or_restarted_h2_upstream_opens_one_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first = Arc::new(AtomicUsize::new(0));
    let server = serve_h2(listener, first.clone());
    let yaml = format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         identity: {{ pod: test-proxy }}\nservices:\n  - name: web\n    protocol: http2\n    \
         endpoints:\n      - {{ addr: \"{addr}\", host: h0, zone: z0, container: a }}\n"
    );
    let proxy = start_proxy(&yaml);

    let statuses = burst(proxy.outbound, 200).await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(
        first.load(Ordering::SeqCst),
        1,
        "connections for the first burst"
    );

    // The upstream restarts on the same address: the next burst shares one new connection too.
    server.abort();
    let _ = server.await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let second = Arc::new(AtomicUsize::new(0));
    let _server = serve_h2(listener, second.clone());
    // Requests that meet the dead connection fail over or fail; none may open a storm.
    let mut ok = 0;
    for _ in 0..3 {
        ok += burst(proxy.outbound, 200)
            .await
            .iter()
            .filter(|&&s| s == 200)
            .count();
    }
    assert!(ok >= 400, "{ok} of 600 succeeded after the restart");
    assert_eq!(
        second.load(Ordering::SeqCst),
        1,
        "connections after the restart"
    );
    proxy.shutdown();
}

/// `protocol: auto` with an HTTP/2 caller and an upstream that speaks only HTTP/1.1 (the common
/// sidecar case: an h2 client, an HTTP/1.1 app): the proxy probes the endpoint once, finds no
/// HTTP/2, and sends the request as HTTP/1.1 instead of answering 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_sends_http1_to_an_upstream_without_http2() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = accepted.clone();
    let _server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let v = format!("{:?}", req.version());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(v))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let yaml = format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         identity: {{ pod: test-proxy }}\nservices:\n  - name: web\n    protocol: auto\n    \
         endpoints:\n      - {{ addr: \"{addr}\", host: h0, zone: z0, container: a }}\n"
    );
    let proxy = start_proxy(&yaml);
    for _ in 0..3 {
        let got = common::send_h2(proxy.outbound, "web", b"").await;
        assert_eq!(got.status, 200, "{:?}", got.body);
        assert_eq!(&got.body[..], b"HTTP/1.1");
    }
    // One probe connection, then the pooled HTTP/1.1 connection(s); no probe per request.
    let n = accepted.load(Ordering::SeqCst);
    assert!((2..=3).contains(&n), "{n} connections");
    proxy.shutdown();
}
