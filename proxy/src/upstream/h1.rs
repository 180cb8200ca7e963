//! HTTP/1.1 to an upstream, driven inline by the request that uses the connection: no task and no
//! channel per connection (hyper's client keeps a dispatcher task per connection and a channel
//! hop per request). The request head and a body that is already whole leave in one write; the
//! response head is parsed with `httparse`; the response body reads straight from the socket as
//! the client side asks for it, and the connection goes back to the pool the moment its body is
//! complete. An idle pooled connection is only a socket.
//!
//! A WebSocket upgrade ([`crate::h1::upgrade`]) goes over a connection opened for it, never one
//! the pool has handed out before, and that connection never goes back: on a `101` it leaves the
//! pool's count and becomes the client connection's tunnel ([`Upgraded`]); on any other answer
//! it closes after the response.

use std::{
    io,
    pin::Pin,
    rc::Rc,
    task::{Poll, ready},
};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    Dest, OpenSlot, Pool, UpIo,
    body::{BodyError, ClientBodyError, ReqBody, client_fault},
};
use crate::load::Carried;
use crate::tls::Wants;
use crate::{
    h1::{
        chunked::{self, Decoder, Step},
        fields::RawFields,
        framing::Framing,
        request, response,
        upgrade::{self, Upgrade},
    },
    spare,
};
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes asked of the socket for the response head (and, usually, the whole small body).
const FIRST_READ: usize = 1024;
/// Request body bytes gathered before a write.
const WRITE_BATCH: usize = 16 * 1024;

/// One upstream HTTP/1.1 connection; dropping it closes it and frees its pool slot.
pub struct H1Conn {
    stream: UpIo,
    /// Its place in the pool's count; `None` for one opened for an upgrade, which never joins
    /// the pool.
    slot: Option<OpenSlot>,
    /// Has carried a request before (a pooled connection the upstream may have closed).
    reused: bool,
}

/// An upstream connection that answered an upgrade with `101 Switching Protocols`: from now on
/// the proxy only copies bytes on it.
pub struct Upgraded {
    pub stream: UpIo,
    /// What the upstream sent after its `101` head in the same reads: the new protocol's first
    /// bytes, due to the client before anything else.
    pub early: Bytes,
    /// The protocol the `101`'s `Upgrade` field named.
    pub protocol: HeaderValue,
}

/// Why a send failed, and whether the request is still ours to send elsewhere.
pub struct SendError {
    pub error: io::Error,
    pub request: Option<Request<ReqBody>>,
    /// The client's body failed, not the upstream: nothing to charge the endpoint with.
    pub client: Option<ClientBodyError>,
}

impl H1Conn {
    pub(super) fn new(stream: UpIo, slot: OpenSlot) -> Self {
        Self {
            stream,
            slot: Some(slot),
            reused: false,
        }
    }

    /// False when the upstream closed an idle connection or sent bytes nobody asked for
    /// ([`UpIo::is_reusable`]).
    pub fn is_reusable(&mut self) -> bool {
        self.stream.is_reusable()
    }

