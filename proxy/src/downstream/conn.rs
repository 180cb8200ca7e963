//! One client connection: read a head, run the request path, stream the request body in and the
//! response out, repeat while keep-alive holds. Between requests the connection owns no buffer.
//! A `101` to a WebSocket upgrade turns the connection into a tunnel ([`super::tunnel`]); on
//! HTTP/2, a stream's extended CONNECT for WebSocket turns that stream into one
//! ([`super::connect`]). A TLS connection comes here once its handshake is done
//! ([`super::tls`]); everything is generic over the stream ([`ClientIo`]).

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    io,
    pin::Pin,
    rc::Rc,
    task::Poll,
    time::Duration,
};

use bytes::{Buf, BytesMut};
use futures_util::{
    FutureExt,
    future::{Either, join, select},
};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    sync::{Notify, mpsc, watch},
    time::Instant,
};

use super::{
    connect::{self, Connect},
    io::{ClientIo, Rewind, error_response},
    probation::Ticket,
    tunnel,
};
use crate::{
    admission::{Admission, ClientTimeout, ConnectionGuard},
    deadline::Timer,
    error::ProxyError,
    forwarding::Secure,
    h1::{
        chunked::{self, Decoder, Step},
        framing::{Framing, push_field},
        request::{self, Head, HeadError},
        response::{self, Persist},
    },
    reply::Answer,
    request::{ClientAddr, RespBody, Worker, handle},
    side::Side,
    spare,
    upstream::body::{BodyError, ClientBodyError, ReqBody},
    upstream::{LocalExec, Upgraded},
};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes asked of the socket per read while a body is in progress.
const READ_CHUNK: usize = 16 * 1024;
/// Room made for the rest of a head that arrived in parts (doubling with what is held), so a
/// connection trickling its head a line at a time holds about a kilobyte, not a read chunk.
const HEAD_CHUNK: usize = 1024;
/// Response bytes gathered before a write; larger body chunks are written as they come.
const WRITE_BATCH: usize = 16 * 1024;

/// Client-side timeouts, for HTTP/1.1 and HTTP/2 alike.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From a head's first byte to its end; and from accepting a connection to its first
    /// request head (HTTP/1.1) or first stream (HTTP/2): a connection that asks for nothing is
    /// not kept for the idle limit.
    pub header_read: Duration,
    /// A keep-alive connection with no request in progress (an HTTP/2 one with no open stream,
    /// from the preface on) is closed after this long; `None` keeps it open.
    pub idle: Option<Duration>,
    /// A request body that delivers no byte for this long fails as the client's (408).
    pub body_progress: Duration,
    /// A response write that makes no progress for this long (a client that stopped reading)
    /// closes the connection.
    pub send_progress: Duration,
    /// An upgraded connection on which no byte moves either way for this long is closed.
    pub upgraded_idle: Duration,
}

/// Who is at the other end of a client connection, learnt once per connection and put on each
/// of its requests.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: ClientAddr,
    /// Over TLS: `https`, and the client certificate's identity if one was verified.
    pub tls: Option<Secure>,
}

impl Peer {
    /// `req` with this peer's marks. By value, so a caller can build the request inside the
    /// call: a request kept in a local would take room of its own in the caller's future.
    fn mark<B>(&self, mut req: Request<B>) -> Request<B> {
        req.extensions_mut().insert(self.addr);
        if let Some(s) = &self.tls {
            req.extensions_mut().insert(s.clone());
        }
        req
    }
}

