//! Request heads, sans-IO, in both directions: [`parse`] reads a client's head (the downstream
//! side), [`encode`] writes one to an upstream. A request head is parsed by `httparse` from one
//! contiguous buffer and copied once into a `Bytes`; the URI and every header value are slices
//! of that copy, so a request costs one allocation for its head however many headers it has.
//! Framing follows RFC 9112 §6: `Transfer-Encoding` with `chunked` last wins, a request with
//! both `Transfer-Encoding` and `Content-Length`, with conflicting lengths, or with a coding in
//! HTTP/1.0, is refused (the request-smuggling cases), and a request with neither has no body.
//! A request that may switch to WebSocket ([`super::upgrade`]) carries an [`Upgrade`] extension;
//! its `Connection` and `Upgrade` fields are dropped like every hop-by-hop field and written
//! again, by [`encode`], for the upstream.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header};

use super::{
    framing::{Framing, TransferCodings, method_has_body, parse_length, push_field, push_length},
    upgrade::{self, Asked, Upgrade},
};
use crate::headers::HopFilter;

/// Most header fields in one request head (HAProxy's default is 101).
pub const MAX_HEADERS: usize = 100;
/// Largest request head, bytes (hyper's default read buffer limit is ~400 KiB; HAProxy's
/// default `tune.bufsize` is 16 KiB; 64 KiB leaves room for large cookies).
pub const MAX_HEAD: usize = 64 * 1024;

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub parts: http::request::Parts,
    pub framing: Framing,
    /// The connection stays open after this exchange unless the client says otherwise.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent by an HTTP/1.1 client with a body to send (the field is
    /// removed from the forwarded headers either way; an HTTP/1.0 client's is ignored, RFC 9110
    /// §10.1.1, and it is sent no 1xx, §15.2).
    pub expect_continue: bool,
    /// Exactly one `Host` field was sent (an HTTP/1.1 request must have one, RFC 9112 §3.2).
    pub has_host: bool,
    /// Bytes the head took in the buffer.
    pub len: usize,
}

/// Why a head was refused; each maps to a status.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("request head larger than {MAX_HEAD} bytes or more than {MAX_HEADERS} header fields")]
    TooLarge,
    #[error("invalid content-length {0:?}")]
    BadLength(String),
    #[error("both transfer-encoding and content-length")]
    Ambiguous,
    #[error("transfer-encoding {0:?} is not supported (chunked must be last)")]
    UnsupportedCoding(String),
    #[error("HTTP version {0} is not supported on this listener")]
    Version(u8),
    #[error("{0}")]
    Host(String),
}

impl HeadError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnsupportedCoding(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Version(_) => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Parses a request head from the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    // Uninitialised: zeroing 100 fields per request costs more than parsing a small head.
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        Some(v) => return Err(HeadError::Version(v)),
        None => return Err(HeadError::Malformed("no version".into())),
    };
    // One copy of the head; everything below is a slice of it.
    let head = Bytes::copy_from_slice(&buf[..len]);
    // httparse's slices point into `buf`; the same offsets in the copy.
    let base = buf.as_ptr() as usize;
    let slice = |s: &[u8]| {
        let off = (s.as_ptr() as usize).wrapping_sub(base);
        head.get(off..off.saturating_add(s.len()))
            .map_or_else(Bytes::new, |_| head.slice(off..off + s.len()))
    };
    let method = req.method.unwrap_or("");
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| HeadError::Malformed(format!("method {method:?}")))?;
    let path = req.path.unwrap_or("");
    let uri = Uri::from_maybe_shared(slice(path.as_bytes()))
        .map_err(|_| HeadError::Malformed(format!("request target {path:?}")))?;

    let mut headers = crate::spare::header_map(req.headers.len());
    let mut framing = Framing::None;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut keep_alive = version == Version::HTTP_11;
    // `close` ends the connection whatever else the fields list (RFC 9112 §9.6).
    let mut close = false;
    let mut expect_continue = false;
    let mut hosts = 0u8;
    let mut codings = None;
    let mut asked = Asked::default();
    let mut hop = HopFilter::default();
    for f in req.headers.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| HeadError::Malformed(format!("header name {:?}", f.name)))?;
        // `Transfer_Encoding` is no framing field here but becomes one for servers that map `_`
        // to `-`: a request whose framing two parsers could read differently is refused.
        if f.name.contains('_') && is_framing_lookalike(f.name) {
            return Err(HeadError::Malformed(format!(
                "field name {:?} imitates a framing field",
                f.name
            )));
        }
        // httparse has already refused control characters in values.
        let value = HeaderValue::from_maybe_shared(slice(f.value))
            .map_err(|_| HeadError::Malformed(format!("value of {name}")))?;
        if name == header::CONTENT_LENGTH {
            // Past `i64::MAX` is no length to Go's, nginx's or hyper's parsers (a signed
            // offset, or sentinels at the top of `u64`): refused rather than forwarded.
            let n = parse_length(f.value)
                .filter(|&n| i64::try_from(n).is_ok())
                .ok_or_else(|| HeadError::BadLength(String::from_utf8_lossy(f.value).into()))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::BadLength(
                    String::from_utf8_lossy(f.value).into(),
                ));
            }
            length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            // RFC 9112 §6.1: an HTTP/1.0 message with a transfer coding has faulty framing.
            if version == Version::HTTP_10 {
                return Err(HeadError::Malformed(
                    "transfer-encoding in an HTTP/1.0 request".into(),
                ));
            }
            let v = value.to_str().unwrap_or("");
            let (before, last) = v.rsplit_once(',').unwrap_or(("", v));
            if !last.trim().eq_ignore_ascii_case("chunked") || chunked {
                return Err(HeadError::UnsupportedCoding(v.to_string()));
            }
            let before = before.trim();
            if !before.is_empty() {
                codings = HeaderValue::from_str(before).ok();
            }
            chunked = true;
        } else if name == header::HOST {
            hosts = hosts.saturating_add(1);
            if hosts > 1 {
                return Err(HeadError::Host("more than one Host field".into()));
            }
            if !valid_host(f.value) {
                return Err(HeadError::Host(format!(
                    "Host {:?} is not a host[:port]",
                    String::from_utf8_lossy(f.value)
                )));
            }
        } else if name == header::CONNECTION {
            let v = value.to_str().unwrap_or("");
            for token in v.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && version == Version::HTTP_10 {
                    keep_alive = true;
                } else if token.eq_ignore_ascii_case("upgrade") {
                    asked.option = true;
                }
            }
        } else if name == header::UPGRADE {
            asked.upgrade_field(&value);
        } else if name == header::EXPECT && f.value.eq_ignore_ascii_case(b"100-continue") {
            expect_continue = true;
            continue;
        }
        if let Some(value) = hop.admit(&name, value) {
            headers.append(name, value);
        }
    }
    hop.finish(&mut headers);
    if chunked {
        if length.is_some() {
            return Err(HeadError::Ambiguous);
        }
        framing = Framing::Chunked;
    } else if let Some(n) = length {
        framing = if n == 0 {
            Framing::None
        } else {
            Framing::Length(n)
        };
    }
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    if let Some(c) = codings {
        parts.extensions.insert(TransferCodings(c));
    }
    if let Some(u) = asked.decide(&parts.method, version, framing, close) {
        parts.extensions.insert(u);
    }
    Ok(Some(Head {
        parts,
        framing,
        keep_alive: keep_alive && !close,
        expect_continue: expect_continue && framing != Framing::None && version == Version::HTTP_11,
        has_host: hosts == 1,
        len,
    }))
}

