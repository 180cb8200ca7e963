//! An upgraded client connection: once the upstream has answered a WebSocket upgrade with `101
//! Switching Protocols` (`crate::h1::upgrade`), the proxy copies bytes both ways and reads none
//! of them. The tunnel stays the client connection's task, so it counts against the listener's
//! connection caps and the drain waits for it (up to `timeouts.drain_ms`, when the worker stops
//! and closes it); `timeouts.upgraded_idle_ms` closes one on which nothing moved either way.
//! An HTTP/2 client's WebSocket (RFC 8441, [`super::connect`]) is the same copy between its
//! stream and the upstream socket, in a task of its own that its connection waits for.

use std::{
    cell::Cell,
    io,
    pin::{Pin, pin},
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf},
    time::Instant,
};

use crate::{deadline::Timer, metrics};

/// How a tunnel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Both sides closed (each side's close is passed on to the other as a half close).
    Closed,
    /// Nothing moved either way for the idle limit.
    Idle,
    /// A socket failed (a reset, a write to a closed peer).
    Failed,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Idle => "idle",
            Self::Failed => "error",
        }
    }
}

/// Bytes read with the handshake that belong to the new protocol, each due to the other side
/// before anything else.
#[derive(Clone, Copy, Debug, Default)]
pub struct Early<'a> {
    /// What the client sent behind its upgrade request.
    pub from_client: &'a [u8],
    /// What the upstream sent behind its `101`, when the handshake's answer did not carry it.
    pub from_upstream: &'a [u8],
}

/// Copies bytes between `client` and `upstream` until both directions have ended, a socket
/// fails, or nothing has moved either way for `idle`; both are closed when dropped after.
pub async fn splice<C, U>(
    client: &mut C,
    mut upstream: U,
    early: Early<'_>,
    idle: Duration,
    timer: &mut Timer,
) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut open = Open::new();
    let last = Cell::new(Instant::now());
    let copy = async {
        // Flushed: over TLS the bytes could otherwise wait in the session until the copy
        // writes again.
        if !early.from_client.is_empty() {
            upstream.write_all(early.from_client).await?;
            upstream.flush().await?;
            last.set(Instant::now());
        }
        if !early.from_upstream.is_empty() {
            client.write_all(early.from_upstream).await?;
            client.flush().await?;
            last.set(Instant::now());
        }
        let mut a = Watched {
            io: client,
            last: &last,
        };
        let mut b = Watched {
            io: &mut upstream,
            last: &last,
        };
        tokio::io::copy_bidirectional(&mut a, &mut b).await
    };
    let mut copy = pin!(copy);
    let end = loop {
        // Re-armed from the last byte moved: busy tunnels wake for it once per idle period.
        match timer.bound(Some(last.get() + idle), copy.as_mut()).await {
            Some(Ok(_)) => break End::Closed,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "upgraded connection failed");
                break End::Failed;
            }
            None if last.get() + idle <= Instant::now() => break End::Idle,
            None => {}
        }
    };
    open.ended = Some(end);
    end
}

/// Counts a tunnel open while it lives, and how it ended when it goes: `drain` when the worker
/// stopped at the drain deadline with the tunnel still open.
struct Open {
    ended: Option<End>,
}

impl Open {
    fn new() -> Self {
        ::metrics::gauge!(metrics::UPGRADED_CONNECTIONS).increment(1.0);
        Self { ended: None }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::UPGRADED_CONNECTIONS).decrement(1.0);
        let end = self.ended.map_or("drain", End::as_str);
        ::metrics::counter!(metrics::UPGRADED_ENDED, "end" => end).increment(1);
    }
}

/// A socket that notes when it last moved a byte either way.
struct Watched<'a, S> {
    io: &'a mut S,
    last: &'a Cell<Instant>,
}

impl<S> Watched<'_, S> {
    fn moved(&self, n: usize) {
        if n > 0 {
            self.last.set(Instant::now());
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.io).poll_read(cx, buf);
        self.moved(buf.filled().len() - before);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut *self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.moved(n);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::{io::AsyncReadExt, net::TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// Client <-> (proxy's client side | proxy's upstream side) <-> upstream, on a paused clock.
    #[tokio::test(start_paused = true)]
    async fn bytes_cross_both_ways_and_an_idle_tunnel_ends() {
        let deadlines = crate::deadline::Deadlines::new();
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                tokio::task::spawn_local(deadlines.clone().sweep());
                let (mut client, mut proxy_client) = pair().await;
                let (proxy_up, mut upstream) = pair().await;
                let mut timer = deadlines.timer();
                let tunnel = tokio::task::spawn_local(async move {
                    let early = Early {
                        from_client: b"early",
                        from_upstream: b"first",
                    };
                    splice(
                        &mut proxy_client,
                        proxy_up,
                        early,
                        Duration::from_secs(30),
                        &mut timer,
                    )
                    .await
                });
                let mut got = [0u8; 5];
                upstream.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"early");
                client.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"first");
                upstream.write_all(b"pong").await.unwrap();
                let mut got = [0u8; 4];
                client.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"pong");
                // Quiet for longer than the limit: both sides are closed.
                tokio::time::sleep(Duration::from_secs(31)).await;
                assert_eq!(tunnel.await.unwrap(), End::Idle);
                assert_eq!(client.read(&mut got).await.unwrap(), 0);
                assert_eq!(upstream.read(&mut got).await.unwrap(), 0);
            })
            .await;
    }

    #[tokio::test]
    async fn a_close_on_either_side_is_passed_on() {
        let deadlines = crate::deadline::Deadlines::new();
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                tokio::task::spawn_local(deadlines.clone().sweep());
                let (mut client, mut proxy_client) = pair().await;
                let (proxy_up, mut upstream) = pair().await;
                let mut timer = deadlines.timer();
                let tunnel = tokio::task::spawn_local(async move {
                    splice(
                        &mut proxy_client,
                        proxy_up,
                        Early::default(),
                        Duration::from_secs(30),
                        &mut timer,
                    )
                    .await
                });
                client.write_all(b"bye").await.unwrap();
                client.shutdown().await.unwrap();
                let mut got = Vec::new();
                upstream.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, b"bye");
                upstream.write_all(b"ok").await.unwrap();
                drop(upstream);
                let mut got = Vec::new();
                client.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, b"ok");
                assert_eq!(tunnel.await.unwrap(), End::Closed);
            })
            .await;
    }
}