/// Serves one accepted connection until it closes, fails, or the worker drains.
/// Until its first request the connection is on probation (`ticket`): at a full listener it
/// may be evicted to make room. Its first request head (HTTP/2: its first stream) is due by
/// `first_by`, the accept plus `header_read` (a TLS handshake spends from the same limit).
// The connection's parts, each used on its own; a struct would only be taken apart again.
#[allow(clippy::too_many_arguments)]
pub async fn serve<S: ClientIo>(
    mut stream: S,
    peer: Peer,
    first_by: Instant,
    side: Side,
    w: Rc<Worker>,
    limits: Limits,
    ticket: Ticket,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut carry = BytesMut::new();
    let mut timer = w.deadlines.timer();
    // The first bytes say which protocol: the HTTP/2 preface, or anything else as HTTP/1.1.
    loop {
        let n = carry.len().min(PREFACE.len());
        if carry[..n] != PREFACE[..n] {
            break;
        }
        if n == PREFACE.len() {
            let io = Rewind {
                prefix: carry.freeze(),
                inner: stream,
            };
            // Boxed: an idle HTTP/1.1 connection should not carry an HTTP/2 one's state.
            drop(timer);
            return Box::pin(serve_h2(
                io, peer, side, w, limits, first_by, ticket, shutdown,
            ))
            .await;
        }
        // The preface (or the first head), however slowly its bytes trickle in, must be complete
        // within the head-read limit of the accept.
        carry.reserve(PREFACE.len());
        let read = stream.read_buf(&mut carry);
        let got = tokio::select! {
            r = timer.bound(Some(first_by), read) => r,
            _ = shutdown.wait_for(|&s| s) => return,
            () = ticket.evicted() => return,
        };
        match got {
            None => {
                w.shared.admission.timed_out(ClientTimeout::Header);
                return;
            }
            Some(Ok(0)) | Some(Err(_)) => return,
            Some(Ok(_)) => {}
        }
    }
    let first = First {
        by: first_by,
        ticket,
    };
    serve_h1(
        stream, carry, &peer, &mut timer, side, w, limits, first, shutdown,
    )
    .await;
}

/// The open streams of one HTTP/2 connection: since when it has had none, and which of them
/// wait for the client to take response data.
struct Streams {
    open: Cell<usize>,
    /// Whether any stream was ever opened: until one is, the first-request limit applies.
    served: Cell<bool>,
    idle_since: Cell<Instant>,
    /// Woken when the first stream opens or the last one closes.
    changed: Notify,
    /// Counts send-progress checks; a stream's stamp is the count when it last handed hyper data.
    epoch: Cell<u64>,
    slots: RefCell<Slots>,
    /// WebSockets (RFC 8441), from their request to the end of their tunnel.
    tunnels: Cell<usize>,
    /// Whether one of them has the upstream descriptor the connection is budgeted.
    budgeted_tunnel: Cell<bool>,
}

#[derive(Default)]
struct Slots {
    /// Per stream: `Some(epoch)` from when its response body handed hyper a frame until hyper
    /// asks for the next one (hyper asks only once the frame fits the client's window).
    handed: Vec<Option<u64>>,
    free: Vec<usize>,
}

impl Streams {
    /// Advances the check count; true when some stream has waited a whole check interval
    /// (two of them, since a stamp may be up to one interval old when taken) for the client.
    fn stalled(&self) -> bool {
        let now = self.epoch.get() + 1;
        self.epoch.set(now);
        self.slots
            .borrow()
            .handed
            .iter()
            .any(|h| h.is_some_and(|e| e + 3 <= now))
    }
}

/// One open stream; dropped when its response body is done or the stream is abandoned.
struct StreamGuard {
    streams: Rc<Streams>,
    slot: usize,
}

impl StreamGuard {
    fn open(s: &Rc<Streams>) -> Self {
        let open = s.open.get() + 1;
        s.open.set(open);
        s.served.set(true);
        if open == 1 {
            s.changed.notify_one();
        }
        let mut slots = s.slots.borrow_mut();
        let slot = match slots.free.pop() {
            Some(i) => i,
            None => {
                slots.handed.push(None);
                slots.handed.len() - 1
            }
        };
        drop(slots);
        Self {
            streams: s.clone(),
            slot,
        }
    }

    fn stamp(&self, handed: bool) {
        let epoch = handed.then(|| self.streams.epoch.get());
        self.streams.slots.borrow_mut().handed[self.slot] = epoch;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let s = &self.streams;
        {
            let mut slots = s.slots.borrow_mut();
            slots.handed[self.slot] = None;
            slots.free.push(self.slot);
        }
        let left = s.open.get().saturating_sub(1);
        s.open.set(left);
        if left == 0 {
            s.idle_since.set(Instant::now());
            s.changed.notify_one();
        }
    }
}