/// `host[:port]` (RFC 9112 §3.2, RFC 3986 §3.2.2): a registered name, an IPv4 address or a
/// bracketed IPv6 literal, and an optional decimal port; no user info, path or spaces.
fn valid_host(v: &[u8]) -> bool {
    let v = v.trim_ascii();
    if v.is_empty() || v.contains(&b'@') {
        return false;
    }
    let (host, port) = match v.strip_prefix(b"[") {
        Some(rest) => match rest.iter().position(|&b| b == b']') {
            Some(end) => {
                let inside = &rest[..end];
                if inside.is_empty()
                    || !inside
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
                {
                    return false;
                }
                let after = &rest[end + 1..];
                match after {
                    [] => (&v[..0], None),
                    [b':', port @ ..] => (&v[..0], Some(port)),
                    _ => return false,
                }
            }
            None => return false,
        },
        None => match v.iter().rposition(|&b| b == b':') {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        },
    };
    let host_ok = host.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
            )
    });
    // RFC 3986 allows an empty port; a number must fit a TCP port.
    let port_ok = port.is_none_or(|p| {
        p.len() <= 5
            && p.iter().all(u8::is_ascii_digit)
            && p.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')) <= u32::from(u16::MAX)
    });
    host_ok && port_ok
}

/// `Transfer_Encoding`, `content_length` and the like.
fn is_framing_lookalike(name: &str) -> bool {
    let norm = |target: &str| {
        name.len() == target.len()
            && name
                .bytes()
                .zip(target.bytes())
                .all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
    };
    norm("transfer-encoding") || norm("content-length")
}

