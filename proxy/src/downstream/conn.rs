//! One client connection: read a head, run the request path, stream the request body in and the
//! response out, repeat while keep-alive holds. Between requests the connection owns no buffer.

use std::{future::poll_fn, io, pin::Pin, rc::Rc, task::Poll, time::Duration};

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
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf},
    net::{
        TcpStream,
        tcp::{ReadHalf, WriteHalf},
    },
    sync::{mpsc, watch},
    time::Instant,
};

use super::io::{Rewind, write_error};
use crate::{
    deadline::Timer,
    h1::{
        chunked::{self, Decoder, Step},
        framing::{Framing, push_field},
        request::{self, Head, HeadError},
        response,
    },
    request::{RespBody, Side, Worker, handle},
    spare,
    upstream::LocalExec,
    upstream::body::{BodyError, ReqBody},
};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes asked of the socket per read while a head or body is in progress.
const READ_CHUNK: usize = 16 * 1024;
/// Response bytes gathered before a write; larger body chunks are written as they come.
const WRITE_BATCH: usize = 16 * 1024;

/// Client-side timeouts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From a head's first byte to its end.
    pub header_read: Duration,
    /// An idle keep-alive connection is closed after this long; `None` keeps it open.
    pub idle: Option<Duration>,
}

/// Serves one accepted connection until it closes, fails, or the worker drains.
pub async fn serve(
    mut stream: TcpStream,
    side: Side,
    w: Rc<Worker>,
    limits: Limits,
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
            return Box::pin(serve_h2(io, side, w, shutdown)).await;
        }
        carry.reserve(PREFACE.len());
        let read = stream.read_buf(&mut carry);
        let got = tokio::select! {
            r = timer.bound(limits.idle.map(|d| Instant::now() + d), read) => r,
            _ = shutdown.wait_for(|&s| s) => return,
        };
        match got {
            Some(Ok(0)) | Some(Err(_)) | None => return,
            Some(Ok(_)) => {}
        }
    }
    serve_h1(stream, carry, &mut timer, side, w, limits, shutdown).await;
}