/// A stream's WebSocket, from its request to the end of its tunnel: an open stream (the
/// connection is not idle while it lives) and a tunnel (a drain waits for it until the worker
/// stops, as for an HTTP/1.1 one). The connection's first uses the upstream descriptor every
/// client connection is budgeted; each other one holds a connection slot of its own against
/// `limits.max_connections` and `max_connections_per_source`, as a connection would.
struct TunnelGuard {
    stream: StreamGuard,
    /// `None`: the connection's budgeted descriptor.
    slot: Option<ConnectionGuard>,
}

impl TunnelGuard {
    /// `None` when a further tunnel finds no connection slot.
    fn open(s: &Rc<Streams>, w: &Worker, side: Side, client: Option<ClientAddr>) -> Option<Self> {
        let slot = if s.budgeted_tunnel.replace(true) {
            let admission = &w.shared.admission;
            if !admission.may_accept(side) {
                return None;
            }
            let source = client.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0);
            Some(admission.connection(side, source)?)
        } else {
            None
        };
        s.tunnels.set(s.tunnels.get() + 1);
        Some(Self {
            stream: StreamGuard::open(s),
            slot,
        })
    }
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        let s = &self.stream.streams;
        s.tunnels.set(s.tunnels.get().saturating_sub(1));
        if self.slot.is_none() {
            s.budgeted_tunnel.set(false);
        }
    }
}

/// A response body that keeps its stream counted as open until it is done, and stamps when it
/// hands hyper data (and when the response is handed over) so a client that stops granting
/// window is noticed: hyper asks for the next frame only once the last one fits the window.
struct Tracked {
    body: RespBody,
    stream: StreamGuard,
}

impl Body for Tracked {
    type Data = bytes::Bytes;
    type Error = crate::upstream::body::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.body).poll_frame(cx);
        this.stream.stamp(matches!(r, Poll::Ready(Some(Ok(_)))));
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves an HTTP/2 connection with hyper's server. A connection that opens no stream by
/// `first_by` (one that only sent its preface and SETTINGS, or a header block it never
/// finishes), or later has no open stream for `limits.idle`, is asked to go away, and closed if
/// it has not gone within `limits.header_read` more. A stream whose response the client takes
/// no data of for `limits.send_progress` (a zero window) closes the connection.
// The connection's parts, each used on its own; a struct would only be taken apart again.
#[allow(clippy::too_many_arguments)]
async fn serve_h2<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    io: Rewind<S>,
    peer: Peer,
    side: Side,
    w: Rc<Worker>,
    limits: Limits,
    first_by: Instant,
    ticket: Ticket,
    mut shutdown: watch::Receiver<bool>,
) {
    let streams = Rc::new(Streams {
        open: Cell::new(0),
        served: Cell::new(false),
        idle_since: Cell::new(Instant::now()),
        changed: Notify::new(),
        epoch: Cell::new(0),
        slots: RefCell::default(),
        tunnels: Cell::new(0),
        budgeted_tunnel: Cell::new(false),
    });
    let counted = streams.clone();
    let admission = w.shared.admission.clone();
    let client = Some(peer.addr);
    // The connection's limits go through the worker's deadline table, so a storm of them
    // expiring together is woken in batches.
    let mut timer = w.deadlines.timer();
    let svc = service_fn(move |req: Request<Incoming>| {
        let req = peer.mark(req);
        let w = w.clone();
        let stream = StreamGuard::open(&counted);
        let streams = counted.clone();
        async move {
            let req = req.map(|b| ReqBody::hyper(b, limits.body_progress));
            let mut resp = match Connect::of(&req) {
                Some(Connect::WebSocket) => {
                    websocket(w, side, req, &streams, client, limits.upgraded_idle).await
                }
                Some(Connect::Other) => {
                    Answer::for_request(req.headers()).error(&ProxyError::NotImplemented {
                        what: "an extended CONNECT for a protocol other than websocket",
                    })
                }
                // A plain CONNECT is the request path's to refuse.
                Some(Connect::Plain) | None => {
                    let Ok(resp) = handle(w, side, req).await;
                    resp
                }
            };
            // An HTTP/1.1 upstream's fields travel raw; an HTTP/2 client needs them as a map.
            if let RespBody::H1(b) = resp.body_mut()
                && let Some(raw) = b.take_fields()
            {
                resp.headers_mut().extend(raw.to_header_map());
            }
            // Handed to hyper: from now on the client must take it (a client that never opens
            // its window is noticed even before the first frame).
            stream.stamp(true);
            Ok::<_, std::convert::Infallible>(resp.map(|body| Tracked { body, stream }))
        }
    });
    let conn = hyper::server::conn::http2::Builder::new(LocalExec)
        .timer(TokioTimer::new())
        // SETTINGS_ENABLE_CONNECT_PROTOCOL: clients may open WebSockets (RFC 8441 §3).
        .enable_connect_protocol()
        .serve_connection(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    let check_every = limits.send_progress / 2;
    let mut next_check = Instant::now() + check_every;
    loop {
        if streams.served.get() {
            ticket.passed();
        }
        let wake = match (streams.open.get(), limits.idle) {
            (0, _) if !streams.served.get() => Some(first_by),
            (0, Some(d)) => Some(streams.idle_since.get() + d),
            (0, None) => None,
            _ => Some(next_check),
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "HTTP/2 client connection failed");
                }
                return;
            }
            _ = shutdown.wait_for(|&s| s) => break,
            () = streams.changed.notified() => {}
            // Evicted before its first stream: closed at once, as an HTTP/1.1 one would be.
            () = ticket.evicted(), if !streams.served.get() => {
                if !streams.served.get() {
                    return;
                }
            }
            _ = timer.bound(wake, std::future::pending::<()>()) => {
                if streams.open.get() == 0 {
                    let now = Instant::now();
                    if !streams.served.get() {
                        if now >= first_by {
                            admission.timed_out(ClientTimeout::Header);
                            break;
                        }
                    } else if limits.idle.is_some_and(|d| streams.idle_since.get() + d <= now) {
                        break;
                    }
                } else if Instant::now() >= next_check {
                    next_check += check_every;
                    if streams.stalled() {
                        tracing::debug!("HTTP/2 client took no response data in time; closing");
                        admission.timed_out(ClientTimeout::Send);
                        return;
                    }
                }
            }
        }
    }
    conn.as_mut().graceful_shutdown();
    // Streams get the head-read limit to finish; tunnels run on until the drain deadline, when
    // the worker stops, as on HTTP/1.1.
    while tokio::time::timeout(limits.header_read, conn.as_mut())
        .await
        .is_err()
        && streams.tunnels.get() > 0
    {}
}

