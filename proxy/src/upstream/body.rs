//! Request bodies as the upstream connection sees them: nothing, bytes that arrived with the
//! head, a stream fed by the HTTP/1.1 connection that read the head, or hyper's HTTP/2 body.
//! One type for every listener, so the request path and the upstream pool are not generic.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::mpsc;

/// Error of a request body (the client went away or sent a malformed body).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

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
    },
    Hyper(Incoming),
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
            },
        )
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
            Self::Stream { rx, remaining } => match ready!(rx.poll_recv(cx)) {
                Some(Ok(b)) => {
                    if let Some(r) = remaining {
                        *r = r.saturating_sub(b.len() as u64);
                    }
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                Some(Err(e)) => Poll::Ready(Some(Err(e))),
                None if remaining.is_some_and(|r| r > 0) => Poll::Ready(Some(Err(
                    "client connection closed before the request body was complete".into(),
                ))),
                None => Poll::Ready(None),
            },
            Self::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(b) => b.is_none(),
            Self::Stream { remaining, .. } => *remaining == Some(0),
            Self::Hyper(b) => b.is_end_stream(),
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
            Self::Hyper(b) => b.size_hint(),
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
        tx.send(Ok(Bytes::from_static(b"hel"))).await.unwrap();
        drop(tx);
        assert!(body.collect().await.is_err());
    }
}