async fn serve_h2(io: Rewind, side: Side, w: Rc<Worker>, mut shutdown: watch::Receiver<bool>) {
    let svc = service_fn(move |req: Request<Incoming>| {
        let w = w.clone();
        async move {
            let Ok(mut resp) = handle(w, side, req.map(ReqBody::Hyper)).await;
            // An HTTP/1.1 upstream's fields travel raw; an HTTP/2 client needs them as a map.
            if let RespBody::H1(b) = resp.body_mut()
                && let Some(raw) = b.take_fields()
            {
                resp.headers_mut().extend(raw.to_header_map());
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http2::Builder::new(LocalExec)
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => { let _ = r; }
        _ = shutdown.wait_for(|&s| s) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
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

async fn serve_h1(
    mut stream: TcpStream,
    mut carry: BytesMut,
    timer: &mut Timer,
    side: Side,
    w: Rc<Worker>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = stream.split();
    loop {
        if carry.is_empty() {
            // Idle: give the buffer back.
            carry = BytesMut::new();
        }
        let head = match read_head(&mut rd, &w, &mut carry, timer, limits, &mut shutdown).await {
            HeadRead::Head(h) => h,
            HeadRead::Close => return,
            HeadRead::Refused(e) => {
                let _ = write_error(&mut wr, e.status(), "bad-request", &e.to_string()).await;
                return;
            }
            HeadRead::TimedOut => {
                let _ = write_error(
                    &mut wr,
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
        let exchange = exchange(&mut rd, &mut wr, &mut carry, &w, side, head, close);
        if !Box::pin(exchange).await {
            let _ = wr.shutdown().await;
            return;
        }
    }
}

/// One request and its response; true when the connection may carry another.
async fn exchange(
    rd: &mut ReadHalf<'_>,
    wr: &mut WriteHalf<'_>,
    carry: &mut BytesMut,
    w: &Rc<Worker>,
    side: Side,
    head: Head,
    draining: bool,
) -> bool {
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
        && wr
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return false;
    }

    let mut pump = feed.map(|(tx, f)| Box::pin(pump_body(rd, carry, f, tx)));
    let mut body_read = pump.is_none();
    // In a block of its own so the handler's state and the response writer's do not both take
    // room in this future, which is boxed once per request.
    let resp = {
        let handler = std::pin::pin!(handle(w.clone(), side, Request::from_parts(parts, body)));
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
    let Ok(resp) = resp;
    let close = !keep_alive || draining;
    let write = write_response(wr, resp, &method, version, close);
    let wrote = match pump {
        Some(p) => {
            let (wrote, pumped) = join(write, p).await;
            body_read = pumped.is_ok();
            wrote
        }
        None => write.await,
    };
    matches!(wrote, Ok(true)) && body_read && !close
}

/// Waits for and parses the next head. While idle it reads into the worker's scratch buffer
/// (borrowed only inside one poll) and keeps just the bytes after the head.
async fn read_head(
    rd: &mut ReadHalf<'_>,
    w: &Worker,
    carry: &mut BytesMut,
    timer: &mut Timer,
    limits: Limits,
    shutdown: &mut watch::Receiver<bool>,
) -> HeadRead {
    let mut deadline = (!carry.is_empty()).then(|| Instant::now() + limits.header_read);
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
                carry.reserve(READ_CHUNK);
                match rd.read_buf(carry).await {
                    Ok(0) => Ok(None),
                    Ok(_) => Ok(Some(Err(None))),
                    Err(e) => Err(e),
                }
            }
        };
        let wait = if idle {
            limits.idle.map(|d| Instant::now() + d)
        } else {
            deadline
        };
        let got = tokio::select! {
            r = timer.bound(wait, read) => r,
            _ = shutdown.wait_for(|&s| s), if idle => return HeadRead::Close,
        };
        match got {
            None if idle => return HeadRead::Close,
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

/// Moves a request body from the socket to the request's body stream.
async fn pump_body(
    rd: &mut ReadHalf<'_>,
    carry: &mut BytesMut,
    feed: Feed,
    tx: mpsc::Sender<Result<bytes::Bytes, BodyError>>,
) -> Result<(), Unread> {
    let fail = |tx: mpsc::Sender<Result<bytes::Bytes, BodyError>>, e: BodyError| async move {
        let _ = tx.send(Err(e)).await;
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
            if let Err(e) = read_more(rd, carry).await {
                return Err(fail(tx, e.into()).await);
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
                    Err(e) => return Err(fail(tx, e.into()).await),
                }
            }
            if let Err(e) = read_more(rd, carry).await {
                return Err(fail(tx, e.into()).await);
            }
        },
    }
}

async fn read_more(rd: &mut ReadHalf<'_>, carry: &mut BytesMut) -> io::Result<()> {
    carry.reserve(READ_CHUNK);
    match rd.read_buf(carry).await? {
        0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "client closed the connection inside the request body",
        )),
        _ => Ok(()),
    }
}

/// Writes a response; `Ok(true)` when the connection may carry another request.
async fn write_response(
    wr: &mut WriteHalf<'_>,
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
        close,
    );
    drop(raw);
    spare::give_map(std::mem::take(&mut parts.headers));
    if framing == Framing::None {
        wr.write_all(&out).await?;
        return Ok(!close);
    }
    let chunked = framing == Framing::Chunked;
    let mut body = std::pin::pin!(body);
    let mut trailers = None;
    let mut sent = 0u64;
    loop {
        // The first chunk is usually there already: then head and body leave in one write.
        let frame = match body.frame().now_or_never() {
            Some(f) => f,
            None => {
                flush(wr, &mut out).await?;
                body.frame().await
            }
        };
        let Some(frame) = frame else { break };
        // An upstream failing mid-body can only be told to an HTTP/1.1 client by closing.
        let frame = frame.map_err(io::Error::other)?;
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
            flush(wr, &mut out).await?;
            wr.write_all(&data).await?;
        } else {
            out.extend_from_slice(&data);
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= WRITE_BATCH {
            flush(wr, &mut out).await?;
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
    flush(wr, &mut out).await?;
    Ok(!close)
}

async fn flush(wr: &mut WriteHalf<'_>, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        wr.write_all(out).await?;
        out.clear();
    }
    Ok(())
}