/// An HTTP/2 client's WebSocket: answered by [`connect`], its tunnel run in a task of its own
/// once the answer has gone (hyper hands over the stream only then).
async fn websocket(
    w: Rc<Worker>,
    side: Side,
    req: Request<ReqBody>,
    streams: &Rc<Streams>,
    client: Option<ClientAddr>,
    idle: Duration,
) -> Response<RespBody> {
    let Some(guard) = TunnelGuard::open(streams, &w, side, client) else {
        return connect::no_room(w.shared.admission.limits.retry_after_s);
    };
    let deadlines = w.deadlines.clone();
    let (resp, tunnel) = connect::websocket(w, side, req).await;
    if let Some(tunnel) = tunnel {
        tokio::task::spawn_local(async move {
            tunnel.run(&deadlines, idle).await;
            drop(guard);
        });
    }
    resp
}

/// A new connection's first request: when it is due, and its place on probation until then.
struct First {
    by: Instant,
    ticket: Ticket,
}

/// What waiting for a head gave.
// Returned once per request and taken apart at once; boxing the head would add an allocation
// to every request.
#[allow(clippy::large_enum_variant)]
enum HeadRead {
    Head(Head),
    /// Closed by the client, idle too long, or draining: close quietly.
    Close,
    Refused(HeadError),
    TimedOut,
}