    /// Sends `req` and reads the response head; the body follows as the caller polls it.
    pub async fn send(
        mut self,
        pool: Rc<Pool>,
        dest: Dest,
        req: Request<ReqBody>,
    ) -> Result<Response<H1Body>, SendError> {
        let (mut parts, body) = req.into_parts();
        let upgrade = parts.extensions.get::<Upgrade>().cloned();
        if upgrade.is_some() && self.reused {
            // A tunnel lives as long as its client wants, so it must not hold one of the pool's
            // slots, and an idle connection may be closed by the upstream's keep-alive timer
            // while the handshake is under way: the upgrade takes a new connection of its own and
            // the pooled one goes back idle.
            match pool.connect(dest, Wants::Http1).await {
                Ok(stream) => {
                    let fresh = Self {
                        stream,
                        slot: None,
                        reused: false,
                    };
                    pool.put_h1(dest, std::mem::replace(&mut self, fresh));
                }
                Err(e) => {
                    return Err(SendError {
                        error: io::Error::other(e),
                        request: Some(Request::from_parts(parts, body)),
                        client: None,
                    });
                }
            }
        }
        // A body of known length is announced by it, any other is chunked.
        let framing = body
            .size_hint()
            .exact()
            .map_or(Framing::Chunked, Framing::Length);
        let mut out = spare::buffer();
        request::encode(&mut out, &parts, framing);
        let reused = self.reused;
        self.reused = true;
        // A body already whole can be sent again if this connection turns out dead.
        let replay = match &body {
            ReqBody::Empty => Some(ReqBody::Empty),
            ReqBody::Full(b) => Some(ReqBody::Full(b.clone())),
            _ => None,
        };
        let give_back =
            |error: io::Error, parts: http::request::Parts, replay: Option<ReqBody>| SendError {
                error,
                request: replay.map(|b| Request::from_parts(parts, b)),
                client: None,
            };
        match self.write_body(&mut out, body, framing).await {
            Ok(()) => {}
            Err(WriteError::Socket(error)) => return Err(give_back(error, parts, replay)),
            Err(WriteError::Client(c)) => {
                return Err(SendError {
                    error: io::Error::other(c.to_string()),
                    request: None,
                    client: Some(c),
                });
            }
        }
        // Small to start: most response heads and small bodies fit, and hundreds of requests
        // in flight each hold one. Body reads grow it by READ_CHUNK.
        let mut buf = BytesMut::with_capacity(FIRST_READ);
        let head = loop {
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_CHUNK);
            }
            match self.stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) if buf.is_empty() && reused => {
                    // The upstream closed a pooled connection as the request went out: it saw
                    // nothing, so the request may go elsewhere.
                    let e = io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "pooled connection closed by the upstream",
                    );
                    return Err(give_back(e, parts, replay));
                }
                Ok(0) => {
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upstream closed the connection before a complete response head",
                    );
                    return Err(give_back(e, parts, None));
                }
                Err(e) => return Err(give_back(e, parts, None)),
                Ok(_) => {}
            }
            // Interim responses (100, 103) may share a read with the final one: parse every
            // head the buffer holds before reading again.
            let last = loop {
                match response::parse(&buf) {
                    // A 101 is final for the exchange: what follows is the new protocol's.
                    Ok(Some(h)) if h.status == StatusCode::SWITCHING_PROTOCOLS => {
                        if upgrade
                            .as_ref()
                            .is_none_or(|u| !upgrade::accepted(u, h.upgrade.as_ref()))
                        {
                            let e = io::Error::other(
                                "upstream switched protocols without being asked to, or to \
                                 another protocol than the one asked for",
                            );
                            return Err(give_back(e, parts, None));
                        }
                        // A key the proxy chose (a WebSocket over HTTP/2): the proxy checks the
                        // answer the client cannot.
                        if parts
                            .extensions
                            .get::<upgrade::Accept>()
                            .is_some_and(|a| !a.answered_in(&h.fields))
                        {
                            let e = io::Error::other(
                                "upstream's 101 lacks the Sec-WebSocket-Accept its key asks for",
                            );
                            return Err(give_back(e, parts, None));
                        }
                        buf.advance(h.len);
                        break Some(h);
                    }
                    Ok(Some(h)) if h.status.is_informational() => {
                        buf.advance(h.len);
                    }
                    Ok(Some(h)) => {
                        buf.advance(h.len);
                        break Some(h);
                    }
                    Ok(None) => break None,
                    Err(e) => return Err(give_back(e, parts, None)),
                }
            };
            if let Some(h) = last {
                break h;
            }
        };
        // Only an accepted 101 gets here, and it named its protocol.
        if head.status == StatusCode::SWITCHING_PROTOCOLS
            && let Some(protocol) = head.upgrade
        {
            let mut resp = Response::new(H1Body {
                state: State::Switched(Box::new(protocol)),
                buf,
                conn: Some(self),
                pool,
                keep_alive: false,
                fields: Some(head.fields),
                load: head.load,
            });
            *resp.status_mut() = head.status;
            spare::give_map(std::mem::take(&mut parts.headers));
            return Ok(resp);
        }
        let body_framing = if parts.method == Method::HEAD
            || head.status == StatusCode::NO_CONTENT
            || head.status == StatusCode::NOT_MODIFIED
        {
            Framing::None
        } else {
            head.framing
        };
        // Bytes after a response that has no body are not the next response's: the connection
        // cannot be trusted with another request.
        let stray = body_framing == Framing::None && !buf.is_empty();
        let mut resp = Response::new(H1Body {
            state: match body_framing {
                Framing::None => State::Length(0),
                Framing::Length(n) => State::Length(n),
                Framing::Chunked => State::Chunked(Decoder::default()),
                Framing::UntilClose => State::UntilClose,
            },
            buf,
            conn: Some(self),
            pool,
            // An upgrade's connection never goes back, whatever the answer.
            keep_alive: head.keep_alive
                && body_framing != Framing::UntilClose
                && !stray
                && upgrade.is_none(),
            fields: Some(head.fields),
            load: head.load,
        });
        *resp.status_mut() = head.status;
        resp.body_mut().release_if_done();
        spare::give_map(std::mem::take(&mut parts.headers));
        Ok(resp)
    }

    /// Writes the request head in `out` and the body after it, each write flushed (over TLS,
    /// records may wait in the session otherwise; a plain socket's flush is done at once). A
    /// body that is whole leaves with the head in one write; a streamed one is written as its
    /// chunks arrive (gathered while more are ready, so a slow client's bytes are not held back
    /// waiting for a batch).
    async fn write_body(
        &mut self,
        out: &mut Vec<u8>,
        body: ReqBody,
        framing: Framing,
    ) -> Result<(), WriteError> {
        match body {
            ReqBody::Empty => {}
            ReqBody::Full(b) => out.extend_from_slice(b.as_deref().unwrap_or_default()),
            mut body => {
                let chunked = framing == Framing::Chunked;
                loop {
                    let frame = match body.frame().now_or_never() {
                        Some(f) => f,
                        None => {
                            if !out.is_empty() {
                                self.stream.write_all(out).await?;
                                self.stream.flush().await?;
                                out.clear();
                            }
                            body.frame().await
                        }
                    };
                    let Some(frame) = frame else { break };
                    let frame = frame.map_err(|e| {
                        WriteError::Client(
                            client_fault(&*e)
                                .cloned()
                                .unwrap_or_else(|| ClientBodyError::Aborted(e.to_string())),
                        )
                    })?;
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if chunked {
                        chunked::push_chunk_header(out, data.len());
                    }
                    out.extend_from_slice(&data);
                    if chunked {
                        out.extend_from_slice(b"\r\n");
                    }
                    if out.len() >= WRITE_BATCH {
                        self.stream.write_all(out).await?;
                        self.stream.flush().await?;
                        out.clear();
                    }
                }
                if chunked {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
            }
        }
        self.stream.write_all(out).await?;
        Ok(self.stream.flush().await?)
    }
}

