//! Upstream connections: one pool per worker thread (no locks, no cross-core traffic), per
//! endpoint a stack of idle HTTP/1.1 connections (plain sockets, see [`h1`]) up to a cap and one
//! multiplexed HTTP/2 connection (hyper's client). Idle connections close after the idle timeout;
//! connections to endpoints the plan in force no longer allows are closed when the route table
//! changes.
//!
//! Connections are kept per destination: an endpoint's address and the TLS it is spoken to with
//! ([`Dest`]; `crate::tls`), so a service that reaches an address over TLS never gets another's
//! plaintext connection to it. Over TLS, ALPN asks for the protocol the pool wants (`h2` for the
//! HTTP/2 connection, `http/1.1` for the others), and the handshake gets the connect timeout
//! again after the TCP connect. Plain connections are plain sockets in an enum ([`UpIo`]): no
//! boxing, and the handshake's state is boxed so it takes no room in the request path's
//! futures.
//!
//! HTTP/2: requests that find no connection while one is being opened wait for it instead of
//! opening their own (a burst after an upstream restart would otherwise open one connection per
//! request), and share its outcome: the connection, or the failure to open it. Past the
//! upstream's `SETTINGS_MAX_CONCURRENT_STREAMS` requests queue on the connection (hyper's
//! client waits for a stream) rather than opening another.

mod exec;
mod h1;
mod io;

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::Rc,
    sync::Arc,
    time::Duration,
};

use http::{Request, Response};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpStream, sync::Notify, time::Instant};

pub use exec::LocalExec;
pub mod body;

pub use h1::{H1Body, Upgraded};
pub use io::UpIo;

use body::RespBody;
use h1::H1Conn;

use crate::error::ProxyError;
use crate::tls::{TlsRef, Upstreams, Wants};
use crate::{FastMap, FastSet};

/// Where a pooled connection goes: an endpoint, and the TLS it is spoken to with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dest {
    pub addr: SocketAddr,
    pub tls: TlsRef,
}

impl Dest {
    pub fn new(addr: SocketAddr, tls: TlsRef) -> Self {
        Self { addr, tls }
    }
}

/// Body of a request sent upstream: the client's body, streamed.
pub type UpBody = body::ReqBody;

/// A failed send, with the request when it was never written.
pub struct Unsent {
    pub error: ProxyError,
    /// Boxed: the failure path is rare and keeps the `Result` small on the common one.
    pub request: Option<Box<Request<UpBody>>>,
}

/// A connection checked out for one request.
pub enum Conn {
    H1(H1Conn),
    H2(http2::SendRequest<UpBody>),
}

struct Idle {
    conn: H1Conn,
    since: Instant,
}

#[derive(Default)]
struct EndpointConns {
    idle: Vec<Idle>,
    /// HTTP/1.1 connections open (idle or busy).
    open: usize,
    h2: Option<http2::SendRequest<UpBody>>,
    /// The HTTP/2 connection being opened, shared by every request waiting for it.
    h2_opening: Option<Rc<H2Opening>>,
}

/// The outcome of opening an HTTP/2 connection, set once by whichever waiter gets to run the
/// connect (the first; another if that one's request is dropped meanwhile).
type H2Opening = tokio::sync::OnceCell<Result<http2::SendRequest<UpBody>, OpenFailed>>;

/// Why opening a connection failed, in a form every waiting request can get a copy of.
#[derive(Clone, Debug)]
enum OpenFailed {
    Timeout,
    Io(std::io::ErrorKind, String),
}

impl OpenFailed {
    fn of(e: &ProxyError) -> Self {
        match e {
            ProxyError::ConnectTimeout { .. } => Self::Timeout,
            ProxyError::Connect { source, .. } => Self::Io(source.kind(), source.to_string()),
            other => Self::Io(std::io::ErrorKind::Other, other.to_string()),
        }
    }