// The connection's parts, each used on its own; a struct would only be taken apart again.
#[allow(clippy::too_many_arguments)]
async fn serve_h1<S: ClientIo>(
    mut stream: S,
    mut carry: BytesMut,
    peer: &Peer,
    timer: &mut Timer,
    side: Side,
    w: Rc<Worker>,
    limits: Limits,
    first: First,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut rd, wr) = stream.halves();
    let mut out = Out {
        wr,
        limit: limits.send_progress,
        admission: &w.shared.admission,
        flush: S::BUFFERED,
    };
    let mut first = Some(first);
    let upgraded = loop {
        if carry.is_empty() {
            // Idle: give the buffer back.
            carry = BytesMut::new();
        }
        let first = first.take();
        let head = read_head(
            &mut rd,
            &w,
            &mut carry,
            timer,
            limits,
            first.as_ref(),
            &mut shutdown,
        )
        .await;
        // Past its first head the connection is no longer on probation.
        drop(first);
        let head = match head {
            // RFC 9112 §3.2: an HTTP/1.1 request without Host is refused, not routed to a default.
            HeadRead::Head(h) if h.parts.version == Version::HTTP_11 && !h.has_host => {
                let e = HeadError::Host("HTTP/1.1 request without a Host field".into());
                out.refuse(timer, e.status(), "bad-request", &e.to_string())
                    .await;
                return;
            }
            HeadRead::Head(h) => h,
            HeadRead::Close => return,
            HeadRead::Refused(e) => {
                out.refuse(timer, e.status(), "bad-request", &e.to_string())
                    .await;
                return;
            }
            HeadRead::TimedOut => {
                w.shared.admission.timed_out(ClientTimeout::Header);
                out.refuse(
                    timer,
                    StatusCode::REQUEST_TIMEOUT,
                    "header-timeout",
                    "request head not received in time",
                )
                .await;
                return;
            }
        };
        // The exchange is boxed so an idle connection's task holds only the head reader.
        let close = *shutdown.borrow();
        let exchange = exchange(
            Conn {
                rd: &mut rd,
                out: &mut out,
                timer,
                carry: &mut carry,
                peer,
            },
            &w,
            side,
            head,
            close,
            limits.body_progress,
        );
        match Box::pin(exchange).await {
            After::Next => {}
            After::Close => {
                let _ = out.wr.shutdown().await;
                return;
            }
            After::Tunnel(up) => break up,
        }
    };
    // The halves borrow the stream the tunnel takes whole.
    drop((rd, out));
    // HTTP is over on this connection: the tunnel copies on the whole socket, starting with
    // what the client sent behind its upgrade request.
    let early = tunnel::Early {
        from_client: &carry,
        // Written with the 101 head.
        from_upstream: &[],
    };
    tunnel::splice(
        &mut stream,
        upgraded.stream,
        early,
        limits.upgraded_idle,
        timer,
    )
    .await;
}

/// The response side of an HTTP/1.1 connection. Every write must make progress within `limit`:
/// a client that stops reading (a full socket buffer, a zero TCP window) is cut off.
struct Out<'a, W> {
    wr: W,
    limit: Duration,
    admission: &'a Admission,
    /// Flush after each write: the stream may hold written bytes back (TLS records).
    flush: bool,
}

impl<W: AsyncWrite + Unpin> Out<'_, W> {
    async fn write_all(&mut self, timer: &mut Timer, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = match timer.bound_for(self.limit, self.wr.write(buf)).await {
                Some(r) => r?,
                None => return Err(self.stalled()),
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        if self.flush {
            match timer.bound_for(self.limit, self.wr.flush()).await {
                Some(r) => r?,
                None => return Err(self.stalled()),
            }
        }
        Ok(())
    }

    fn stalled(&self) -> io::Error {
        self.admission.timed_out(ClientTimeout::Send);
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("client read nothing for {:?}", self.limit),
        )
    }

    /// Answers with a short error and closes.
    async fn refuse(&mut self, timer: &mut Timer, status: StatusCode, code: &str, msg: &str) {
        if self
            .write_all(timer, &error_response(status, code, msg))
            .await
            .is_ok()
        {
            let _ = self.wr.shutdown().await;
        }
    }

    async fn flush(&mut self, timer: &mut Timer, buf: &mut Vec<u8>) -> io::Result<()> {
        if !buf.is_empty() {
            self.write_all(timer, buf).await?;
            buf.clear();
        }
        Ok(())
    }
}

/// The parts of an HTTP/1.1 connection one exchange uses.
struct Conn<'c, 'b, R, W> {
    rd: &'c mut R,
    out: &'c mut Out<'b, W>,
    timer: &'c mut Timer,
    carry: &'c mut BytesMut,
    peer: &'c Peer,
}

