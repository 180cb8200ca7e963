//! WebSocket through the proxy (an HTTP/1.1 Upgrade, RFC 6455): messages both ways, ping / pong
//! and the close handshake through a standalone proxy and through two sidecars (outbound, then
//! inbound), over an upstream connection of its own; an idle upgraded connection closed after
//! `timeouts.upgraded_idle_ms`; a drain that lets an upgraded connection run until its deadline;
//! the requests that must not open a tunnel; an upstream that refuses the upgrade; an HTTP/2
//! upstream.

// Helpers panic on purpose: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
};
use tokio_tungstenite::{
    WebSocketStream, client_async,
    tungstenite::{Message, handshake::derive_accept_key, protocol::Role},
};

/// An upstream that answers WebSocket upgrades (echoing text and binary messages; pings are
/// answered by tungstenite) and plain HTTP/1.1 requests (200), on hyper's HTTP/1 server.
struct WsUpstream {
    addr: SocketAddr,
    /// Connections accepted.
    conns: Arc<AtomicUsize>,
    /// WebSocket sessions that have ended (the client closed, or the connection went away).
    ended: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WsUpstream {
    async fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (conns, ended) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, e) = (conns.clone(), ended.clone());
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                c.fetch_add(1, Ordering::Relaxed);
                let e = e.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let e = e.clone();
                        async move { Ok::<_, Infallible>(answer(req, e)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self {
            addr,
            conns,
            ended,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.conns.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until `n` sessions have ended.
    async fn sessions_ended(&self, n: usize) -> bool {
        for _ in 0..500 {
            if self.ended.load(Ordering::Relaxed) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

fn answer(mut req: Request<Incoming>, ended: Arc<AtomicUsize>) -> Response<Full<Bytes>> {
    let asks = req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let key = req.headers().get("sec-websocket-key").cloned();
    let (true, Some(key)) = (asks, key) else {
        return Response::new(Full::new(Bytes::from_static(b"plain")));
    };
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(io) = on.await {
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
            while let Some(Ok(m)) = ws.next().await {
                if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                    break;
                }
            }
        }
        ended.fetch_add(1, Ordering::Relaxed);
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .header("x-upstream", "ws")
        .body(Full::default())
        .unwrap()
}

type Ws = WebSocketStream<TcpStream>;

/// Opens a WebSocket to `ws://{host}/chat` through the proxy listening on `proxy`, checking the
/// `101` the client got.
async fn open(proxy: SocketAddr, host: &str) -> Ws {
    let tcp = TcpStream::connect(proxy).await.unwrap();
    let (ws, resp) = tokio::time::timeout(
        Duration::from_secs(10),
        client_async(format!("ws://{host}/chat"), tcp),
    )
    .await
    .expect("handshake within 10 s")
    .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let h = resp.headers();
    assert!(h["upgrade"].as_bytes().eq_ignore_ascii_case(b"websocket"));
    assert!(h["connection"].as_bytes().eq_ignore_ascii_case(b"upgrade"));
    assert_eq!(h["x-upstream"], "ws", "the 101's own fields are kept");
    ws
}

async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message within 10 s")
        .expect("the stream is open")
        .unwrap()
}

/// Text, a binary message larger than any buffer on the way, and a ping, each answered.
async fn echo_round(ws: &mut Ws) {
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(ws).await, Message::text("hello"));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next(ws).await, Message::binary(big));
    ws.send(Message::Ping(Bytes::from_static(b"there?")))
        .await
        .unwrap();
    assert_eq!(next(ws).await, Message::Pong(Bytes::from_static(b"there?")));
}

/// The close handshake: the client's Close is answered and the connection ends.
async fn close(mut ws: Ws) {
    ws.close(None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Message::Close(_))) => {}
            None => break,
            other => panic!("after Close: {other:?}"),
        }
    }
}

/// True when the connection under `ws` ends (however) within `limit`.
async fn ends_within(ws: &mut Ws, limit: Duration) -> bool {
    match tokio::time::timeout(limit, ws.next()).await {
        Ok(None) | Ok(Some(Err(_))) => true,
        Ok(Some(Ok(m))) => panic!("unexpected message {m:?}"),
        Err(_) => false,
    }
}

