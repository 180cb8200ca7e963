//! Socket helpers for the connection: what a client connection's bytes travel on ([`ClientIo`]:
//! a TCP socket, or a TLS session over one), the HTTP/2 hand-off stream that replays the bytes
//! already read, and short error responses written before closing.

use std::{
    cell::RefCell,
    io,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use http::StatusCode;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{
        TcpStream,
        tcp::{ReadHalf, WriteHalf},
    },
};
use tokio_rustls::server::TlsStream;

/// A client connection's byte stream. The HTTP/1.1 connection reads and writes through two
/// halves at once (a request body coming in while its response goes out). Generic rather than
/// boxed, so the plaintext path keeps tokio's own borrowed halves of the socket.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + 'static {
    type Rd<'a>: AsyncRead + Unpin
    where
        Self: 'a;
    type Wr<'a>: AsyncWrite + Unpin
    where
        Self: 'a;
    /// Whether written bytes may wait inside the stream until flushed (TLS records do; a
    /// socket's are in the kernel once written).
    const BUFFERED: bool;

    fn halves(&mut self) -> (Self::Rd<'_>, Self::Wr<'_>);
}

impl ClientIo for TcpStream {
    type Rd<'a> = ReadHalf<'a>;
    type Wr<'a> = WriteHalf<'a>;
    const BUFFERED: bool = false;

    fn halves(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        self.split()
    }
}

/// A client connection over TLS, once its handshake is done.
pub struct TlsConn(RefCell<TlsStream<TcpStream>>);

impl TlsConn {
    pub fn new(s: TlsStream<TcpStream>) -> Self {
        Self(RefCell::new(s))
    }
}

/// One half of a [`TlsConn`]. Both halves share the session: a connection is served by one task
/// on one thread, each half borrows the session only inside one of its polls, and a TLS
/// session's poll never calls back into the other half, so the two borrows never overlap.
pub struct TlsHalf<'a>(&'a RefCell<TlsStream<TcpStream>>);

impl ClientIo for TlsConn {
    type Rd<'a> = TlsHalf<'a>;
    type Wr<'a> = TlsHalf<'a>;
    const BUFFERED: bool = true;

    fn halves(&mut self) -> (TlsHalf<'_>, TlsHalf<'_>) {
        (TlsHalf(&self.0), TlsHalf(&self.0))
    }
}

impl AsyncRead for TlsHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsHalf<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_shutdown(cx)
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().0.get_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().0.get_mut()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().0.get_mut()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.borrow().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().0.get_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().0.get_mut()).poll_shutdown(cx)
    }
}

/// A stream that yields `prefix` before reading from `inner`.
pub struct Rewind<S> {
    pub prefix: Bytes,
    pub inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A short plain-text error response that closes the connection.
pub fn error_response(status: StatusCode, code: &str, msg: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\nloadshift-error: {code}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{msg}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        msg.len() + 1
    )
    .into_bytes()
}