/// What follows an exchange on a connection.
enum After {
    /// Another request.
    Next,
    Close,
    /// The upstream switched protocols: the connection is a tunnel from now on.
    Tunnel(Upgraded),
}

/// One request and its response, and what follows on the connection.
async fn exchange<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    conn: Conn<'_, '_, R, W>,
    w: &Rc<Worker>,
    side: Side,
    head: Head,
    draining: bool,
    body_progress: Duration,
) -> After {
    let Conn {
        rd,
        out,
        timer,
        carry,
        peer,
    } = conn;
    let Head {
        parts,
        framing,
        keep_alive,
        expect_continue,
        ..
    } = head;
    let method = parts.method.clone();
    let version = parts.version;

    let (body, feed) = match framing {
        // `request::parse` never gives a request `UntilClose`: without length fields it has none.
        Framing::None | Framing::UntilClose => (ReqBody::Empty, None),
        Framing::Length(n) if carry.len() as u64 >= n => {
            // `n` fits: it is at most `carry.len()`.
            let body = carry.split_to(n as usize).freeze();
            (ReqBody::Full(Some(body)), None)
        }
        Framing::Length(n) => {
            let (tx, body) = ReqBody::channel(Some(n));
            (body, Some((tx, Feed::Length(n))))
        }
        Framing::Chunked => {
            let (tx, body) = ReqBody::channel(None);
            (body, Some((tx, Feed::Chunked(Decoder::default()))))
        }
    };
    if expect_continue
        && feed.is_some()
        && out
            .write_all(timer, b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return After::Close;
    }

    let mut pump = feed.map(|(tx, f)| {
        let progress = (w.deadlines.timer(), body_progress);
        Box::pin(pump_body(rd, carry, f, tx, progress))
    });
    let mut body_read = pump.is_none();
    // In a block of its own so the handler's state and the response writer's do not both take
    // room in this future, which is boxed once per request.
    let resp = {
        let handler = std::pin::pin!(handle(
            w.clone(),
            side,
            peer.mark(Request::from_parts(parts, body))
        ));
        match pump.as_mut() {
            None => handler.await,
            Some(p) => match select(handler, p.as_mut()).await {
                Either::Left((resp, _)) => resp,
                Either::Right((pumped, handler)) => {
                    body_read = pumped.is_ok();
                    pump = None;
                    handler.await
                }
            },
        }
    };
    let Ok(mut resp) = resp;
    // Only a request without a body asks to switch, so no body is being pumped here.
    let switched = match resp.body_mut() {
        RespBody::H1(b) => b.take_upgraded().map(|up| (up, b.take_fields())),
        _ => None,
    };
    if let Some((up, raw)) = switched {
        let mut head = spare::buffer();
        response::encode(
            &mut head,
            resp.status(),
            resp.headers(),
            raw.as_ref(),
            Framing::None,
            Persist::Upgrade(&up.protocol),
        );
        // The new protocol's first bytes, if the upstream sent any with its 101, in the same
        // write.
        head.extend_from_slice(&up.early);
        return match out.write_all(timer, &head).await {
            Ok(()) => After::Tunnel(up),
            Err(_) => After::Close,
        };
    }
    let close = !keep_alive || draining;
    let write = write_response(out, timer, resp, &method, version, close);
    let wrote = match pump {
        Some(p) => {
            let (wrote, pumped) = join(write, p).await;
            body_read = pumped.is_ok();
            wrote
        }
        None => write.await,
    };
    if matches!(wrote, Ok(true)) && body_read && !close {
        After::Next
    } else {
        After::Close
    }
}

