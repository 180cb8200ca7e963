//! What bounds one request in time, chosen when it arrives (`docs/security.md`, "Timeouts"):
//!
//! - **The request timeout** (`timeouts.request_ms`) starts when the proxy has the whole request
//!   body (on arrival for a request whose body came with its head; when the client's last byte
//!   has been handed on for one that streams) and ends at the upstream's response head. It
//!   spans every attempt: a retry gets what is left, never a fresh timeout. A slow upload is
//!   not the upstream's slowness, so it does not count (Envoy's route timeout starts at the
//!   same point).
//! - **A gRPC call's deadline** is the client's own (`grpc-timeout`, capped by
//!   `timeouts.grpc_max_ms` when that is set, and the upstream is then told the shorter one).
//!   It starts when the call arrives and ends with its response's trailers: the upload, every
//!   attempt and the response stream are inside it. `request_ms` does not apply to gRPC calls,
//!   which may stream for as long as both sides keep going; one without `grpc-timeout` and
//!   without a cap is bounded only by the progress limits, as it would be talking to the server
//!   directly (Envoy's `max_grpc_timeout` works the same way).
//! - **While a body streams**, its upload is bounded by progress (`timeouts.body_progress_ms`):
//!   a client that sends nothing while the upstream waits fails its own body (408, in
//!   `upstream::body` and the HTTP/1.1 connection); an upstream that takes nothing while the
//!   client has more to give fails here (504 `upload-stalled`, charged to the endpoint).
//!
//! Which limit ran out decides whose fault it was: the client's own deadline is never charged
//! to an endpoint; the request timeout and the proxy's cap are, unless the client was still
//! sending.

use std::{net::SocketAddr, pin::pin, rc::Rc, time::Duration};

use futures_util::future::{Either, select};
use http::{HeaderMap, Response};
use tokio::time::Instant;

use crate::{
    deadline::Deadlines,
    error::ProxyError,
    grpc, reply,
    upstream::body::{BodyDone, RespBody},
};

/// The configured limits (`timeouts`), per worker.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// `request_ms`; `None` when 0.
    pub request: Option<Duration>,
    /// `grpc_max_ms`; `None` when 0.
    pub grpc_max: Option<Duration>,
    /// `body_progress_ms`.
    pub body_progress: Duration,
}

impl From<&crate::config::Timeouts> for Params {
    fn from(t: &crate::config::Timeouts) -> Self {
        let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
        Self {
            request: ms(t.request_ms),
            grpc_max: ms(t.grpc_max_ms),
            body_progress: Duration::from_millis(t.body_progress_ms),
        }
    }
}

/// The limit a request runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limit {
    /// Only the progress limits.
    None,
    /// The request timeout, from the end of the request body to the response head.
    AfterBody(Duration),
    /// A gRPC call's deadline; `ours` when the proxy's cap set it rather than the client.
    Call { at: Instant, ours: bool },
}

/// Why an attempt was cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The request's limit passed.
    Deadline,
    /// The upstream took none of the body for `body_progress_ms` while nothing waited for the
    /// client.
    UploadStalled,
}

/// One request's time limits, across its attempts.
pub struct RequestTime {
    limit: Limit,
    /// The request body while it may still stream; `None` when it came whole with the head.
    body: Option<BodyDone>,
    progress: Duration,
    /// When the request timeout ends, once the body is whole.
    after_body: Option<Instant>,
    deadlines: Rc<Deadlines>,
}

impl RequestTime {
    /// The limits of a request that arrived at `arrived`. A gRPC call's `grpc-timeout` is read
    /// (a malformed one refuses the call) and, when the proxy's cap is shorter, replaced by it
    /// in `headers` so the upstream gives up when the proxy does.
    pub fn new(
        headers: &mut HeaderMap,
        is_grpc: bool,
        params: Params,
        arrived: Instant,
        body: Option<BodyDone>,
        deadlines: Rc<Deadlines>,
    ) -> Result<Self, ProxyError> {
        let limit = if is_grpc {
            let asked = match headers.get(grpc::TIMEOUT) {
                None => None,
                Some(v) => Some(grpc::parse_timeout(v.as_bytes()).ok_or_else(|| {
                    ProxyError::BadRequest {
                        reason: format!(
                            "malformed grpc-timeout header {:?}: expected 1 to 8 digits and a unit (H, M, S, m, u or n)",
                            String::from_utf8_lossy(v.as_bytes())
                        ),
                    }
                })?),
            };
            let (d, ours) = match (asked, params.grpc_max) {
                (None, None) => (None, false),
                (Some(d), Some(cap)) if d <= cap => (Some(d), false),
                (Some(d), None) => (Some(d), false),
                (_, Some(cap)) => {
                    headers.insert(grpc::TIMEOUT, grpc::encode_timeout(cap));
                    (Some(cap), true)
                }
            };
            // A deadline past what the clock can hold is no deadline.
            match d.and_then(|d| arrived.checked_add(d)) {
                Some(at) => Limit::Call { at, ours },
                None => Limit::None,
            }
        } else {
            params.request.map_or(Limit::None, Limit::AfterBody)
        };
        let after_body = match limit {
            Limit::AfterBody(t) if body.is_none() => Some(arrived + t),
            _ => None,
        };
        Ok(Self {
            limit,
            body,
            progress: params.body_progress,
            after_body,
            deadlines,
        })
    }

