//! WebSocket over HTTP/2 through the proxy (RFC 8441, an extended CONNECT with `:protocol =
//! websocket`), with the `h2` crate as the client and an HTTP/1.1 WebSocket upstream:
//! messages both ways, ping / pong and the close handshake through a standalone proxy and
//! through two sidecars, several tunnels on one connection, the handshake the upstream reads,
//! an idle tunnel closed after `timeouts.upgraded_idle_ms`, a drain that lets a tunnel run until
//! its deadline, upstream answers that are not a switch, the CONNECTs that stay refused, the
//! connection slot a further tunnel takes, and Debian's Python `websockets` as the upstream.

// Helpers panic on purpose: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use h2::{RecvStream, SendStream, client::SendRequest};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader, ReadBuf},
    net::{TcpListener, TcpStream},
    process::{Child, Command},
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message,
        handshake::derive_accept_key,
        protocol::{CloseFrame, Role, frame::coding::CloseCode},
    },
};

/// What an upstream read of one request: method, target and fields.
type Head = (Method, String, HeaderMap);

/// An HTTP/1.1 upstream that answers WebSocket upgrades (echoing text and binary messages;
/// pings are answered by tungstenite; the first subprotocol offered is chosen, the extensions
/// offered are echoed) and plain requests (200), on hyper's HTTP/1 server. Keeps every head.
struct WsUpstream {
    addr: SocketAddr,
    /// WebSocket sessions that have ended (the client closed, or the connection went away).
    ended: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<Head>>>,
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
        let ended = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (e, h) = (ended.clone(), heads.clone());
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let (e, h) = (e.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        h.lock().unwrap().push((
                            req.method().clone(),
                            req.uri().to_string(),
                            req.headers().clone(),
                        ));
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
            ended,
            heads,
            task,
        }
    }

    fn last_head(&self) -> Head {
        self.heads.lock().unwrap().last().cloned().unwrap()
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
    let h = req.headers();
    let asks = h
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let (true, Some(key)) = (asks, h.get("sec-websocket-key").cloned()) else {
        return Response::new(Full::new(Bytes::from_static(b"plain")));
    };
    let protocol = h
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|p| p.trim().to_string());
    let extensions = h.get("sec-websocket-extensions").cloned();
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
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .header("x-upstream", "ws");
    if let Some(p) = protocol {
        resp = resp.header("sec-websocket-protocol", p);
    }
    if let Some(e) = extensions {
        resp = resp.header("sec-websocket-extensions", e);
    }
    resp.body(Full::default()).unwrap()
}

/// An HTTP/2 stream as a byte stream, for tungstenite: DATA frames in, DATA frames out within
/// the peer's window, END_STREAM on shutdown.
struct H2Io {
    send: SendStream<Bytes>,
    recv: RecvStream,
    buf: Bytes,
    shut: bool,
}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.buf.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                Some(Ok(d)) => {
                    let _ = self.recv.flow_control().release_capacity(d.len());
                    self.buf = d;
                }
            }
        }
        let n = self.buf.len().min(out.remaining());
        let chunk = self.buf.split_to(n);
        out.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        loop {
            let n = self.send.capacity().min(buf.len());
            if n > 0 {
                let data = Bytes::copy_from_slice(&buf[..n]);
                self.send.send_data(data, false).map_err(io::Error::other)?;
                return Poll::Ready(Ok(n));
            }
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shut {
            self.shut = true;
            self.send
                .send_data(Bytes::new(), true)
                .map_err(io::Error::other)?;
        }
        Poll::Ready(Ok(()))
    }
}

type Ws = WebSocketStream<H2Io>;