/// Why writing a request failed.
enum WriteError {
    /// The upstream's socket.
    Socket(io::Error),
    /// The client's body.
    Client(ClientBodyError),
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        Self::Socket(e)
    }
}

#[derive(Debug)]
enum State {
    Length(u64),
    Chunked(Decoder),
    UntilClose,
    /// A `101` to the protocol named: no body; the connection is the client's to take
    /// ([`H1Body::take_upgraded`]). Boxed: every response body holds a state, and a switch is
    /// rare.
    Switched(Box<HeaderValue>),
    Done,
}

/// A response body read from the upstream socket on demand; returns its connection to the pool
/// when complete, closes it when dropped early.
pub struct H1Body {
    state: State,
    buf: BytesMut,
    conn: Option<H1Conn>,
    pool: Rc<Pool>,
    keep_alive: bool,
    /// The response's header fields until the client side takes them.
    fields: Option<RawFields>,
    /// The upstream's load report, picked out of the head (never among `fields`).
    load: Option<Carried>,
}

impl H1Body {
    /// The response's header fields, once: the response itself carries an empty map.
    pub fn take_fields(&mut self) -> Option<RawFields> {
        self.fields.take()
    }

    /// The upstream's `loadshift-load` field, once.
    pub fn take_load(&mut self) -> Option<Carried> {
        self.load.take()
    }

