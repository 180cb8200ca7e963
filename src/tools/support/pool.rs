//! A pool of keep-alive HTTP/1.1 client connections to one address, used by the load generator
//! and by `loadshift app` to call its children through the sidecar.
//!
//! HTTP/1.1 carries one request at a time per connection, so the pool holds at most `cap`
//! requests in flight: a semaphore of `cap` slots bounds them, an idle stack hands out the most
//! recently used connection (warm in cache), and a slot with no idle connection opens a new one.
//! A checkout that had to wait for a slot or open a connection reports it, so the load
//! generator can count the request as late. A churning pool closes each connection after a
//! number of requests and hands out idle connections oldest first, so every one of them cycles.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a request through the pool failed, in the classes the load report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureKind {
    /// TCP connect or HTTP handshake failed.
    Connect,
    /// The request or its response body failed mid-way.
    Io,
    /// No complete response within the timeout.
    Timeout,
}

/// Connections to one address.
#[derive(Debug)]
pub struct Pool {
    addr: SocketAddr,
    /// Idle connections and the requests each has carried.
    idle: Mutex<VecDeque<(SendRequest<Empty<Bytes>>, u32)>>,
    slots: Arc<Semaphore>,
    opened: AtomicUsize,
    connect_timeout: Duration,
    /// Requests after which a connection is closed; `None` keeps it.
    max_uses: Option<u32>,
}

/// A connection checked out for one request.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<Pool>,
    conn: Option<SendRequest<Empty<Bytes>>>,
    uses: u32,
    _slot: OwnedSemaphorePermit,
    /// The checkout found every connection busy (it waited for a slot or opened a connection).
    pub contended: bool,
}

impl Pool {
    /// A pool of at most `cap` connections (at least one) to `addr`.
    pub fn new(addr: SocketAddr, cap: usize, connect_timeout: Duration) -> Arc<Self> {
        Self::churning(addr, cap, connect_timeout, None)
    }

    /// A pool that closes each connection after `max_uses` requests (none: keeps them) and
    /// hands out the longest-idle connection first.
    pub fn churning(
        addr: SocketAddr,
        cap: usize,
        connect_timeout: Duration,
        max_uses: Option<u32>,
    ) -> Arc<Self> {
        Arc::new(Self {
            addr,
            idle: Mutex::new(VecDeque::new()),
            slots: Arc::new(Semaphore::new(cap.max(1))),
            opened: AtomicUsize::new(0),
            connect_timeout,
            max_uses: max_uses.filter(|&n| n > 0),
        })
    }

    /// Opens `n` connections ahead of the first request so the start of a run is not late.
    pub async fn prewarm(self: &Arc<Self>, n: usize) -> Result<(), FailureKind> {
        for _ in 0..n {
            let conn = self.connect().await?;
            self.idle.lock().push_back((conn, 0));
        }
        Ok(())
    }

    /// Connections opened so far (including ones since closed).
    pub fn opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, FailureKind> {
        let connect = async {
            let tcp = TcpStream::connect(self.addr)
                .await
                .map_err(|_| FailureKind::Connect)?;
            // Latency benchmarks must not wait on Nagle's algorithm.
            tcp.set_nodelay(true).map_err(|_| FailureKind::Connect)?;
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|_| FailureKind::Connect)?;
            tokio::spawn(async move {
                // The connection ends when the peer closes it or every sender is dropped; either
                // way the next checkout notices through `is_closed` / `ready`.
                let _ = conn.await;
            });
            Ok(send)
        };
        let send = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| FailureKind::Connect)??;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(send)
    }

    /// Takes a slot and a connection, opening one if none is idle.
    pub async fn checkout(self: &Arc<Self>) -> Result<Lease, FailureKind> {
        let (slot, mut contended) = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => (slot, false),
            Err(_) => {
                // The semaphore is never closed, so acquiring can only fail if it were.
                let slot = self
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| FailureKind::Io)?;
                (slot, true)
            }
        };
        loop {
            let idle = {
                let mut idle = self.idle.lock();
                // Most recently used first (warm in cache), unless every connection must cycle.
                if self.max_uses.is_some() {
                    idle.pop_front()
                } else {
                    idle.pop_back()
                }
            };
            match idle {
                Some((mut conn, uses)) if !conn.is_closed() => {
                    if conn.ready().await.is_ok() {
                        return Ok(Lease {
                            pool: self.clone(),
                            conn: Some(conn),
                            uses,
                            _slot: slot,
                            contended,
                        });
                    }
                }
                Some(_) => {}
                None => {
                    contended = true;
                    let conn = self.connect().await?;
                    return Ok(Lease {
                        pool: self.clone(),
                        conn: Some(conn),
                        uses: 0,
                        _slot: slot,
                        contended,
                    });
                }
            }
        }
    }
}

impl Lease {
    /// Sends `req`, reads the whole response body, and returns the response with it. On any
    /// failure the connection is discarded rather than returned to the pool.
    pub async fn send(
        mut self,
        req: Request<Empty<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Bytes>, FailureKind> {
        let Some(mut conn) = self.conn.take() else {
            return Err(FailureKind::Io);
        };
        let exchange = async {
            let resp = conn.send_request(req).await.map_err(|_| FailureKind::Io)?;
            let (head, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|_| FailureKind::Io)?
                .to_bytes();
            Ok::<_, FailureKind>(Response::from_parts(head, bytes))
        };
        let resp = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| FailureKind::Timeout)??;
        if !conn.is_closed() {
            self.conn = Some(conn);
        }
        Ok(resp)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let uses = self.uses + 1;
            // Past its share of requests the connection is dropped, which closes it.
            if self.pool.max_uses.is_none_or(|max| uses < max) {
                self.pool.idle.lock().push_back((conn, uses));
            }
        }
    }
}
