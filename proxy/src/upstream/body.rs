//! Request bodies as the upstream connection sees them: nothing, bytes that arrived with the
//! head, a stream fed by the HTTP/1.1 connection that read the head, or hyper's HTTP/2 body.
//! One type for every listener, so the request path and the upstream pool are not generic.
//! Response bodies likewise: the upstream's, the proxy's own, or the upstream's cut off at a
//! gRPC call's deadline.

use std::{
    error::Error,
    future::Future,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    time::Duration,
};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::mpsc;

use crate::deadline::Alarm;

pub use crate::error::{ClientBodyError, client_fault};

/// Error of a body. A request body's errors are always a [`ClientBodyError`].
pub type BodyError = Box<dyn Error + Send + Sync>;

/// How reading a request body from the client goes, seen from the request path: whether it
/// was read to its end (the request timeout starts then), how far the upload has got and
/// whether it waits for the client (so an upstream that stops taking the body is told from a
/// client that stops sending it), and the client's fault if it failed (an upstream client
/// library may report it as its own).
#[derive(Clone, Debug, Default)]
pub struct BodyDone(Arc<BodyFlags>);

#[derive(Debug, Default)]
struct BodyFlags {
    done: AtomicBool,
    fault: OnceLock<ClientBodyError>,
    /// Frames handed to the upstream side so far.
    frames: AtomicU64,
    /// The upstream side asked for the next frame and nothing has arrived since.
    waiting: AtomicBool,
    /// Woken when the body ends, whole or failed.
    ended: AtomicWaker,
    /// The upstream side's waker while it waits for the client.
    reader: AtomicWaker,
}

/// The waker the client's side of a body is polled with: when something arrives the body is
/// no longer waiting for the client, whether or not the upstream side comes back for it (it
/// may have polled once in passing and be stuck writing to an upstream that reads nothing).
impl Wake for BodyFlags {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.waiting.store(false, Ordering::Relaxed);
        self.reader.wake();
    }
}

/// How far an upload has got, from [`BodyDone::progress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upload {
    pub frames: u64,
    /// Waiting for the client: its own progress limit governs.
    pub waiting: bool,
}

impl BodyDone {
    pub fn get(&self) -> bool {
        self.0.done.load(Ordering::Relaxed)
    }

    fn set(&self) {
        self.0.done.store(true, Ordering::Relaxed);
        self.0.ended.wake();
    }

    /// True once the body is whole or has failed: nothing more will come from the client.
    pub fn ended(&self) -> bool {
        self.get() || self.0.fault.get().is_some()
    }