    /// The deadline in force now: the call's, or the request timeout's once the body is whole.
    fn deadline(&mut self) -> Option<Instant> {
        match self.limit {
            Limit::None => None,
            Limit::Call { at, .. } => Some(at),
            Limit::AfterBody(t) => {
                if self.after_body.is_none() && self.body.as_ref().is_none_or(BodyDone::ended) {
                    self.after_body = Some(Instant::now() + t);
                }
                self.after_body
            }
        }
    }

    /// Runs `fut` (getting a connection) under the deadline in force.
    pub async fn checkout<F: Future>(&mut self, fut: F) -> Result<F::Output, Cut> {
        let at = self.deadline();
        let mut timer = self.deadlines.timer();
        timer.bound(at, fut).await.ok_or(Cut::Deadline)
    }

    /// Runs `fut` (sending the request, up to its response head): while the body streams, under
    /// the call's deadline and the upload's progress; then under the deadline in force.
    pub async fn send<F: Future>(&mut self, fut: F) -> Result<F::Output, Cut> {
        let mut fut = pin!(fut);
        if let Some(body) = self.body.as_ref().filter(|b| !b.ended()) {
            let at = match self.limit {
                Limit::Call { at, .. } => Some(at),
                Limit::None | Limit::AfterBody(_) => None,
            };
            let upload = pin!(upload(body, &self.deadlines, self.progress));
            let mut timer = self.deadlines.timer();
            match timer.bound(at, select(fut.as_mut(), upload)).await {
                None => return Err(Cut::Deadline),
                Some(Either::Left((out, _))) => return Ok(out),
                Some(Either::Right((Upload::Stalled, _))) => return Err(Cut::UploadStalled),
                Some(Either::Right((Upload::Ended, _))) => {}
            }
        }
        let at = self.deadline();
        let mut timer = self.deadlines.timer();
        timer.bound(at, fut).await.ok_or(Cut::Deadline)
    }

    /// The error for an attempt cut off on its way to `addr`.
    pub fn error(&self, cut: Cut, addr: SocketAddr) -> ProxyError {
        let client_sending = self
            .body
            .as_ref()
            .is_some_and(|b| !b.ended() && b.progress().waiting);
        match (cut, self.limit) {
            (Cut::UploadStalled, _) => ProxyError::UploadStalled {
                addr,
                limit: self.progress,
            },
            (Cut::Deadline, Limit::Call { ours: false, .. }) => ProxyError::DeadlineExceeded,
            (Cut::Deadline, _) if client_sending => ProxyError::ClientBodyTimeout,
            (Cut::Deadline, _) => ProxyError::Timeout { addr },
        }
    }

    /// A gRPC call's response, cut off at its deadline: past it the client gets trailers with
    /// DEADLINE_EXCEEDED instead of the rest of the stream. Other responses are not bounded
    /// once their head has arrived (`send_progress_ms` bounds a client that stops reading).
    pub fn bound_response(&self, resp: Response<RespBody>) -> Response<RespBody> {
        let Limit::Call { at, ours } = self.limit else {
            return resp;
        };
        let (mut parts, mut body) = resp.into_parts();
        // An HTTP/1.1 upstream's fields travel in its body as wire lines, for the client side to
        // write out; a wrapped body would hide them.
        if let RespBody::H1(b) = &mut body
            && let Some(raw) = b.take_fields()
        {
            parts.headers.extend(raw.to_header_map());
        }
        let trailers = if ours {
            reply::cap_trailers
        } else {
            reply::deadline_trailers
        };
        let body = body.until(self.deadlines.timer().alarm(at), trailers);
        Response::from_parts(parts, body)
    }
}

/// How an upload went.
enum Upload {
    /// The body is whole, or failed (the send reports how).
    Ended,
    /// The upstream side took nothing for the limit while the client was not being waited for.
    Stalled,
}