/// An HTTP/2 connection to `proxy`, once the proxy's SETTINGS have allowed extended CONNECT
/// (RFC 8441 §3: a client may not use it before).
async fn h2_connect(proxy: SocketAddr) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(proxy).await.unwrap();
    let (tx, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let tx = tx.ready().await.unwrap();
    for _ in 0..500 {
        if tx.is_extended_connect_protocol_enabled() {
            return tx;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the proxy never announced SETTINGS_ENABLE_CONNECT_PROTOCOL");
}

/// A CONNECT to `http://{authority}/chat` with `protocol` as `:protocol` (none: a plain
/// CONNECT), offering subprotocols and an extension: the response and the stream.
async fn connect(
    tx: &SendRequest<Bytes>,
    authority: &str,
    protocol: Option<&'static str>,
) -> (http::response::Parts, H2Io) {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{authority}/chat"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "chat, superchat")
        .header("sec-websocket-extensions", "x-test-ext")
        .header("origin", "http://example.test")
        .body(())
        .unwrap();
    if let Some(p) = protocol {
        req.extensions_mut()
            .insert(h2::ext::Protocol::from_static(p));
    }
    let mut tx = tx.clone().ready().await.unwrap();
    let (resp, send) = tx.send_request(req, false).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let (parts, recv) = resp.into_parts();
    let io = H2Io {
        send,
        recv,
        buf: Bytes::new(),
        shut: false,
    };
    (parts, io)
}

/// Opens a WebSocket through the proxy over `tx`, checking the `200` the client got.
async fn open(tx: &SendRequest<Bytes>, authority: &str) -> Ws {
    let (parts, io) = connect(tx, authority, Some("websocket")).await;
    assert_eq!(parts.status, StatusCode::OK);
    let h = &parts.headers;
    assert_eq!(h["sec-websocket-protocol"], "chat", "the upstream's choice");
    assert_eq!(h["sec-websocket-extensions"], "x-test-ext");
    assert_eq!(h["x-upstream"], "ws", "the 101's own fields are kept");
    for gone in [
        "sec-websocket-accept",
        "upgrade",
        "connection",
        "content-length",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the client: {h:?}");
    }
    WebSocketStream::from_raw_socket(io, Role::Client, None).await
}

/// A request on the same connection that is not a CONNECT: its status and body.
async fn get(tx: &SendRequest<Bytes>, authority: &str) -> (StatusCode, Bytes) {
    let req = Request::get(format!("http://{authority}/plain"))
        .body(())
        .unwrap();
    let mut tx = tx.clone().ready().await.unwrap();
    let (resp, _) = tx.send_request(req, true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status();
    (status, body(resp.into_body()).await)
}

async fn body(mut recv: RecvStream) -> Bytes {
    let mut out = Vec::new();
    while let Some(d) = recv.data().await {
        let d = d.unwrap();
        let _ = recv.flow_control().release_capacity(d.len());
        out.extend_from_slice(&d);
    }
    out.into()
}

async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message within 10 s")
        .expect("the stream is open")
        .unwrap()
}

/// Text, a binary message larger than any window or buffer on the way, and a ping, each
/// answered.
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

/// The close handshake: the client's Close (1000) is answered and the stream ends.
async fn close(mut ws: Ws) {
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    ws.close(Some(normal)).await.unwrap();
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

/// True when the stream under `ws` ends (however) within `limit`.
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

/// The value of one sample line of the proxy's `/metrics`.
async fn metric(admin: SocketAddr, sample: &str) -> f64 {
    let resp = h1_client()
        .get(format!("http://{admin}/metrics").parse().unwrap())
        .await
        .unwrap();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{sample} not in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_http2_crosses_a_standalone_proxy() {
    let up = WsUpstream::start().await;
    let proxy = start_proxy(&yaml_for(up.addr, ""));
    let tx = h2_connect(proxy.outbound).await;
    let mut ws = open(&tx, "web").await;

    // What the upstream read: the HTTP/1.1 upgrade the CONNECT stands for.
    let (method, target, h) = up.last_head();
    assert_eq!((method, target.as_str()), (Method::GET, "/chat"));
    assert_eq!(h["host"], "web");
    assert_eq!(h["connection"], "upgrade");
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["sec-websocket-version"], "13");
    assert_eq!(h["sec-websocket-protocol"], "chat, superchat");
    assert_eq!(h["sec-websocket-extensions"], "x-test-ext");
    assert_eq!(h["origin"], "http://example.test");
    assert_eq!(
        h["sec-websocket-key"].len(),
        24,
        "16 bytes in base64: {:?}",
        h["sec-websocket-key"]
    );
    assert!(h.get("content-length").is_none() && h.get("transfer-encoding").is_none());

    echo_round(&mut ws).await;

    // More tunnels on the same connection, and plain requests beside them.
    let mut more = Vec::new();
    for _ in 0..3 {
        more.push(open(&tx, "web").await);
    }
    assert_eq!(
        get(&tx, "web").await,
        (StatusCode::OK, Bytes::from("plain"))
    );
    let keys: std::collections::HashSet<_> = up
        .heads
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, _, h)| h.get("sec-websocket-key").cloned())
        .collect();
    assert_eq!(keys.len(), 4, "a new key per handshake");
    for ws in &mut more {
        echo_round(ws).await;
    }
    close(ws).await;
    for ws in more {
        close(ws).await;
    }
    assert!(up.sessions_ended(4).await, "the upstream saw every close");
    assert_eq!(get(&tx, "web").await.0, StatusCode::OK);
    assert!(
        metric(
            proxy.admin,
            "loadshift_proxy_upgraded_connections_ended_total{end=\"closed\"}"
        )
        .await
            >= 4.0
    );
    drop(tx);
    tokio::task::spawn_blocking(move || proxy.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_http2_crosses_the_sidecar_outbound_and_inbound_paths() {
    let app = WsUpstream::start().await;
    // The callee's sidecar: its inbound side fronts the WebSocket app.
    let callee = start_proxy(&format!(
        "mode: sidecar\noutbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         inbound: {{ listen: 127.0.0.1:0, app: \"{}\", service: chat }}\nservices: []\n",
        app.addr
    ));
    let callee_inbound = callee.inbound.unwrap();
    // The caller's sidecar: its outbound side routes `chat` to the callee's inbound listener
    // (over HTTP/1.1: the upgrade the CONNECT became).
    let caller = start_proxy(&format!(
        "mode: sidecar\noutbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         inbound: {{ listen: 127.0.0.1:0, app: \"{}\" }}\n\
         services:\n  - name: chat\n    endpoints: [{{ addr: \"{callee_inbound}\" }}]\n",
        app.addr
    ));
    let tx = h2_connect(caller.outbound).await;
    let mut ws = open(&tx, "chat").await;
    echo_round(&mut ws).await;
    close(ws).await;
    assert!(app.sessions_ended(1).await);
    // The inbound side on its own, as a peer's proxy would call it.
    let tx = h2_connect(callee_inbound).await;
    let mut ws = open(&tx, "chat").await;
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
async fn an_idle_http2_websocket_is_closed_after_upgraded_idle_ms() {
    let up = WsUpstream::start().await;
    let proxy = start_proxy(&yaml_for(up.addr, "timeouts: { upgraded_idle_ms: 400 }\n"));
    let tx = h2_connect(proxy.outbound).await;
    let mut ws = open(&tx, "web").await;
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
    assert!(
        metric(
            proxy.admin,
            "loadshift_proxy_upgraded_connections_ended_total{end=\"idle\"}"
        )
        .await
            >= 1.0
    );
    // Only the stream ended: the connection serves on.
    assert_eq!(get(&tx, "web").await.0, StatusCode::OK);
    drop(tx);
    tokio::task::spawn_blocking(move || proxy.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_lets_an_http2_websocket_run_until_its_deadline() {
    let up = WsUpstream::start().await;
    let proxy = start_proxy(&yaml_for(
        up.addr,
        "timeouts: { drain_ms: 2500, header_read_ms: 500 }\n",
    ));
    let listener = proxy.outbound;
    let tx = h2_connect(listener).await;
    let mut ws = open(&tx, "web").await;
    let draining = Instant::now();
    let stopped = tokio::task::spawn_blocking(move || proxy.shutdown());
    // Past the head-read limit other streams get to finish in: the tunnel still works.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        TcpStream::connect(listener).await.is_err(),
        "a draining proxy accepts nothing new"
    );
    echo_round(&mut ws).await;
    assert!(ends_within(&mut ws, Duration::from_secs(10)).await);
    let after = draining.elapsed();
    assert!(
        after >= Duration::from_millis(2400),
        "closed {after:?} after the drain began"
    );
    stopped.await.unwrap();
    assert!(up.sessions_ended(1).await);
}

/// Upstream answers that are not a switch: passed on as they are, or a 502 when the client would
/// read them as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answer_that_is_not_a_switch_never_opens_a_tunnel() {
    let refuses = raw_upstream_recording(
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\nno way",
        false,
    )
    .await;
    let ok = raw_upstream_recording(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", false).await;
    let no_accept = raw_upstream_recording(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        false,
    )
    .await;
    let wrong_accept = raw_upstream_recording(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        false,
    )
    .await;
    // One service per upstream: `:authority` picks it. No forwarding fields, so the head the
    // upstream reads is exactly the upgrade.
    let proxy = start_proxy(&format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nworkers: 1\n\
         forwarding: {{ enabled: false }}\nservices:\n\
         \x20 - {{ name: refuses, endpoints: [{{ addr: \"{}\" }}] }}\n\
         \x20 - {{ name: ok, endpoints: [{{ addr: \"{}\" }}] }}\n\
         \x20 - {{ name: no-accept, endpoints: [{{ addr: \"{}\" }}] }}\n\
         \x20 - {{ name: wrong-accept, endpoints: [{{ addr: \"{}\" }}] }}\n",
        refuses.addr, ok.addr, no_accept.addr, wrong_accept.addr
    ));
    let tx = h2_connect(proxy.outbound).await;

    let (parts, io) = connect(&tx, "refuses", Some("websocket")).await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN, "as the upstream said");
    assert_eq!(body(io.recv).await, "no way");
    let seen = refuses.received();
    assert!(seen.starts_with("GET /chat HTTP/1.1\r\n"), "{seen:?}");
    for line in [
        "\r\nhost: refuses\r\n",
        "\r\nsec-websocket-version: 13\r\n",
        "\r\nsec-websocket-protocol: chat, superchat\r\n",
        "\r\nsec-websocket-key: ",
        "\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    ] {
        assert!(seen.contains(line), "{line:?} not in {seen:?}");
    }
    assert!(!seen.contains("CONNECT") && !seen.contains(":protocol"));

    for (authority, what) in [
        ("ok", "a 200 to an upgrade"),
        ("no-accept", "a 101 without Sec-WebSocket-Accept"),
        ("wrong-accept", "a 101 answering another key"),
    ] {
        let (parts, io) = connect(&tx, authority, Some("websocket")).await;
        assert_eq!(parts.status, StatusCode::BAD_GATEWAY, "{what}");
        assert_eq!(parts.headers["loadshift-error"], "upstream", "{what}");
        let b = body(io.recv).await;
        assert!(!b.is_empty(), "{what}: a reason");
    }
    // The connection carries on.
    assert_eq!(get(&tx, "ok").await, (StatusCode::OK, Bytes::from("hi")));
    drop(tx);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_connect_other_protocols_and_http2_upstreams_are_refused() {
    let up = WsUpstream::start().await;
    let yaml = yaml_for(up.addr, "").replace(
        "services:\n",
        &format!(
            "services:\n  - name: h2only\n    protocol: http2\n    endpoints: [{{ addr: \"{}\" }}]\n",
            up.addr
        ),
    );
    let proxy = start_proxy(&yaml);
    let tx = h2_connect(proxy.outbound).await;
    for (authority, protocol, says) in [
        ("web", None, "CONNECT is not supported"),
        (
            "web",
            Some("connect-udp"),
            "an extended CONNECT for a protocol other than websocket is not supported",
        ),
        (
            "h2only",
            Some("websocket"),
            "a WebSocket upgrade towards an HTTP/2 upstream is not supported",
        ),
    ] {
        let (parts, io) = connect(&tx, authority, protocol).await;
        assert_eq!(parts.status, StatusCode::NOT_IMPLEMENTED, "{protocol:?}");
        assert_eq!(parts.headers["loadshift-error"], "not-implemented");
        let b = body(io.recv).await;
        assert_eq!(String::from_utf8_lossy(&b).trim(), says);
    }
    assert!(
        up.heads.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );
    assert_eq!(get(&tx, "web").await.0, StatusCode::OK);
    drop(tx);
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_further_tunnel_on_a_connection_takes_a_connection_slot() {
    let up = WsUpstream::start().await;
    let proxy = start_proxy(&yaml_for(
        up.addr,
        "limits: { max_connections_per_source: 2 }\n",
    ));
    let tx = h2_connect(proxy.outbound).await;
    // The first uses the connection's own budget, the second the source's other slot.
    let first = open(&tx, "web").await;
    let mut second = open(&tx, "web").await;
    let (parts, io) = connect(&tx, "web", Some("websocket")).await;
    assert_eq!(parts.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(parts.headers["loadshift-error"], "overloaded");
    assert!(parts.headers.get("retry-after").is_some());
    drop(io);
    // The slot comes back when a tunnel ends.
    close(first).await;
    assert!(up.sessions_ended(1).await);
    let mut third = None;
    for _ in 0..100 {
        let (parts, io) = connect(&tx, "web", Some("websocket")).await;
        if parts.status == StatusCode::OK {
            third = Some(WebSocketStream::from_raw_socket(io, Role::Client, None).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut third = third.expect("a tunnel once one has ended");
    echo_round(&mut second).await;
    echo_round(&mut third).await;
    drop(tx);
    tokio::task::spawn_blocking(move || proxy.shutdown())
        .await
        .unwrap();
}

const PYTHON: &str = "/usr/bin/python3";

/// Debian's Python `websockets` (no HTTP/2 of its own) as the upstream: an echo server that
/// checks the handshake the proxy makes up; prints its port once listening.
const PYTHON_SERVER: &str = r#"
import asyncio, websockets

async def echo(ws):
    async for m in ws:
        await ws.send(m)

async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, subprotocols=["chat"], max_size=None) as s:
        print(s.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
"#;

async fn python_server() -> Option<(Child, SocketAddr)> {
    let ok = std::process::Command::new(PYTHON)
        .args(["-c", "import websockets"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "skipped: {PYTHON} -c 'import websockets' failed (Debian's python3-websockets is not installed)"
        );
        return None;
    }
    let mut child = Command::new(PYTHON)
        .args(["-c", PYTHON_SERVER])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the server announces its port")
        .unwrap()
        .expect("a port line");
    Some((child, format!("127.0.0.1:{}", port.trim()).parse().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_websockets_server_talks_to_an_http2_client() {
    let Some((_server, addr)) = python_server().await else {
        return;
    };
    let proxy = start_proxy(&yaml_for(addr, ""));
    let tx = h2_connect(proxy.outbound).await;
    for _ in 0..3 {
        let (parts, io) = connect(&tx, "web", Some("websocket")).await;
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(parts.headers["sec-websocket-protocol"], "chat");
        let mut ws = WebSocketStream::from_raw_socket(io, Role::Client, None).await;
        echo_round(&mut ws).await;
        close(ws).await;
    }
    drop(tx);
    tokio::task::spawn_blocking(move || proxy.shutdown())
        .await
        .unwrap();
}
