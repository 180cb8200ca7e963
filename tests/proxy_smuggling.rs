//! The request-smuggling corpus (`tests/corpus/smuggling/`, sources in its README) against a
//! real proxy: each payload on a fresh connection to a fresh proxy whose upstream (hyper) records
//! every byte it receives and every request it reads. The upstream must read exactly the requests
//! the client got separate answers for, in order (so a `/smuggled` request reaches it only as a
//! request the proxy itself framed and answered); every answer is the upstream's 2xx or the
//! proxy's own 4xx/5xx (`loadshift-error`), after which the proxy closes.

// Helpers panic on purpose: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
};

/// Sent after every payload: answered, and the connection closed after it, exactly when the
/// proxy read the payload as complete requests and kept the connection open.
const PROBE: &[u8] = b"GET /probe HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n";

/// A request the upstream read, and whether its body arrived whole (a forward the proxy
/// abandoned when the client's body turned out malformed does not).
#[derive(Clone, Debug)]
struct Forwarded {
    method: String,
    target: String,
    whole: bool,
}

/// One upstream connection: the bytes it received, the targets of the requests hyper took from
/// it, how many it answered, and whether it has ended.
#[derive(Default)]
struct Conn {
    bytes: Vec<u8>,
    taken: Vec<String>,
    answered: usize,
    ended: bool,
}

impl Conn {
    /// Nothing more will be logged from it: it ended, or everything it received was read as
    /// whole requests and answered.
    fn settled(&self) -> bool {
        self.ended
            || (self.taken.len() == self.answered
                && request_lines(&self.bytes)
                    .is_ok_and(|(t, rest)| rest == 0 && t.len() == self.answered))
    }
}

/// A recording upstream: hyper's HTTP/1 server answering `200` with the request's target and
/// method in `x-upstream-path` / `x-upstream-method`.
struct Upstream {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Forwarded>>>,
    conns: Arc<Mutex<Vec<Arc<Mutex<Conn>>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Upstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Forwarded>>> = Arc::default();
        let conns: Arc<Mutex<Vec<Arc<Mutex<Conn>>>>> = Arc::default();
        let (l, c) = (log.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = Arc::new(Mutex::new(Conn::default()));
                c.lock().unwrap().push(conn.clone());
                tokio::spawn(serve(stream, conn, l.clone()));
            }
        });
        Self {
            addr,
            log,
            conns,
            accept,
        }
    }

    /// Waits (bounded) until every connection has settled.
    async fn settle(&self) -> bool {
        for _ in 0..500 {
            if self
                .conns
                .lock()
                .unwrap()
                .iter()
                .all(|c| c.lock().unwrap().settled())
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

async fn serve(stream: TcpStream, conn: Arc<Mutex<Conn>>, log: Arc<Mutex<Vec<Forwarded>>>) {
    let c = conn.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let (log, conn) = (log.clone(), c.clone());
        async move {
            let (parts, body) = req.into_parts();
            let target = parts.uri.to_string();
            conn.lock().unwrap().taken.push(target.clone());
            let i = {
                let mut l = log.lock().unwrap();
                l.push(Forwarded {
                    method: parts.method.to_string(),
                    target: target.clone(),
                    whole: false,
                });
                l.len() - 1
            };
            let whole = body.collect().await.is_ok();
            log.lock().unwrap()[i].whole = whole;
            let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
            let h = resp.headers_mut();
            h.insert("x-upstream-path", target.parse().unwrap());
            h.insert("x-upstream-method", parts.method.as_str().parse().unwrap());
            conn.lock().unwrap().answered += 1;
            Ok::<_, Infallible>(resp)
        }
    });
    let io = TokioIo::new(Tap {
        io: stream,
        conn: conn.clone(),
    });
    let _ = http1::Builder::new().serve_connection(io, svc).await;
    conn.lock().unwrap().ended = true;
}

