//! Request bodies as the upstream connection sees them: nothing, bytes that arrived with the
//! head, a stream fed by the HTTP/1.1 connection that read the head, or hyper's HTTP/2 body.
//! One type for every listener, so the request path and the upstream pool are not generic.

use std::{
    error::Error,
    future::Future,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::mpsc;

pub use crate::error::{ClientBodyError, client_fault};

/// Error of a body. A request body's errors are always a [`ClientBodyError`].
pub type BodyError = Box<dyn Error + Send + Sync>;

/// How reading a request body from the client went, seen from the request path: whether it
/// was read to its end (so a request timeout can tell a slow client from a slow upstream), and
/// the client's fault if it failed (an upstream client library may report it as its own).
#[derive(Clone, Debug, Default)]
pub struct BodyDone(Arc<BodyFlags>);

#[derive(Debug, Default)]
struct BodyFlags {
    done: AtomicBool,
    fault: OnceLock<ClientBodyError>,
}

impl BodyDone {
    pub fn get(&self) -> bool {
        self.0.done.load(Ordering::Relaxed)
    }

    fn set(&self) {
        self.0.done.store(true, Ordering::Relaxed);
    }

    /// The client's fault that ended the body, if one did.
    pub fn fault(&self) -> Option<&ClientBodyError> {
        self.0.fault.get()
    }

    /// Records `e` as the body's fault and returns it as a body error.
    fn fail(&self, e: ClientBodyError) -> BodyError {
        let _ = self.0.fault.set(e.clone());
        Box::new(e)
    }
}

/// Chunks in flight between a connection's reader and the upstream writer: a slow upstream
/// holds the client back after this many (each at most one socket read).
pub const STREAM_DEPTH: usize = 4;

/// A request body.
#[derive(Debug)]
pub enum ReqBody {
    Empty,
    /// The whole body, already read with the head.
    Full(Option<Bytes>),
    /// Fed chunk by chunk; `remaining` is known for `Content-Length` framing.
    Stream {
        rx: mpsc::Receiver<Result<Bytes, BodyError>>,
        remaining: Option<u64>,
        done: BodyDone,
    },
    /// An HTTP/2 client's body; hyper's own has no progress limit, so `stall` adds one.
    Hyper {
        body: Incoming,
        done: BodyDone,
        stall: Stall,
    },
}

/// Fails a body that delivers nothing for `limit` while it is being waited for.
#[derive(Debug)]
pub struct Stall {
    limit: Duration,
    /// Kept between waits so a body that stalls often allocates once.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl Stall {
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            sleep: None,
            armed: false,
        }
    }

    fn progressed(&mut self) {
        self.armed = false;
    }

    /// Called when the body is pending: ready once it has been pending for `limit`.
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.armed {
            let at = tokio::time::Instant::now() + self.limit;
            match &mut self.sleep {
                Some(s) => s.as_mut().reset(at),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
            }
            self.armed = true;
        }
        match &mut self.sleep {
            Some(s) => s.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

impl ReqBody {
    /// A streamed body and the sender that feeds it.
    pub fn channel(length: Option<u64>) -> (mpsc::Sender<Result<Bytes, BodyError>>, Self) {
        let (tx, rx) = mpsc::channel(STREAM_DEPTH);
        (
            tx,
            Self::Stream {
                rx,
                remaining: length,
                done: BodyDone::default(),
            },
        )
    }

    /// An HTTP/2 client's body, failed as stalled when it delivers nothing for `progress`.
    pub fn hyper(body: Incoming, progress: Duration) -> Self {
        Self::Hyper {
            body,
            done: BodyDone::default(),
            stall: Stall::new(progress),
        }
    }

    /// Whether the body has been read to its end; `None` for a body that was whole from the
    /// start.
    pub fn done(&self) -> Option<BodyDone> {
        match self {
            Self::Empty | Self::Full(_) => None,
            Self::Stream { done, .. } | Self::Hyper { done, .. } => Some(done.clone()),
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream {
                rx,
                remaining,
                done,
            } => match ready!(rx.poll_recv(cx)) {
                Some(Ok(b)) => {
                    if let Some(r) = remaining {
                        *r = r.saturating_sub(b.len() as u64);
                    }
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                Some(Err(e)) => {
                    let fault = client_fault(&*e)
                        .cloned()
                        .unwrap_or_else(|| ClientBodyError::Aborted(e.to_string()));
                    Poll::Ready(Some(Err(done.fail(fault))))
                }
                None if remaining.is_some_and(|r| r > 0) => {
                    Poll::Ready(Some(Err(done.fail(ClientBodyError::Closed))))
                }
                None => {
                    done.set();
                    Poll::Ready(None)
                }
            },
            Self::Hyper { body, done, stall } => match Pin::new(body).poll_frame(cx) {
                Poll::Pending => match stall.poll_stalled(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(done.fail(ClientBodyError::Stalled(stall.limit)))))
                    }
                    Poll::Pending => Poll::Pending,
                },
                Poll::Ready(r) => {
                    stall.progressed();
                    Self::hyper_frame(r, done)
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(b) => b.is_none(),
            Self::Stream { remaining, .. } => *remaining == Some(0),
            Self::Hyper { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream {
                remaining: Some(n), ..
            } => SizeHint::with_exact(*n),
            Self::Stream { .. } => SizeHint::default(),
            Self::Hyper { body, .. } => body.size_hint(),
        }
    }
}

impl ReqBody {
    fn hyper_frame(
        r: Option<Result<Frame<Bytes>, hyper::Error>>,
        done: &BodyDone,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match r {
            Some(Ok(f)) => Poll::Ready(Some(Ok(f))),
            Some(Err(e)) => Poll::Ready(Some(Err(
                done.fail(ClientBodyError::Aborted(e.to_string()))
            ))),
            None => {
                done.set();
                Poll::Ready(None)
            }
        }
    }
}

/// A response body: the upstream's (HTTP/1.1 read inline, or hyper's HTTP/2 stream) or one the
/// proxy wrote itself.
pub enum RespBody {
    Local(Option<Bytes>),
    H1(super::H1Body),
    H2(Incoming),
}

impl RespBody {
    /// A body the proxy wrote.
    pub fn local(b: impl Into<Bytes>) -> Self {
        Self::Local(Some(b.into()))
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Local(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::H1(b) => Pin::new(b).poll_frame(cx),
            Self::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Local(b) => b.is_none(),
            Self::H1(b) => b.is_end_stream(),
            Self::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Self::H1(b) => b.size_hint(),
            Self::H2(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn streamed_body_ends_cleanly_or_reports_a_short_body() {
        let (tx, body) = ReqBody::channel(Some(5));
        assert_eq!(body.size_hint().exact(), Some(5));
        tx.send(Ok(Bytes::from_static(b"hel"))).await.unwrap();
        tx.send(Ok(Bytes::from_static(b"lo"))).await.unwrap();
        drop(tx);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");

        let (tx, body) = ReqBody::channel(Some(5));
        let done = body.done().unwrap();
        tx.send(Ok(Bytes::from_static(b"hel"))).await.unwrap();
        drop(tx);
        let e = body.collect().await.unwrap_err();
        assert_eq!(client_fault(&*e), Some(&ClientBodyError::Closed));
        assert!(!done.get());

        let (tx, body) = ReqBody::channel(None);
        let done = body.done().unwrap();
        tx.send(Ok(Bytes::from_static(b"x"))).await.unwrap();
        drop(tx);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "x");
        assert!(done.get());
    }

    #[test]
    fn a_wrapped_client_fault_is_found_in_the_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("user body failed")]
        struct Wrapper(#[source] ClientBodyError);
        let w = Wrapper(ClientBodyError::Stalled(Duration::from_secs(3)));
        assert_eq!(
            client_fault(&w),
            Some(&ClientBodyError::Stalled(Duration::from_secs(3)))
        );
        assert_eq!(client_fault(&std::io::Error::other("x")), None);
    }
}