    /// The connection of a `101`, once, leaving the pool's count: the client side copies bytes
    /// over it from now on.
    pub fn take_upgraded(&mut self) -> Option<Upgraded> {
        if !matches!(self.state, State::Switched(_)) {
            return None;
        }
        let (State::Switched(protocol), Some(H1Conn { stream, .. })) = (
            std::mem::replace(&mut self.state, State::Done),
            self.conn.take(),
        ) else {
            return None;
        };
        Some(Upgraded {
            stream,
            early: self.buf.split().freeze(),
            protocol: *protocol,
        })
    }

    /// At the end of the body: the connection goes back (if the upstream keeps it alive and
    /// sent nothing extra) or closes.
    fn release_if_done(&mut self) {
        if matches!(self.state, State::Length(0)) {
            self.state = State::Done;
        }
        if matches!(self.state, State::Done)
            && let Some(conn) = self.conn.take()
            && self.keep_alive
            && self.buf.is_empty()
            // Its slot knows where it goes (one opened for an upgrade has none, and is never
            // kept alive).
            && let Some(dest) = conn.slot.as_ref().map(|s| s.dest)
        {
            self.pool.put_h1(dest, conn);
        }
    }

    fn poll_read_more(&mut self, cx: &mut std::task::Context<'_>) -> Poll<io::Result<usize>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        self.buf.reserve(READ_CHUNK);
        tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut self.buf)
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Done => {
                    this.release_if_done();
                    return Poll::Ready(None);
                }
                State::Switched(_) => return Poll::Ready(None),
                State::Length(left) => {
                    let left = *left;
                    if left == 0 {
                        this.state = State::Done;
                        continue;
                    }
                    if !this.buf.is_empty() {
                        let n = this
                            .buf
                            .len()
                            .min(usize::try_from(left).unwrap_or(usize::MAX));
                        let data = this.buf.split_to(n).freeze();
                        this.state = State::Length(left - n as u64);
                        this.release_if_done();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::Chunked(dec) => {
                    if !this.buf.is_empty() {
                        match dec.step(&this.buf) {
                            Ok(Step::Data { start, end, used }) => {
                                let data = this.buf.split_to(used).freeze().slice(start..end);
                                return Poll::Ready(Some(Ok(Frame::data(data))));
                            }
                            Ok(Step::NeedMore) => this.buf.clear(),
                            Ok(Step::End { used }) => {
                                this.buf.advance(used);
                                this.state = State::Done;
                                this.release_if_done();
                                return Poll::Ready(None);
                            }
                            Err(e) => {
                                this.conn = None;
                                this.state = State::Done;
                                return Poll::Ready(Some(Err(e.into())));
                            }
                        }
                        continue;
                    }
                }
                State::UntilClose => {
                    if !this.buf.is_empty() {
                        let data = this.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match ready!(this.poll_read_more(cx)) {
                Ok(0) if matches!(this.state, State::UntilClose) => {
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(
                        "upstream closed the connection inside the response body".into(),
                    )));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(
            self.state,
            State::Done | State::Length(0) | State::Switched(_)
        )
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done | State::Switched(_) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