    /// Both mean the request was never sent, so it may go to another endpoint.
    fn error(&self, addr: SocketAddr) -> ProxyError {
        match self {
            Self::Timeout => ProxyError::ConnectTimeout { addr },
            Self::Io(kind, msg) => ProxyError::Connect {
                addr,
                source: std::io::Error::new(*kind, msg.clone()),
            },
        }
    }
}

/// Pool settings.
#[derive(Clone, Copy, Debug)]
pub struct PoolParams {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_per_endpoint: usize,
}

/// A worker's connections to every endpoint.
pub struct Pool {
    params: PoolParams,
    /// TLS towards upstreams, by [`TlsRef`].
    tls: Arc<Upstreams>,
    conns: RefCell<FastMap<Dest, EndpointConns>>,
    /// Endpoints the route table allows, and its generation.
    allowed: RefCell<FastSet<SocketAddr>>,
    generation: Cell<u64>,
    /// Woken when an HTTP/1.1 connection returns or closes.
    returned: Notify,
    /// What `protocol: auto` probes found: endpoints that answered the HTTP/2 preface with
    /// HTTP/2, or over TLS chose `h2` through ALPN (`true`), or not (`false`).
    speaks_h2: RefCell<FastMap<Dest, bool>>,
}

/// The HTTP/2 client preface and an empty SETTINGS frame (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Whether the first bytes an upstream sent back after [`H2_PREFACE`] open an HTTP/2 SETTINGS
/// frame (the server's preface, RFC 9113 §3.4): a 9-byte frame header whose type (byte 3) is
/// 0x4 on stream 0. An HTTP/1.1 server answers with a status line, or closes.
fn answers_h2(first: &[u8]) -> bool {
    first.len() >= 9 && first[3] == 0x4 && first[5..9] == [0, 0, 0, 0]
}

impl Pool {
    /// `tls`: how to open the TLS connections [`Dest`]s name.
    pub fn new(params: PoolParams, tls: Arc<Upstreams>) -> Rc<Self> {
        Rc::new(Self {
            params,
            tls,
            conns: RefCell::default(),
            allowed: RefCell::default(),
            generation: Cell::new(u64::MAX),
            returned: Notify::new(),
            speaks_h2: RefCell::default(),
        })
    }