/// Watches an upload until it ends, sampling every `limit`: a sample that finds no frame taken
/// since the last one while nothing waits for the client means the upstream stopped taking the
/// body, so it is noticed between one and two times `limit` after the last frame it took.
async fn upload(body: &BodyDone, deadlines: &Rc<Deadlines>, limit: Duration) -> Upload {
    let mut timer = deadlines.timer();
    let mut last = body.progress().frames;
    loop {
        if timer.bound_for(limit, body.wait_ended()).await.is_some() {
            return Upload::Ended;
        }
        let now = body.progress();
        if now.frames == last && !now.waiting {
            return Upload::Stalled;
        }
        last = now.frames;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn params() -> Params {
        Params {
            request: Some(Duration::from_secs(10)),
            grpc_max: None,
            body_progress: Duration::from_secs(30),
        }
    }

    fn grpc_headers(timeout: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(grpc::TIMEOUT, HeaderValue::from_static(timeout));
        h
    }

    #[tokio::test(start_paused = true)]
    async fn a_grpc_deadline_replaces_the_request_timeout_and_the_cap_bounds_it() {
        let d = Deadlines::new();
        let now = Instant::now();
        let mut h = grpc_headers("30S");
        let t = RequestTime::new(&mut h, true, params(), now, None, d.clone()).unwrap();
        assert_eq!(
            t.limit,
            Limit::Call {
                at: now + Duration::from_secs(30),
                ours: false
            }
        );
        assert_eq!(
            h[grpc::TIMEOUT],
            "30S",
            "the client's deadline goes upstream as sent"
        );

        let capped = Params {
            grpc_max: Some(Duration::from_secs(5)),
            ..params()
        };
        let t = RequestTime::new(&mut h, true, capped, now, None, d.clone()).unwrap();
        assert_eq!(
            t.limit,
            Limit::Call {
                at: now + Duration::from_secs(5),
                ours: true
            }
        );
        assert_eq!(h[grpc::TIMEOUT], "5000m", "the upstream is told the cap");

        // No grpc-timeout: the cap if there is one, else no limit at all.
        let mut none = HeaderMap::new();
        let t = RequestTime::new(&mut none, true, params(), now, None, d.clone()).unwrap();
        assert_eq!(t.limit, Limit::None);
        let t = RequestTime::new(&mut none, true, capped, now, None, d.clone()).unwrap();
        assert!(matches!(t.limit, Limit::Call { ours: true, .. }));

        let e = RequestTime::new(&mut grpc_headers("1.5S"), true, params(), now, None, d)
            .err()
            .expect("refused");
        assert!(e.to_string().contains("grpc-timeout"), "{e}");
    }

    /// A 20 s upload (a chunk a second) read as it comes, then an upstream that answers
    /// `answer_after` later: what the send gave, and when.
    async fn upload_then_answer(answer_after: Duration) -> (Result<(), Cut>, Duration) {
        let d = Deadlines::new();
        let local = tokio::task::LocalSet::new();
        local.spawn_local(d.clone().sweep());
        local
            .run_until(async move {
                let (tx, body) = crate::upstream::body::ReqBody::channel(None);
                let done = body.done();
                let mut h = HeaderMap::new();
                let mut t =
                    RequestTime::new(&mut h, false, params(), Instant::now(), done, d).unwrap();
                let start = Instant::now();
                let sent = async move {
                    let mut body = std::pin::pin!(body);
                    let feed = async {
                        for _ in 0..20 {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            tx.send(Ok(bytes::Bytes::from_static(b"x"))).await.unwrap();
                        }
                        drop(tx);
                    };
                    let read = async {
                        use http_body_util::BodyExt;
                        while let Some(f) = body.frame().await {
                            f.unwrap();
                        }
                    };
                    tokio::join!(feed, read);
                    tokio::time::sleep(answer_after).await;
                };
                let got = t.send(sent).await;
                (got, start.elapsed())
            })
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_timeout_starts_at_the_end_of_a_streamed_body() {
        // 29 s in all, well past request_ms (10 s), and within it once the body is whole.
        assert_eq!(
            upload_then_answer(Duration::from_secs(9)).await,
            (Ok(()), Duration::from_secs(29))
        );
        // An upstream slower than request_ms after the body is cut off at request_ms.
        assert_eq!(
            upload_then_answer(Duration::from_secs(11)).await,
            (Err(Cut::Deadline), Duration::from_secs(30))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_that_takes_none_of_the_body_is_cut_off_and_charged() {
        let d = Deadlines::new();
        let local = tokio::task::LocalSet::new();
        local.spawn_local(d.clone().sweep());
        local
            .run_until(async move {
                let (tx, body) = crate::upstream::body::ReqBody::channel(None);
                tx.send(Ok(bytes::Bytes::from_static(b"x"))).await.unwrap();
                let done = body.done();
                let mut h = HeaderMap::new();
                let mut t =
                    RequestTime::new(&mut h, false, params(), Instant::now(), done, d).unwrap();
                let start = Instant::now();
                // Holds the body and never reads it.
                let got = t.send(std::future::pending::<()>()).await;
                assert_eq!(got, Err(Cut::UploadStalled));
                let took = start.elapsed();
                assert!(took >= Duration::from_secs(30) && took <= Duration::from_secs(60));
                let addr = "127.0.0.1:1".parse().unwrap();
                assert!(matches!(
                    t.error(Cut::UploadStalled, addr),
                    ProxyError::UploadStalled { .. }
                ));
                drop((tx, body));
            })
            .await;
    }
}