/// Waits for and parses the next head. While idle it reads into the worker's scratch buffer
/// (borrowed only inside one poll) and keeps just the bytes after the head.
/// `first`: the connection's first head is due by then, whether or not any of it has arrived,
/// and the connection may be evicted until it is complete.
async fn read_head<R: AsyncRead + Unpin>(
    rd: &mut R,
    w: &Worker,
    carry: &mut BytesMut,
    timer: &mut Timer,
    limits: Limits,
    first: Option<&First>,
    shutdown: &mut watch::Receiver<bool>,
) -> HeadRead {
    let mut deadline = first
        .map(|f| f.by)
        .or_else(|| (!carry.is_empty()).then(|| Instant::now() + limits.header_read));
    loop {
        if !carry.is_empty() {
            match request::parse(carry) {
                Ok(Some(h)) => {
                    carry.advance(h.len);
                    return HeadRead::Head(h);
                }
                Ok(None) => {}
                Err(e) => return HeadRead::Refused(e),
            }
        }
        let idle = carry.is_empty();
        let read = async {
            if idle {
                poll_fn(|cx| {
                    let mut scratch = w.scratch.borrow_mut();
                    let mut buf = ReadBuf::new(&mut scratch[..]);
                    match Pin::new(&mut *rd).poll_read(cx, &mut buf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => {}
                    }
                    let got = buf.filled();
                    Poll::Ready(Ok(match request::parse(got) {
                        Ok(Some(h)) => {
                            carry.extend_from_slice(&got[h.len..]);
                            Some(Ok(h))
                        }
                        Ok(None) if got.is_empty() => None,
                        Ok(None) => {
                            carry.extend_from_slice(got);
                            Some(Err(None))
                        }
                        Err(e) => Some(Err(Some(e))),
                    }))
                })
                .await
            } else {
                if carry.capacity() - carry.len() < HEAD_CHUNK / 4 {
                    carry.reserve(HEAD_CHUNK.max(carry.len()));
                }
                match rd.read_buf(carry).await {
                    Ok(0) => Ok(None),
                    Ok(_) => Ok(Some(Err(None))),
                    Err(e) => Err(e),
                }
            }
        };
        let wait = if idle && first.is_none() {
            limits.idle.map(|d| Instant::now() + d)
        } else {
            deadline
        };
        let evicted = async {
            match first {
                Some(f) => f.ticket.evicted().await,
                None => std::future::pending().await,
            }
        };
        let got = tokio::select! {
            r = timer.bound(wait, read) => r,
            _ = shutdown.wait_for(|&s| s), if idle => return HeadRead::Close,
            () = evicted => return HeadRead::Close,
        };
        match got {
            None if idle && first.is_none() => return HeadRead::Close,
            None => return HeadRead::TimedOut,
            Some(Err(_)) | Some(Ok(None)) => return HeadRead::Close,
            Some(Ok(Some(Ok(h)))) => return HeadRead::Head(h),
            Some(Ok(Some(Err(Some(e))))) => return HeadRead::Refused(e),
            Some(Ok(Some(Err(None)))) => {
                deadline.get_or_insert_with(|| Instant::now() + limits.header_read);
            }
        }
    }
}

/// How the rest of a request body arrives.
enum Feed {
    Length(u64),
    Chunked(Decoder),
}

/// The request body could not be delivered whole; the connection closes after the response.
#[derive(Debug)]
struct Unread;

/// Moves a request body from the socket to the request's body stream. A client that delivers
/// no byte for `progress.1` fails the body as stalled.
async fn pump_body<R: AsyncRead + Unpin>(
    rd: &mut R,
    carry: &mut BytesMut,
    feed: Feed,
    tx: mpsc::Sender<Result<bytes::Bytes, BodyError>>,
    progress: (Timer, Duration),
) -> Result<(), Unread> {
    let (mut timer, limit) = progress;
    let fail = |tx: mpsc::Sender<Result<bytes::Bytes, BodyError>>, e: ClientBodyError| async move {
        let _ = tx.send(Err(Box::new(e))).await;
        Unread
    };
    match feed {
        Feed::Length(mut left) => loop {
            if !carry.is_empty() {
                let n = carry.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let chunk = carry.split_to(n).freeze();
                left -= n as u64;
                tx.send(Ok(chunk)).await.map_err(|_| Unread)?;
                if left == 0 {
                    return Ok(());
                }
            }
            if let Err(e) = read_more(rd, carry, &mut timer, limit).await {
                return Err(fail(tx, e).await);
            }
        },
        Feed::Chunked(mut dec) => loop {
            while !carry.is_empty() {
                match dec.step(carry) {
                    Ok(Step::Data { start, end, used }) => {
                        let data = carry.split_to(used).freeze().slice(start..end);
                        tx.send(Ok(data)).await.map_err(|_| Unread)?;
                    }
                    Ok(Step::NeedMore) => carry.clear(),
                    Ok(Step::End { used }) => {
                        carry.advance(used);
                        return Ok(());
                    }
                    Err(e) => {
                        return Err(fail(tx, ClientBodyError::Malformed(e.to_string())).await);
                    }
                }
            }
            if let Err(e) = read_more(rd, carry, &mut timer, limit).await {
                return Err(fail(tx, e).await);
            }
        },
    }
}