    /// For `protocol: auto` with an HTTP/2 caller: whether `addr` speaks HTTP/2 with prior
    /// knowledge. An endpoint this worker has an HTTP/2 connection to does; otherwise one probe
    /// connection sends the client preface and reads what comes back (within the connect
    /// timeout), and the answer is kept for the endpoint. Over TLS the probe is a handshake
    /// offering both protocols, and the endpoint's ALPN choice is the answer. A probe that
    /// cannot connect or hears nothing in time settles nothing: the request goes as HTTP/2 and
    /// meets the same fault.
    pub async fn speaks_h2(&self, dest: Dest) -> bool {
        if let Some(&known) = self.speaks_h2.borrow().get(&dest) {
            return known;
        }
        let live = self
            .conns
            .borrow()
            .get(&dest)
            .and_then(|c| c.h2.as_ref())
            .is_some_and(|tx| !tx.is_closed());
        if live {
            return true;
        }
        let addr = dest.addr;
        let probe = async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            if let Some(o) = self.tls.get(dest.tls) {
                let tcp = TcpStream::connect(addr).await.ok()?;
                // Boxed, as in `connect`.
                let session = Box::pin(o.connect(tcp, addr, Wants::Either)).await.ok()?;
                return Some(UpIo::Tls(Box::new(session)).alpn_h2());
            }
            let mut s = TcpStream::connect(addr).await.ok()?;
            s.write_all(H2_PREFACE).await.ok()?;
            let mut first = [0u8; 9];
            let mut n = 0;
            while n < first.len() {
                match s.read(&mut first[n..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
            }
            Some(answers_h2(&first[..n]))
        };
        match tokio::time::timeout(self.params.connect_timeout, probe).await {
            Ok(Some(h2)) => {
                if !h2 {
                    tracing::info!(%addr, "upstream does not speak HTTP/2 with prior knowledge; protocol auto sends it HTTP/1.1");
                }
                self.speaks_h2.borrow_mut().insert(dest, h2);
                h2
            }
            _ => true,
        }
    }

    /// Which TLS a request to service `name` on `side` uses ([`Upstreams::for_service`]).
    pub fn tls_for(&self, side: crate::side::Side, name: &str) -> TlsRef {
        self.tls.for_service(side, name)
    }

    /// Called with the route table's generation on every request; on a change, closes idle
    /// connections to endpoints no longer allowed.
    pub fn sync(&self, generation: u64, allowed: impl FnOnce() -> FastSet<SocketAddr>) {
        if self.generation.get() == generation {
            return;
        }
        self.generation.set(generation);
        let allowed = allowed();
        // Closed after the map is released: a closing connection frees its slot in the map.
        let mut closing = Vec::new();
        self.conns.borrow_mut().retain(|dest, c| {
            if allowed.contains(&dest.addr) {
                return true;
            }
            closing.append(&mut c.idle);
            c.h2 = None;
            c.h2_opening = None;
            c.open > 0
        });
        *self.allowed.borrow_mut() = allowed;
        drop(closing);
    }

    /// An idle HTTP/1.1 connection to `addr` that is still usable at `now`, or the shared HTTP/2
    /// one, without waiting: the common case of [`Pool::checkout`], kept out of its future.
    pub fn checkout_ready(&self, dest: Dest, h2: bool, now: Instant) -> Option<Conn> {
        if h2 {
            let conns = self.conns.borrow();
            let tx = conns.get(&dest)?.h2.as_ref()?;
            return (!tx.is_closed()).then(|| Conn::H2(tx.clone()));
        }
        let mut stale = Vec::new();
        let found = {
            let mut conns = self.conns.borrow_mut();
            let c = conns.get_mut(&dest)?;
            loop {
                let Some(mut idle) = c.idle.pop() else {
                    break None;
                };
                if now.saturating_duration_since(idle.since) < self.params.idle_timeout
                    && idle.conn.is_reusable()
                {
                    break Some(Conn::H1(idle.conn));
                }
                stale.push(idle);
            }
        };
        // Closed after the map is released: closing frees a slot in it.
        drop(stale);
        found
    }

    /// Gets a connection to `addr`: an idle HTTP/1.1 one or a new one, or the shared HTTP/2 one.
    /// Failing here means the request was never sent, so it may go elsewhere.
    pub async fn checkout(self: &Rc<Self>, dest: Dest, h2: bool) -> Result<Conn, ProxyError> {
        if h2 {
            self.checkout_h2(dest).await.map(Conn::H2)
        } else {
            self.checkout_h1(dest).await.map(Conn::H1)
        }
    }

    /// Sends one request on a checked-out connection. On failure the request comes back when
    /// the upstream cannot have seen it (hyper never wrote it, or a pooled HTTP/1.1 connection
    /// was closed under a request whose body is whole), so it can go elsewhere whatever its
    /// method.
    pub async fn send(
        self: &Rc<Self>,
        dest: Dest,
        conn: Conn,
        req: Request<UpBody>,
    ) -> Result<Response<RespBody>, Unsent> {
        match conn {
            Conn::H1(c) => match c.send(Rc::clone(self), dest, req).await {
                Ok(resp) => Ok(resp.map(RespBody::H1)),
                Err(e) => Err(Unsent {
                    error: match e.client {
                        Some(source) => ProxyError::ClientBody { source },
                        None => ProxyError::UpstreamIo {
                            addr: dest.addr,
                            source: e.error,
                        },
                    },
                    request: e.request.map(Box::new),
                }),
            },
            Conn::H2(mut tx) => match tx.try_send_request(req).await {
                Ok(resp) => Ok(resp.map(RespBody::H2)),
                Err(mut e) => {
                    let request = e.take_message().map(Box::new);
                    let source = e.into_error();
                    // hyper reports the request body's failure as its own: find whose it was.
                    let error = match body::client_fault(&source) {
                        Some(c) => ProxyError::ClientBody { source: c.clone() },
                        None => ProxyError::Upstream {
                            addr: dest.addr,
                            source,
                        },
                    };
                    Err(Unsent { error, request })
                }
            },
        }
    }

    async fn checkout_h2(
        self: &Rc<Self>,
        dest: Dest,
    ) -> Result<http2::SendRequest<UpBody>, ProxyError> {
        let opening = {
            let mut conns = self.conns.borrow_mut();
            let existing = conns.get(&dest).and_then(|c| c.h2.clone());
            if let Some(tx) = existing.filter(|tx| !tx.is_closed()) {
                return Ok(tx);
            }
            if !self.allowed.borrow().contains(&dest.addr) {
                // A request racing a route change: its own connection, not kept.
                None
            } else {
                let c = conns.entry(dest).or_default();
                Some(Rc::clone(c.h2_opening.get_or_insert_with(Rc::default)))
            }
        };
        let Some(opening) = opening else {
            return self.open_h2(dest).await;
        };
        let outcome = opening
            .get_or_init(|| async { self.open_h2(dest).await.map_err(|e| OpenFailed::of(&e)) })
            .await
            .clone();
        // The first to see the outcome files the connection; a failure leaves nothing behind,
        // so the next request tries afresh.
        if let Some(c) = self.conns.borrow_mut().get_mut(&dest)
            && c.h2_opening
                .as_ref()
                .is_some_and(|o| Rc::ptr_eq(o, &opening))
        {
            c.h2_opening = None;
            if let Ok(tx) = &outcome
                && self.allowed.borrow().contains(&dest.addr)
            {
                c.h2 = Some(tx.clone());
            }
        }
        outcome.map_err(|f| f.error(dest.addr))
    }

    /// Connects and runs the HTTP/2 handshake; the connection's task runs on this worker.
    async fn open_h2(
        self: &Rc<Self>,
        dest: Dest,
    ) -> Result<http2::SendRequest<UpBody>, ProxyError> {
        let addr = dest.addr;
        let io = TokioIo::new(self.connect(dest, Wants::Http2).await?);
        let (tx, conn) = http2::Builder::new(LocalExec)
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(|source| ProxyError::Upstream { addr, source })?;
        tokio::task::spawn_local(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "h2 upstream connection closed");
            }
        });
        Ok(tx)
    }

    async fn checkout_h1(self: &Rc<Self>, dest: Dest) -> Result<H1Conn, ProxyError> {
        let deadline = Instant::now() + self.params.connect_timeout;
        loop {
            // Stale connections close after the map is released (closing frees a slot in it).
            let mut stale = Vec::new();
            let can_open = {
                let mut conns = self.conns.borrow_mut();
                let c = conns.entry(dest).or_default();
                while let Some(mut idle) = c.idle.pop() {
                    if idle.since.elapsed() < self.params.idle_timeout && idle.conn.is_reusable() {
                        drop(conns);
                        drop(stale);
                        return Ok(idle.conn);
                    }
                    stale.push(idle);
                }
                if c.open < self.params.max_per_endpoint {
                    c.open += 1;
                    true
                } else {
                    false
                }
            };
            drop(stale);
            if can_open {
                return self.open_h1(dest).await;
            }
            // At the cap: wait for a connection to come back, within the connect timeout.
            if tokio::time::timeout_at(deadline, self.returned.notified())
                .await
                .is_err()
            {
                return Err(ProxyError::PoolExhausted { addr: dest.addr });
            }
        }
    }

    /// Opens one HTTP/1.1 connection; the slot in `open` is already taken.
    async fn open_h1(self: &Rc<Self>, dest: Dest) -> Result<H1Conn, ProxyError> {
        let slot = OpenSlot {
            pool: Rc::clone(self),
            dest,
        };
        let stream = self.connect(dest, Wants::Http1).await?;
        Ok(H1Conn::new(stream, slot))
    }

    /// A new connection to `dest`: the TCP connect, then the TLS handshake if `dest` asks for
    /// one, each within the connect timeout. A failed handshake is a failed connect (nothing
    /// was sent, so the request may go elsewhere).
    async fn connect(&self, dest: Dest, wants: Wants) -> Result<UpIo, ProxyError> {
        let addr = dest.addr;
        let tls = self.tls.get(dest.tls);
        let stream = tokio::time::timeout(self.params.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ProxyError::ConnectTimeout { addr })?
            .map_err(|source| ProxyError::Connect { addr, source })?;
        // Latency over batching: every response is small and waited for.
        let _ = stream.set_nodelay(true);
        match tls {
            None => Ok(UpIo::Plain(stream)),
            // Boxed: a handshake's state (a rustls session, its timer) would otherwise take room
            // in every future that may connect, the request path's included, and be copied with
            // it on every plaintext request too.
            Some(tls) => {
                let limit = self.params.connect_timeout;
                Box::pin(handshake(tls, stream, addr, wants, limit)).await
            }
        }
    }

    /// Takes back an HTTP/1.1 connection whose response is complete; dropped (closed) when its
    /// endpoint is no longer allowed.
    fn put_h1(&self, dest: Dest, conn: H1Conn) {
        if self.allowed.borrow().contains(&dest.addr)
            && let Some(c) = self.conns.borrow_mut().get_mut(&dest)
        {
            c.idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
        self.returned.notify_one();
    }

    /// Closes idle connections past the idle timeout. Run periodically by the worker.
    pub fn sweep(&self) {
        let limit = self.params.idle_timeout;
        let mut closing = Vec::new();
        for c in self.conns.borrow_mut().values_mut() {
            for mut i in std::mem::take(&mut c.idle) {
                if i.since.elapsed() < limit && i.conn.is_reusable() {
                    c.idle.push(i);
                } else {
                    closing.push(i);
                }
            }
            if c.h2.as_ref().is_some_and(http2::SendRequest::is_closed) {
                c.h2 = None;
            }
        }
        drop(closing);
    }
}