/// A socket that keeps a copy of every byte read from it.
struct Tap {
    io: TcpStream,
    conn: Arc<Mutex<Conn>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.conn
                .lock()
                .unwrap()
                .bytes
                .extend_from_slice(&buf.filled()[before..]);
        }
        r
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The request targets in one upstream connection's bytes, framed by each message's own
/// Content-Length or chunked coding (the proxy writes no other framing), and how many bytes
/// are left after the last whole request: a second reading, independent of hyper's, of what
/// request lines reached the upstream. A request whose body was cut off counts; a head cut off
/// does not.
fn request_lines(mut raw: &[u8]) -> Result<(Vec<String>, usize), String> {
    let mut targets = Vec::new();
    while !raw.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 100];
        let mut req = httparse::Request::new(&mut fields);
        let n = match req.parse(raw) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => break,
            Err(e) => return Err(format!("{e} in {:?}", raw.escape_ascii().to_string())),
        };
        targets.push(req.path.unwrap().to_string());
        let field = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
        };
        let body = &raw[n..];
        let used = if field("transfer-encoding").is_some_and(|t| t.ends_with("chunked")) {
            chunked_len(body)
        } else {
            let len: usize = field("content-length").map_or(0, |v| v.parse().unwrap());
            (len <= body.len()).then_some(len)
        };
        match used {
            Some(k) => raw = &body[k..],
            None => break,
        }
    }
    Ok((targets, raw.len()))
}

/// True when `payload` holds a request line `method target` (the target maybe in absolute
/// form) with a registered method (RFC 9110 §9.3).
fn written(payload: &[u8], method: &str, target: &str) -> bool {
    const METHODS: [&str; 8] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
    ];
    let text = String::from_utf8_lossy(payload);
    METHODS.contains(&method)
        && text.match_indices(&format!("{method} ")).any(|(at, m)| {
            let rest = &text[at + m.len()..];
            rest.split(' ')
                .next()
                .is_some_and(|t| t.ends_with(target) && rest[t.len()..].starts_with(" HTTP/"))
        })
}

/// Bytes a well-formed chunked body takes, if it is all there.
fn chunked_len(body: &[u8]) -> Option<usize> {
    let line = |at: usize| {
        body[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| (at + p, at + p + 2))
    };
    let mut at = 0;
    loop {
        let (end, next) = line(at)?;
        let size = std::str::from_utf8(&body[at..end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailer lines, then the empty line.
            let mut at = next;
            loop {
                let (end, next) = line(at)?;
                if end == at {
                    return Some(next);
                }
                at = next;
            }
        }
        at = next + size + 2;
        if at > body.len() {
            return None;
        }
    }
}

/// One response the client got.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn is_the_proxys(&self) -> bool {
        self.header("loadshift-error").is_some()
    }
}

/// Final responses in `raw`, interim ones skipped; the bytes must hold whole responses only.
fn answers(mut raw: &[u8]) -> Result<Vec<Answer>, String> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut fields);
        let n = match r.parse(raw) {
            Ok(httparse::Status::Complete(n)) => n,
            other => {
                return Err(format!(
                    "{other:?} reading a response from {:?}",
                    raw.escape_ascii().to_string()
                ));
            }
        };
        let a = Answer {
            status: r.code.unwrap(),
            headers: r
                .headers
                .iter()
                .map(|h| {
                    let v = String::from_utf8_lossy(h.value).into_owned();
                    (h.name.to_string(), v)
                })
                .collect(),
        };
        let len = if a.status < 200 || a.header("x-upstream-method") == Some("HEAD") {
            0
        } else {
            match a.header("content-length") {
                Some(v) => v.parse().map_err(|_| format!("content-length {v:?}"))?,
                None => return Err(format!("a response without a length: {a:?}")),
            }
        };
        if raw.len() < n + len {
            return Err(format!("a truncated response: {a:?}"));
        }
        raw = &raw[n + len..];
        if a.status >= 200 {
            out.push(a);
        }
    }
    Ok(out)
}

