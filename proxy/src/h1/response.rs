//! Response heads, sans-IO, in both directions: [`parse`] reads an upstream's head (the fields
//! stay wire lines, [`super::fields`]), [`framing`] and [`encode`] write one to a client.

use std::io;

use http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};

use super::{
    fields::{self, RawFields},
    framing::{Framing, push_field, push_length},
    request::{MAX_HEAD, MAX_HEADERS},
};

/// A parsed upstream response head.
pub struct Head {
    pub status: StatusCode,
    pub fields: RawFields,
    pub framing: Framing,
    pub keep_alive: bool,
    /// The `Upgrade` field: what a `101` switches to.
    pub upgrade: Option<HeaderValue>,
    /// The upstream's load report (`loadshift-load`), kept out of `fields`.
    pub load: Option<crate::load::Carried>,
    /// Bytes the head took in the buffer.
    pub len: usize,
}

/// Parses an upstream's response head from the start of `buf`: `Ok(None)` when more bytes are
/// needed. Without length fields the body runs until the upstream closes.
pub fn parse(buf: &[u8]) -> Result<Option<Head>, io::Error> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    // Uninitialised: zeroing 100 fields per response costs more than parsing a small head.
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut r,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(bad(format!("upstream response head over {MAX_HEAD} bytes")));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(bad(format!("malformed upstream response head: {e}"))),
    };
    let status = StatusCode::from_u16(r.code.unwrap_or(0))
        .map_err(|_| bad(format!("upstream status {:?}", r.code)))?;
    let c = fields::collect(r.headers, r.version == Some(1)).map_err(bad)?;
    let framing = match c.fields.length() {
        _ if c.chunked => Framing::Chunked,
        _ if c.until_close => Framing::UntilClose,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    };
    Ok(Some(Head {
        status,
        fields: c.fields,
        framing,
        keep_alive: c.keep_alive,
        upgrade: c.upgrade,
        load: c.load,
        len,
    }))
}

/// Chooses the framing of a response to a client (RFC 9112 §6.3).
pub fn framing(
    method: &Method,
    version: Version,
    status: StatusCode,
    exact_len: Option<u64>,
) -> Framing {
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::None
    } else if let Some(n) = exact_len {
        Framing::Length(n)
    } else if version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        Framing::UntilClose
    }
}

/// What a response to a client says about its connection, in the `Connection` field (and
/// `Upgrade`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persist<'a> {
    /// Stays open, as HTTP/1.1 does by default: nothing to say.
    Open,
    /// Stays open for an HTTP/1.0 client, which assumes a close unless told `keep-alive` (RFC
    /// 9112 §9.3, Appendix C.2.2).
    KeepAlive,
    /// Closes after this response.
    Close,
    /// Switches to the protocol named (a `101`).
    Upgrade(&'a HeaderValue),
}

impl Persist<'_> {
    /// How a connection to a client of `version` that stays open (or not) says so.
    pub fn after(version: Version, close: bool) -> Self {
        if close {
            Self::Close
        } else if version == Version::HTTP_10 {
            Self::KeepAlive
        } else {
            Self::Open
        }
    }
}

/// Appends a response head to `out`: the fields of `headers`, then `raw` (an HTTP/1.1
/// upstream's fields as they came), then the connection's fields from `persist`.
/// `content-length` and `transfer-encoding` are replaced by what `framing` says, except that a
/// response without a body keeps the upstream's length.
pub fn encode(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    raw: Option<&RawFields>,
    framing: Framing,
    persist: Persist<'_>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    // A 1xx or 204 never carries a length (RFC 9110 §8.6); a response to HEAD and a 304 keep the
    // upstream's, which says what a GET would have got.
    let keep_length =
        framing == Framing::None && status != StatusCode::NO_CONTENT && !status.is_informational();
    for (name, value) in headers {
        if name == header::TRANSFER_ENCODING || (name == header::CONTENT_LENGTH && !keep_length) {
            continue;
        }
        push_field(out, name.as_str(), value.as_bytes());
    }
    if let Some(raw) = raw {
        out.extend_from_slice(raw.lines());
    }
    match framing {
        Framing::Length(n) => {
            push_length(out, n);
        }
        Framing::None => {
            if let Some(n) = raw.and_then(RawFields::length).filter(|_| keep_length) {
                push_length(out, n);
            }
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::UntilClose => {}
    }
    match persist {
        Persist::Open => {}
        Persist::KeepAlive => out.extend_from_slice(b"connection: keep-alive\r\n"),
        Persist::Close => out.extend_from_slice(b"connection: close\r\n"),
        Persist::Upgrade(p) => {
            out.extend_from_slice(b"connection: upgrade\r\n");
            push_field(out, "upgrade", p.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn response_head_replaces_framing_headers() {
        let mut h = HeaderMap::new();
        h.insert("content-length", HeaderValue::from_static("99"));
        h.insert("x-a", HeaderValue::from_static("1"));
        let mut out = Vec::new();
        encode(
            &mut out,
            StatusCode::OK,
            &h,
            None,
            Framing::Length(2),
            Persist::after(Version::HTTP_11, false),
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 2\r\n\r\n"
        );
        out.clear();
        encode(
            &mut out,
            StatusCode::OK,
            &h,
            None,
            Framing::Length(2),
            Persist::after(Version::HTTP_10, false),
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n"
        );
        out.clear();
        encode(
            &mut out,
            StatusCode::OK,
            &h,
            None,
            Framing::Chunked,
            Persist::after(Version::HTTP_10, true),
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nx-a: 1\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            framing(&Method::HEAD, Version::HTTP_11, StatusCode::OK, Some(5)),
            Framing::None
        );
        assert_eq!(
            framing(&Method::GET, Version::HTTP_10, StatusCode::OK, None),
            Framing::UntilClose
        );
    }

    #[test]
    fn upstream_heads_give_their_framing() {
        let h = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.framing, h.keep_alive),
            (StatusCode::OK, Framing::Length(2), true)
        );
        let h = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h = parse(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
        assert!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err()
        );
    }
}