/// The TLS handshake on a connected socket, within `limit`.
async fn handshake(
    tls: &crate::tls::Originate,
    stream: TcpStream,
    addr: SocketAddr,
    wants: Wants,
    limit: Duration,
) -> Result<UpIo, ProxyError> {
    let session = tokio::time::timeout(limit, tls.connect(stream, addr, wants))
        .await
        .map_err(|_| ProxyError::ConnectTimeout { addr })?
        .map_err(|source| ProxyError::Connect { addr, source })?;
    Ok(UpIo::Tls(Box::new(session)))
}

/// Releases an HTTP/1.1 connection slot when its connection closes (or its connect fails).
/// Dropped only while `Pool::conns` is not borrowed.
struct OpenSlot {
    pool: Rc<Pool>,
    dest: Dest,
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        if let Some(c) = self.pool.conns.borrow_mut().get_mut(&self.dest) {
            c.open = c.open.saturating_sub(1);
        }
        self.pool.returned.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::answers_h2;

    #[test]
    fn only_a_settings_frame_on_stream_zero_is_an_http2_answer() {
        // A SETTINGS frame header: length 18, type 0x4, flags 0, stream 0.
        assert!(answers_h2(&[0, 0, 18, 4, 0, 0, 0, 0, 0]));
        assert!(!answers_h2(b"HTTP/1.1 400 Bad Request\r\n"));
        assert!(!answers_h2(&[0, 0, 18, 4, 0]));
        assert!(!answers_h2(&[0, 0, 18, 4, 0, 0, 0, 0, 1]));
        assert!(!answers_h2(b""));
    }
}