fn yaml_for(addr: SocketAddr, extra: &str) -> String {
    format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nworkers: 1\n\
         services:\n  - name: web\n    endpoints: [{{ addr: \"{addr}\" }}]\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_ping_and_close_cross_a_standalone_proxy() {
    let up = WsUpstream::start().await;
    let proxy = start_proxy(&yaml_for(up.addr, ""));
    // A plain request first leaves an idle connection in the pool.
    let c = h1_client();
    let got = send(&c, proxy.outbound, "web", &[], b"").await;
    assert_eq!(
        (got.status, got.body.as_ref()),
        (StatusCode::OK, &b"plain"[..])
    );
    assert_eq!(up.connections(), 1);

    let mut ws = open(proxy.outbound, "web").await;
    assert_eq!(
        up.connections(),
        2,
        "the upgrade went over a new connection"
    );
    echo_round(&mut ws).await;
    close(ws).await;
    assert!(up.sessions_ended(1).await, "the upstream saw the close");

    // The pooled connection is still there and serves; the tunnel's never joined the pool.
    let got = send(&c, proxy.outbound, "web", &[], b"").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(up.connections(), 2);

    // Several at once, each its own tunnel.
    let mut open_ones = Vec::new();
    for _ in 0..4 {
        open_ones.push(open(proxy.outbound, "web").await);
    }
    for ws in &mut open_ones {
        echo_round(ws).await;
    }
    for ws in open_ones {
        close(ws).await;
    }
    assert!(up.sessions_ended(5).await);
    drop(c);
    tokio::task::spawn_blocking(move || proxy.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_crosses_the_sidecar_outbound_and_inbound_paths() {
    let app = WsUpstream::start().await;
    // The callee's sidecar: its inbound side fronts the WebSocket app.
    let callee = start_proxy(&format!(
        "mode: sidecar\noutbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         inbound: {{ listen: 127.0.0.1:0, app: \"{}\", service: chat }}\nservices: []\n",
        app.addr
    ));
    let callee_inbound = callee.inbound.unwrap();
    // The caller's sidecar: its outbound side routes `chat` to the callee's inbound listener.
    let caller = start_proxy(&format!(
        "mode: sidecar\noutbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         inbound: {{ listen: 127.0.0.1:0, app: \"{}\" }}\n\
         services:\n  - name: chat\n    endpoints: [{{ addr: \"{callee_inbound}\" }}]\n",
        app.addr
    ));
    let mut ws = open(caller.outbound, "chat").await;
    echo_round(&mut ws).await;
    close(ws).await;
    assert!(app.sessions_ended(1).await);
    // The inbound side on its own, as a peer's proxy would call it.
    let mut ws = open(callee_inbound, "chat").await;
    echo_round(&mut ws).await;
    close(ws).await;
    assert!(app.sessions_ended(2).await);
    tokio::task::spawn_blocking(move || {
        caller.shutdown();
        callee.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_upgraded_connection_is_closed_after_upgraded_idle_ms() {
    let up = WsUpstream::start().await;
    let proxy = start_proxy(&yaml_for(up.addr, "timeouts: { upgraded_idle_ms: 400 }\n"));
    let mut ws = open(proxy.outbound, "web").await;
    // Traffic keeps it open past the limit.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        ws.send(Message::text("still here")).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::text("still here"));
    }
    let quiet = Instant::now();
    assert!(ends_within(&mut ws, Duration::from_secs(5)).await);
    let after = quiet.elapsed();
    assert!(
        after >= Duration::from_millis(350),
        "closed after {after:?}"
    );
    assert!(
        up.sessions_ended(1).await,
        "the upstream side is closed too"
    );
    tokio::task::spawn_blocking(move || proxy.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_lets_an_upgraded_connection_run_until_its_deadline() {
    let up = WsUpstream::start().await;
    let proxy = start_proxy(&yaml_for(up.addr, "timeouts: { drain_ms: 1500 }\n"));
    let listener = proxy.outbound;
    let mut ws = open(listener, "web").await;
    let draining = Instant::now();
    let stopped = tokio::task::spawn_blocking(move || proxy.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(listener).await.is_err(),
        "a draining proxy accepts nothing new"
    );
    echo_round(&mut ws).await;
    assert!(ends_within(&mut ws, Duration::from_secs(10)).await);
    let after = draining.elapsed();
    assert!(
        after >= Duration::from_millis(1400),
        "closed {after:?} after the drain began"
    );
    stopped.await.unwrap();
    assert!(up.sessions_ended(1).await);
}

/// An upstream that answers every request head with a `101` to WebSocket, asked for or not.
const ALWAYS_101: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_may_not_switch_never_open_a_tunnel() {
    let cases: [&[u8]; 6] = [
        // A body.
        b"GET / HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello",
        // The connection option without the field, and the field without the option.
        b"GET / HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web\r\nUpgrade: websocket\r\n\r\n",
        // HTTP/1.0, another method, another protocol.
        b"GET / HTTP/1.0\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    ];
    for raw in cases {
        let up = raw_upstream_recording(ALWAYS_101, false).await;
        let proxy = start_proxy(&yaml_for(up.addr, ""));
        let mut s = connect(proxy.outbound).await;
        s.write_all(raw).await.unwrap();
        let mut buf = Vec::new();
        let r = read_response(&mut s, &mut buf, false).await;
        let what = String::from_utf8_lossy(raw);
        assert_eq!(r.status, 502, "{what}");
        assert_eq!(r.header("loadshift-error"), Some("upstream"), "{what}");
        let seen = up.received().to_ascii_lowercase();
        assert!(!seen.contains("upgrade"), "{what} forwarded as {seen:?}");
        proxy.shutdown();
    }

    // The same upstream and a request that may switch: a tunnel, bytes pass both ways. (No
    // forwarding fields, so the head the upstream reads is compared byte for byte.)
    let up = raw_upstream_recording(ALWAYS_101, false).await;
    let proxy = start_proxy(&yaml_for(up.addr, "forwarding: { enabled: false }\n"));
    let mut s = connect(proxy.outbound).await;
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, true).await;
    assert_eq!(r.status, 101);
    s.write_all(b"any bytes at all").await.unwrap();
    for _ in 0..500 {
        if up.received().ends_with("any bytes at all") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        up.received().starts_with(
            "GET /ws HTTP/1.1\r\nhost: web\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
        ),
        "{:?}",
        up.received()
    );
    assert!(up.received().ends_with("any bytes at all"));
    drop(s);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_is_answered_as_usual_and_its_connection_not_reused() {
    let up = raw_upstream_recording(
        b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\n\r\nnope",
        false,
    )
    .await;
    let proxy = start_proxy(&yaml_for(up.addr, ""));
    let mut s = connect(proxy.outbound).await;
    // A request pipelined behind the upgrade: it is the proxy's to read as a request, never
    // bytes for a tunnel.
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\
          GET /next HTTP/1.1\r\nHost: web\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        let r = read_response(&mut s, &mut buf, false).await;
        assert_eq!((r.status, r.body.as_slice()), (426, &b"nope"[..]));
    }
    let seen = up.received();
    assert_eq!(seen.matches("GET /next").count(), 1, "{seen:?}");
    assert_eq!(
        up.connections(),
        2,
        "the upgrade's connection was not given to the next request"
    );
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_towards_an_http2_upstream_is_refused_at_once() {
    let up = WsUpstream::start().await;
    let yaml =
        yaml_for(up.addr, "").replace("  - name: web\n", "  - name: web\n    protocol: http2\n");
    let proxy = start_proxy(&yaml);
    let mut s = connect(proxy.outbound).await;
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(r.status, 501);
    assert_eq!(r.header("loadshift-error"), Some("not-implemented"));
    assert!(
        String::from_utf8_lossy(&r.body).contains("WebSocket upgrade towards an HTTP/2 upstream"),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(up.connections(), 0);
    proxy.shutdown();
}
