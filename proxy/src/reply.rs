//! The answers the proxy writes itself, when it refuses or fails a request. A plain HTTP client
//! gets a status, `loadshift-error` naming the cause and a one-line reason. A gRPC call gets a
//! trailers-only response: HTTP 200 with `grpc-status` and `grpc-message` in its only HEADERS
//! frame, which ends the stream (with hyper, a response whose body is empty), since gRPC
//! clients read a call's outcome from `grpc-status` and report any other HTTP status as a bare
//! "Received http2 header with status: 502". It keeps `loadshift-error` and the retry hints.

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use loadshift_core::admission::BlockReason;

use crate::{
    admission::Refusal,
    error::ProxyError,
    grpc::{self, Code},
    upstream::body::RespBody,
};

const ERROR_HEADER: HeaderName = HeaderName::from_static("loadshift-error");
const BLOCKED_HEADER: HeaderName = HeaderName::from_static("loadshift-blocked");
/// Seconds a blocked client is asked to wait before retrying.
const BLOCKED_RETRY_AFTER_S: u32 = 1;

/// How the request being served is answered when the proxy answers it.
#[derive(Clone, Debug)]
pub enum Answer {
    Plain,
    /// A gRPC call, with its `content-type`, which the answer repeats.
    Grpc(HeaderValue),
}

impl Answer {
    pub fn for_request(headers: &HeaderMap) -> Self {
        match headers.get(header::CONTENT_TYPE) {
            Some(ct) if grpc::is_grpc(headers) => Self::Grpc(ct.clone()),
            _ => Self::Plain,
        }
    }

    pub fn is_grpc(&self) -> bool {
        matches!(self, Self::Grpc(_))
    }

    pub fn error(&self, e: &ProxyError) -> Response<RespBody> {
        self.reply(e.status(), e.grpc_status(), e.code(), &e.client_message())
    }

    /// An overloaded proxy's refusal, with when to come back.
    pub fn shed(&self, r: Refusal, retry_after_s: u32) -> Response<RespBody> {
        let mut resp = self.reply(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::ResourceExhausted,
            "overloaded",
            &format!("the proxy is overloaded ({}); retry later", r.as_str()),
        );
        self.retry_after(&mut resp, retry_after_s);
        resp
    }

    /// A request the plan's blocking refused, with why and when to come back.
    pub fn blocked(&self, reason: BlockReason) -> Response<RespBody> {
        let mut resp = self.reply(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::ResourceExhausted,
            "blocked",
            &format!("blocked: {}", reason.as_str()),
        );
        resp.headers_mut()
            .insert(BLOCKED_HEADER, HeaderValue::from_static(reason.as_str()));
        self.retry_after(&mut resp, BLOCKED_RETRY_AFTER_S);
        resp
    }

    fn reply(
        &self,
        status: StatusCode,
        grpc_status: Code,
        code: &'static str,
        msg: &str,
    ) -> Response<RespBody> {
        let (mut resp, content_type) = match self {
            Self::Plain => {
                let mut r = Response::new(RespBody::local(format!("{msg}\n")));
                *r.status_mut() = status;
                (r, HeaderValue::from_static("text/plain"))
            }
            Self::Grpc(ct) => {
                let mut r = Response::new(RespBody::Local(None));
                grpc::set_status(r.headers_mut(), grpc_status, msg);
                (r, ct.clone())
            }
        };
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, content_type);
        h.insert(ERROR_HEADER, HeaderValue::from_static(code));
        resp
    }

    /// `retry-after` for every client; gRPC's own form too (gRFC A6 pushback), which a gRPC
    /// client with a retry policy honours.
    fn retry_after(&self, resp: &mut Response<RespBody>, seconds: u32) {
        let h = resp.headers_mut();
        h.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        if self.is_grpc() {
            h.insert(
                grpc::RETRY_PUSHBACK_MS,
                HeaderValue::from(u64::from(seconds) * 1000),
            );
        }
    }
}

/// The trailers of a gRPC response cut off at the deadline its client gave.
pub fn deadline_trailers() -> HeaderMap {
    trailers(&ProxyError::DeadlineExceeded)
}

/// The trailers of a gRPC response cut off at the proxy's cap on a call (`grpc_max_ms`).
pub fn cap_trailers() -> HeaderMap {
    let mut h = HeaderMap::new();
    grpc::set_status(
        &mut h,
        Code::DeadlineExceeded,
        "the call ran past the proxy's limit on gRPC calls",
    );
    h.insert(ERROR_HEADER, HeaderValue::from_static("timeout"));
    h
}

fn trailers(e: &ProxyError) -> HeaderMap {
    let mut h = HeaderMap::new();
    grpc::set_status(&mut h, e.grpc_status(), &e.client_message());
    h.insert(ERROR_HEADER, HeaderValue::from_static(e.code()));
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body;

    fn grpc_request() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        h
    }

    #[test]
    fn grpc_calls_get_trailers_only_answers_and_others_plain_ones() {
        let e = ProxyError::NoEndpoint {
            service: "web".into(),
        };
        let r = Answer::for_request(&grpc_request()).error(&e);
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.body().is_end_stream(), "one HEADERS frame, no body");
        let h = r.headers();
        assert_eq!(h["grpc-status"], "14");
        assert_eq!(h["grpc-message"], "service \"web\" has no endpoint");
        assert_eq!(h["content-type"], "application/grpc+proto");
        assert_eq!(h["loadshift-error"], "no-endpoint");

        let r = Answer::for_request(&HeaderMap::new()).error(&e);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().get("grpc-status").is_none());
        assert_eq!(r.headers()["content-type"], "text/plain");
    }

    #[test]
    fn refusals_keep_their_retry_hints_in_both_forms() {
        let grpc = Answer::for_request(&grpc_request());
        let r = grpc.shed(Refusal::InFlight, 2);
        assert_eq!(r.headers()["grpc-status"], "8");
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.headers()["grpc-retry-pushback-ms"], "2000");
        let r = grpc.blocked(BlockReason::Fraction);
        assert_eq!(r.headers()["grpc-status"], "8");
        assert_eq!(r.headers()["loadshift-blocked"], "fraction");
        assert_eq!(r.headers()["grpc-retry-pushback-ms"], "1000");
        let r = Answer::Plain.blocked(BlockReason::Fraction);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["retry-after"], "1");
        assert!(r.headers().get("grpc-retry-pushback-ms").is_none());
    }
}