/// Sends `payload` and the probe on a fresh connection to a fresh proxy; checks what the client
/// and the upstream saw. The client's answers on success.
async fn run(payload: &[u8]) -> Result<Vec<Answer>, String> {
    let up = Upstream::start().await;
    let proxy = common::start_proxy(&format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nworkers: 1\n\
         services:\n  - name: web\n    endpoints: [{{ addr: \"{}\" }}]\n",
        up.addr
    ));
    let mut s = TcpStream::connect(proxy.outbound).await.unwrap();
    let mut sent = payload.to_vec();
    sent.extend_from_slice(PROBE);
    // A proxy that refuses early may close before taking it all; what it answered still counts.
    let _ = s.write_all(&sent).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    drop(s);
    // The proxy's workers end with their connections: what they sent has been sent.
    tokio::task::spawn_blocking(move || proxy.shutdown())
        .await
        .unwrap();
    if !up.settle().await {
        return Err("the upstream's connections never settled".into());
    }
    if read.is_err() {
        return Err(format!(
            "the proxy neither answered the probe nor closed; got {:?}",
            got.escape_ascii().to_string()
        ));
    }
    let answers = answers(&got)?;
    let forwarded = up.log.lock().unwrap().clone();

    // On every upstream connection, hyper's reading of its bytes and a plain framing of them
    // agree.
    for conn in up.conns.lock().unwrap().iter() {
        let conn = conn.lock().unwrap();
        let (lines, _) = request_lines(&conn.bytes)?;
        if lines != conn.taken {
            return Err(format!(
                "request lines in an upstream connection's bytes {lines:?}, hyper read {:?}",
                conn.taken
            ));
        }
    }

    // Each answer is the upstream's 2xx or the proxy's error; an error is the last answer (the
    // probe behind it went unanswered: the proxy closed).
    for (i, a) in answers.iter().enumerate() {
        let upstream_ok = (200..300).contains(&a.status) && !a.is_the_proxys();
        let proxy_error = a.status >= 400 && a.is_the_proxys();
        if !(upstream_ok || proxy_error) {
            return Err(format!("answer {i} is neither: {a:?}"));
        }
        if proxy_error && i + 1 != answers.len() {
            return Err(format!(
                "answer {i} is the proxy's error, yet more followed"
            ));
        }
    }
    if answers.last().and_then(|a| a.header("x-upstream-path")) != Some("/probe")
        && !answers.last().is_some_and(Answer::is_the_proxys)
    {
        return Err("the probe went unanswered though nothing was refused".into());
    }

    // The upstream read no request line the client did not write: every one is in the payload
    // (an absolute-form target is forwarded in origin form), with a registered method (the
    // corpus uses no other, so another is the tail of some body read as a method).
    if let Some(f) = forwarded
        .iter()
        .find(|f| !written(&sent, &f.method, &f.target))
    {
        return Err(format!(
            "the upstream read {} {}, which the client never wrote",
            f.method, f.target
        ));
    }

    // One to one, in order: the i-th request the upstream read is the i-th answer's. A forward
    // the proxy abandoned (its body never arrived whole) belongs to the proxy's final error.
    if forwarded.len() > answers.len() {
        return Err(format!(
            "the upstream read {} requests ({forwarded:?}), the client got {} answers",
            forwarded.len(),
            answers.len()
        ));
    }
    for (i, a) in answers.iter().enumerate() {
        let f = forwarded.get(i);
        let fits = match (a.is_the_proxys(), f) {
            (false, Some(f)) => f.whole && a.header("x-upstream-path") == Some(f.target.as_str()),
            (true, Some(f)) => !f.whole,
            (true, None) => true,
            (false, None) => false,
        };
        if !fits {
            return Err(format!(
                "answer {i} ({a:?}) does not answer the upstream's request {f:?}"
            ));
        }
    }
    Ok(answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_corpus_payload_smuggles_a_request_past_the_proxy() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/smuggling");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "http"))
        .collect();
    files.sort();
    assert!(files.len() >= 25, "{} payloads", files.len());
    let (mut failures, mut refused, mut smuggled_answered) = (Vec::new(), 0, 0);
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy();
        match run(&std::fs::read(path).unwrap()).await {
            Ok(answers) => {
                refused += usize::from(answers.first().is_some_and(Answer::is_the_proxys));
                smuggled_answered += answers
                    .iter()
                    .filter(|a| a.header("x-upstream-path") == Some("/smuggled"))
                    .count();
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The corpus exercises both outcomes: refusals, and a `/smuggled` that is plainly a
    // pipelined request of its own and so is forwarded and answered separately.
    assert!(refused >= files.len() / 2, "{refused} refused");
    assert!(smuggled_answered >= 3, "{smuggled_answered} answered");
}