async fn read_more<R: AsyncRead + Unpin>(
    rd: &mut R,
    carry: &mut BytesMut,
    timer: &mut Timer,
    limit: Duration,
) -> Result<(), ClientBodyError> {
    carry.reserve(READ_CHUNK);
    match timer.bound_for(limit, rd.read_buf(carry)).await {
        None => Err(ClientBodyError::Stalled(limit)),
        Some(Ok(0)) => Err(ClientBodyError::Closed),
        Some(Err(e)) => Err(ClientBodyError::Aborted(e.to_string())),
        Some(Ok(_)) => Ok(()),
    }
}

/// Writes a response; `Ok(true)` when the connection may carry another request.
async fn write_response<W: AsyncWrite + Unpin>(
    wr: &mut Out<'_, W>,
    timer: &mut Timer,
    resp: Response<RespBody>,
    method: &Method,
    version: Version,
    close: bool,
) -> io::Result<bool> {
    let (mut parts, mut body) = resp.into_parts();
    let raw = match &mut body {
        RespBody::H1(b) => b.take_fields(),
        _ => None,
    };
    let framing = response::framing(method, version, parts.status, body.size_hint().exact());
    let close = close || framing == Framing::UntilClose;
    let mut out = spare::buffer();
    response::encode(
        &mut out,
        parts.status,
        &parts.headers,
        raw.as_ref(),
        framing,
        Persist::after(version, close),
    );
    drop(raw);
    spare::give_map(std::mem::take(&mut parts.headers));
    if framing == Framing::None {
        wr.write_all(timer, &out).await?;
        return Ok(!close);
    }
    let chunked = framing == Framing::Chunked;
    let mut body = std::pin::pin!(body);
    let mut trailers = None;
    let mut sent = 0u64;
    // Whether any of the response has left: until then a failing upstream body can still be
    // answered with a 502 instead of a head the client would get no body for.
    let mut started = false;
    loop {
        // The first chunk is usually there already: then head and body leave in one write.
        let frame = match body.frame().now_or_never() {
            Some(f) => f,
            None => {
                started = true;
                wr.flush(timer, &mut out).await?;
                body.frame().await
            }
        };
        let Some(frame) = frame else { break };
        let frame = match frame {
            Ok(f) => f,
            Err(e) if !started => {
                tracing::debug!(error = %e, "upstream response body failed before anything was sent");
                wr.refuse(
                    timer,
                    StatusCode::BAD_GATEWAY,
                    "upstream",
                    "the upstream sent a malformed response",
                )
                .await;
                return Ok(false);
            }
            // Mid-body, a failing upstream can only be told to an HTTP/1.1 client by closing.
            Err(e) => return Err(io::Error::other(e)),
        };
        let data = match frame.into_data() {
            Ok(d) => d,
            Err(f) => {
                trailers = f.into_trailers().ok();
                continue;
            }
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if chunked {
            chunked::push_chunk_header(&mut out, data.len());
        }
        if data.len() > WRITE_BATCH {
            started = true;
            wr.flush(timer, &mut out).await?;
            wr.write_all(timer, &data).await?;
        } else {
            out.extend_from_slice(&data);
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= WRITE_BATCH {
            started = true;
            wr.flush(timer, &mut out).await?;
        }
    }
    if let Framing::Length(n) = framing
        && sent != n
    {
        return Err(io::Error::other(format!(
            "upstream body was {sent} bytes, content-length {n}"
        )));
    }
    if chunked {
        out.extend_from_slice(b"0\r\n");
        for (name, value) in trailers.iter().flatten() {
            push_field(&mut out, name.as_str(), value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    wr.flush(timer, &mut out).await?;
    Ok(!close)
}