    /// Resolves when [`BodyDone::ended`] becomes true.
    pub fn wait_ended(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            if self.ended() {
                return Poll::Ready(());
            }
            self.0.ended.register(cx.waker());
            if self.ended() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    pub fn progress(&self) -> Upload {
        Upload {
            frames: self.0.frames.load(Ordering::Relaxed),
            waiting: self.0.waiting.load(Ordering::Relaxed),
        }
    }

    fn delivered(&self) {
        self.0.frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Polls the client's side with a waker that records when something arrives.
    fn poll_client<T>(
        &self,
        cx: &Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.0.reader.register(cx.waker());
        let waker = Waker::from(Arc::clone(&self.0));
        let r = poll(&mut Context::from_waker(&waker));
        self.0.waiting.store(r.is_pending(), Ordering::Relaxed);
        r
    }

    /// The client's fault that ended the body, if one did.
    pub fn fault(&self) -> Option<&ClientBodyError> {
        self.0.fault.get()
    }

    /// Records `e` as the body's fault and returns it as a body error.
    fn fail(&self, e: ClientBodyError) -> BodyError {
        let _ = self.0.fault.set(e.clone());
        self.0.waiting.store(false, Ordering::Relaxed);
        self.0.ended.wake();
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
    /// start (an HTTP/2 request whose HEADERS frame ended the stream included).
    pub fn done(&self) -> Option<BodyDone> {
        match self {
            Self::Empty | Self::Full(_) => None,
            Self::Hyper { body, .. } if body.is_end_stream() => None,
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
            } => {
                let r = done.poll_client(cx, |cx| rx.poll_recv(cx));
                r.map(|r| Self::stream_frame(r, remaining, done))
            }
            Self::Hyper { body, done, stall } => {
                let r = done.poll_client(cx, |cx| match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Pending => stall.poll_stalled(cx).map(|()| None),
                    Poll::Ready(r) => Poll::Ready(Some(r)),
                });
                match r {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(None) => {
                        Poll::Ready(Some(Err(done.fail(ClientBodyError::Stalled(stall.limit)))))
                    }
                    Poll::Ready(Some(r)) => {
                        stall.progressed();
                        let r = Self::hyper_frame(r, done);
                        // The upstream side asks no further once the stream says it has ended.
                        if body.is_end_stream() {
                            done.set();
                        }
                        Poll::Ready(r)
                    }
                }
            }
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
    fn stream_frame(
        r: Option<Result<Bytes, BodyError>>,
        remaining: &mut Option<u64>,
        done: &BodyDone,
    ) -> Option<Result<Frame<Bytes>, BodyError>> {
        match r {
            Some(Ok(b)) => {
                done.delivered();
                if let Some(r) = remaining {
                    *r = r.saturating_sub(b.len() as u64);
                    // The upstream side asks no further once the length is reached.
                    if *r == 0 {
                        done.set();
                    }
                }
                Some(Ok(Frame::data(b)))
            }
            Some(Err(e)) => {
                let fault = client_fault(&*e)
                    .cloned()
                    .unwrap_or_else(|| ClientBodyError::Aborted(e.to_string()));
                Some(Err(done.fail(fault)))
            }
            None if remaining.is_some_and(|r| r > 0) => {
                Some(Err(done.fail(ClientBodyError::Closed)))
            }
            None => {
                done.set();
                None
            }
        }
    }

    fn hyper_frame(
        r: Option<Result<Frame<Bytes>, hyper::Error>>,
        done: &BodyDone,
    ) -> Option<Result<Frame<Bytes>, BodyError>> {
        match r {
            Some(Ok(f)) => {
                done.delivered();
                Some(Ok(f))
            }
            Some(Err(e)) => Some(Err(done.fail(ClientBodyError::Aborted(e.to_string())))),
            None => {
                done.set();
                None
            }
        }
    }
}

/// A response body: the upstream's (HTTP/1.1 read inline, or hyper's HTTP/2 stream), one the
/// proxy wrote itself, or the upstream's cut off at a gRPC call's deadline.
pub enum RespBody {
    Local(Option<Bytes>),
    H1(super::H1Body),
    H2(Incoming),
    Deadline(Box<CallBody>),
}

impl RespBody {
    /// A body the proxy wrote.
    pub fn local(b: impl Into<Bytes>) -> Self {
        Self::Local(Some(b.into()))
    }

    /// `self` cut off at `alarm`: past it the rest is dropped (an HTTP/2 upstream's stream is
    /// reset) and the client gets the trailers `expired` makes instead, its call's status.
    pub fn until(self, alarm: Alarm, expired: fn() -> HeaderMap) -> Self {
        Self::Deadline(Box::new(CallBody {
            inner: self,
            alarm,
            expired: Some(expired),
        }))
    }
}

/// A response body with a deadline, from [`RespBody::until`].
pub struct CallBody {
    inner: RespBody,
    alarm: Alarm,
    /// Taken when the deadline passes.
    expired: Option<fn() -> HeaderMap>,
}

impl CallBody {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        // The alarm first: an upstream that streams without pause is cut off too.
        if let Some(expired) = self.expired
            && self.alarm.poll(cx).is_ready()
        {
            self.expired = None;
            self.inner = RespBody::Local(None);
            return Poll::Ready(Some(Ok(Frame::trailers(expired()))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
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
            Self::Deadline(b) => b.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Local(b) => b.is_none(),
            Self::H1(b) => b.is_end_stream(),
            Self::H2(b) => b.is_end_stream(),
            Self::Deadline(b) => b.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Self::H1(b) => b.size_hint(),
            Self::H2(b) => b.size_hint(),
            Self::Deadline(b) => b.inner.size_hint(),
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
