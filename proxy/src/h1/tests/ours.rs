//! The proxy's reading of a client's bytes: the codec driven the way `downstream/conn.rs` drives
//! it. A head is parsed from what is left; an HTTP/1.1 head without exactly one Host is refused
//! (the connection's rule, RFC 9112 §3.2); the body is taken by length or through the chunked
//! decoder; the next head follows while keep-alive holds.

use http::Version;

use super::Seen;
use crate::h1::{
    chunked::{Decoder, Step},
    framing::Framing,
    request::{self, HeadError},
};

/// Why the proxy read no further.
#[derive(Debug)]
pub enum End {
    /// The input ended between requests.
    Eof,
    /// The last request did not keep the connection alive.
    Close,
    /// The input ended inside a head.
    Partial,
    /// A head was refused (400, 431, 501, 505).
    Refused(Refusal),
    /// The last request's body failed or never ended; its [`Seen::body`] says how.
    Body,
}

#[derive(Debug)]
pub enum Refusal {
    Head(HeadError),
    /// HTTP/1.1 without exactly one Host, refused by the connection.
    NoHost,
}

#[derive(Debug)]
pub struct Reading {
    pub requests: Vec<Seen>,
    pub end: End,
}

/// A body cut short by the end of the input.
pub const INCOMPLETE: &str = "the input ended inside the body";

pub fn read(input: &[u8]) -> Reading {
    let mut rest = input;
    let mut requests = Vec::new();
    let end = loop {
        if rest.is_empty() {
            break End::Eof;
        }
        let head = match request::parse(rest) {
            Ok(Some(h)) => h,
            Ok(None) => break End::Partial,
            Err(e) => break End::Refused(Refusal::Head(e)),
        };
        if head.parts.version == Version::HTTP_11 && !head.has_host {
            break End::Refused(Refusal::NoHost);
        }
        rest = &rest[head.len..];
        let (body, used) = match head.framing {
            Framing::None | Framing::UntilClose => (Ok(Vec::new()), 0),
            Framing::Length(n) => match usize::try_from(n) {
                Ok(n) if n <= rest.len() => (Ok(rest[..n].to_vec()), n),
                _ => (Err(INCOMPLETE.to_string()), rest.len()),
            },
            Framing::Chunked => dechunk(rest),
        };
        rest = &rest[used..];
        let failed = body.is_err();
        requests.push(Seen {
            method: head.parts.method,
            target: head.parts.uri.to_string(),
            version: head.parts.version,
            headers: head.parts.headers,
            body,
        });
        if failed {
            break End::Body;
        }
        if !head.keep_alive {
            break End::Close;
        }
    };
    Reading { requests, end }
}

/// Decodes a chunked body from the start of `buf` as `pump_body` does; the data and the bytes
/// the body took.
pub fn dechunk(buf: &[u8]) -> (Result<Vec<u8>, String>, usize) {
    let mut d = Decoder::default();
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        match d.step(&buf[at..]) {
            Ok(Step::Data { start, end, used }) => {
                data.extend_from_slice(&buf[at + start..at + end]);
                at += used;
            }
            Ok(Step::NeedMore) => return (Err(INCOMPLETE.to_string()), buf.len()),
            Ok(Step::End { used }) => return (Ok(data), at + used),
            Err(e) => return (Err(e.to_string()), buf.len()),
        }
    }
}