/// Appends an HTTP/1.1 request head; framing fields come from `framing`, not the client, and
/// the upgrade fields from an [`Upgrade`] extension.
pub fn encode(out: &mut Vec<u8>, parts: &http::request::Parts, framing: Framing) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut had_length = false;
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            had_length = true;
            continue;
        }
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        push_field(out, name.as_str(), value.as_bytes());
    }
    if let Some(u) = parts.extensions.get::<Upgrade>() {
        upgrade::push_request_fields(out, u);
    }
    match framing {
        // No length line for a bodiless GET unless the client sent one.
        Framing::Length(0) if !had_length && !method_has_body(&parts.method) => {}
        Framing::Length(n) => {
            push_length(out, n);
        }
        Framing::Chunked => match parts.extensions.get::<TransferCodings>() {
            Some(TransferCodings(c)) => {
                out.extend_from_slice(b"transfer-encoding: ");
                out.extend_from_slice(c.as_bytes());
                out.extend_from_slice(b", chunked\r\n");
            }
            None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        },
        // A request's end is never the connection's; no body is announced by no field.
        Framing::None | Framing::UntilClose => {}
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_simple_head_and_needs_more_for_a_partial_one() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: web\r\nX-A: 1\r\nX-A: 2\r\n\r\nrest";
        let h = parse(raw).unwrap().unwrap();
        assert_eq!(h.len, raw.len() - 4);
        assert_eq!(h.parts.method, Method::GET);
        assert_eq!(h.parts.uri, "/a?b=1");
        assert_eq!(h.parts.headers["host"], "web");
        assert_eq!(h.parts.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(h.framing, Framing::None);
        assert!(h.keep_alive);
        assert!(parse(&raw[..20]).unwrap().is_none());
    }

    #[test]
    fn framing_and_keep_alive_follow_rfc_9112() {
        let h = parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        let h = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = parse(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = parse(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.expect_continue);
        assert!(!h.parts.headers.contains_key("expect"));
        // RFC 9110 §10.1.1: an HTTP/1.0 client's expectation is ignored (and never forwarded).
        let h = parse(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.expect_continue);
        assert!(!h.parts.headers.contains_key("expect"));
    }

    #[test]
    fn a_websocket_upgrade_becomes_an_extension_written_again_upstream() {
        let h = parse(
            b"GET /ws HTTP/1.1\r\nHost: web\r\nConnection: keep-alive, Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            h.parts.extensions.get::<Upgrade>(),
            Some(&Upgrade(HeaderValue::from_static("websocket")))
        );
        assert!(!h.parts.headers.contains_key("upgrade"));
        assert!(!h.parts.headers.contains_key("connection"));
        let mut out = Vec::new();
        encode(&mut out, &h.parts, h.framing);
        assert_eq!(
            out,
            b"GET /ws HTTP/1.1\r\nhost: web\r\nsec-websocket-key: k\r\n\
              connection: upgrade\r\nupgrade: websocket\r\n\r\n"
        );
        // With a body, or `h2c`, the fields are dropped and nothing asks to switch.
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: web\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AA\r\n\r\n",
        ] {
            let h = parse(raw).unwrap().unwrap();
            assert!(h.parts.extensions.get::<Upgrade>().is_none());
            assert!(!h.parts.headers.contains_key("upgrade"));
            assert!(!h.parts.headers.contains_key("http2-settings"));
        }
    }

    #[test]
    fn smuggling_shapes_and_bad_lengths_are_refused() {
        let cases: [(&[u8], StatusCode); 6] = [
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                StatusCode::BAD_REQUEST,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                StatusCode::BAD_REQUEST,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                StatusCode::BAD_REQUEST,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                StatusCode::NOT_IMPLEMENTED,
            ),
            (
                b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
                StatusCode::BAD_REQUEST,
            ),
            (b"GET\x01 / HTTP/1.1\r\n\r\n", StatusCode::BAD_REQUEST),
        ];
        for (raw, status) in cases {
            let e = parse(raw).unwrap_err();
            assert_eq!(
                e.status(),
                status,
                "{e} for {:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse(big.as_bytes()).unwrap_err(), HeadError::TooLarge);
    }

    /// Found by the differential test against hyper (`h1::tests::differential`).
    #[test]
    fn regressions_from_the_differential_test() {
        // RFC 9112 §6.1: a transfer coding in an HTTP/1.0 request is faulty framing.
        let e = parse(
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
        );
        assert_eq!(e.unwrap_err().status(), StatusCode::BAD_REQUEST);
        // `close` wins over `keep-alive`, in one field or two (RFC 9112 §9.6).
        for raw in [
            &b"GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
        ] {
            let h = parse(raw).unwrap().unwrap();
            assert!(!h.keep_alive, "{:?}", String::from_utf8_lossy(raw));
        }
        // Lengths past i64::MAX are no length to other parsers.
        let e = parse(b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert!(matches!(e, Err(HeadError::BadLength(_))), "{e:?}");
        let h = parse(b"POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n");
        assert_eq!(
            h.unwrap().unwrap().framing,
            Framing::Length(i64::MAX as u64)
        );
    }

    #[test]
    fn requests_to_upstreams_carry_the_framing_chosen_here() {
        let (mut parts, ()) = http::Request::post("/x?y=1")
            .header("content-length", "99")
            .header("transfer-encoding", "gzip")
            .header("x-a", "1")
            .body(())
            .unwrap()
            .into_parts();
        let mut out = Vec::new();
        encode(&mut out, &parts, Framing::Length(3));
        assert_eq!(
            out,
            b"POST /x?y=1 HTTP/1.1\r\nx-a: 1\r\ncontent-length: 3\r\n\r\n"
        );
        out.clear();
        encode(&mut out, &parts, Framing::Chunked);
        assert_eq!(
            out,
            b"POST /x?y=1 HTTP/1.1\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        parts.method = Method::GET;
        parts.headers.remove("content-length");
        out.clear();
        encode(&mut out, &parts, Framing::Length(0));
        assert_eq!(out, b"GET /x?y=1 HTTP/1.1\r\nx-a: 1\r\n\r\n");
    }
}
