//! Mutations of well-formed requests, after the shapes request-smuggling research uses.

use proptest::{collection::vec, prelude::*, sample::Index};

use super::request;

/// One change to a message's bytes.
#[derive(Clone, Debug)]
pub enum Mutation {
    Insert(Index, u8),
    Delete(Index),
    Replace(Index, u8),
    /// A field line from [`HOSTILE_LINES`] at the start of a head line.
    Line(Index, &'static str),
    /// A head line repeated right after itself.
    Repeat(Index),
    /// The line break before a head line turned into obs-fold (RFC 9112 §5.2).
    Fold(Index),
    Truncate(Index),
}

/// Bytes parsers disagree on.
const STRAY: [u8; 18] = [
    b'\r', b'\n', 0, b' ', b'\t', 0x0b, 0x0c, 0x7f, 0x80, 0xff, b':', b',', b';', b'"', b'_', b'-',
    b'0', b'a',
];

/// Field lines from request-smuggling research: conflicting and malformed lengths, disguised
/// and repeated codings, lookalike names, Host games.
const HOSTILE_LINES: [&str; 35] = [
    "Content-Length: 0",
    "Content-Length: 5",
    "Content-Length: 7",
    "Content-Length: 5, 5",
    "Content-Length: +5",
    "Content-Length: -1",
    "Content-Length: 0x5",
    "Content-Length: 5 5",
    "Content-Length: 18446744073709551616",
    "Content-Length: 18446744073709551615",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: xchunked",
    "Transfer-Encoding: chunked, identity",
    "Transfer-Encoding: identity",
    "Transfer-Encoding: \"chunked\"",
    "Transfer-Encoding: chunked;q=1",
    "Transfer-Encoding : chunked",
    " Transfer-Encoding: chunked",
    "Transfer_Encoding: chunked",
    "Content_Length: 5",
    "Transfer-Encoding:\tchunked",
    "Transfer-Encoding: gzip",
    "Transfer-Encoding: ,chunked",
    "Host: evil",
    "Host: a b",
    "Host: a@b",
    "Host: a:99999",
    "Connection: close",
    "Connection: keep-alive",
    "Connection: close, keep-alive",
    "Connection: content-length",
    "Expect: 100-continue",
    "Upgrade: h2c",
    "X: y\nTransfer-Encoding: chunked",
    "Transfer-Encoding\n: chunked",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), prop::sample::select(&STRAY[..])).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<Index>().prop_map(Mutation::Delete),
        2 => (any::<Index>(), prop::sample::select(&STRAY[..])).prop_map(|(i, b)| Mutation::Replace(i, b)),
        4 => (any::<Index>(), prop::sample::select(&HOSTILE_LINES[..])).prop_map(|(i, l)| Mutation::Line(i, l)),
        1 => any::<Index>().prop_map(Mutation::Repeat),
        1 => any::<Index>().prop_map(Mutation::Fold),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

/// Offsets where a line of the first head starts (after the request line).
fn line_starts(msg: &[u8]) -> Vec<usize> {
    let end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(msg.len(), |p| p + 2);
    (1..=end).filter(|&i| msg[i - 1] == b'\n').collect()
}

impl Mutation {
    pub fn apply(&self, msg: &mut Vec<u8>) {
        let starts = line_starts(msg);
        match *self {
            Self::Insert(i, b) => {
                let at = i.index(msg.len() + 1);
                msg.insert(at, b);
            }
            Self::Delete(i) if !msg.is_empty() => {
                msg.remove(i.index(msg.len()));
            }
            Self::Replace(i, b) if !msg.is_empty() => {
                let at = i.index(msg.len());
                msg[at] = b;
            }
            Self::Line(i, line) if !starts.is_empty() => {
                let at = starts[i.index(starts.len())];
                let bytes = format!("{line}\r\n");
                msg.splice(at..at, bytes.into_bytes());
            }
            Self::Repeat(i) if starts.len() > 1 => {
                let k = i.index(starts.len() - 1);
                let line = msg[starts[k]..starts[k + 1]].to_vec();
                msg.splice(starts[k]..starts[k], line);
            }
            Self::Fold(i) if starts.len() > 1 => {
                // `\r\nName:` becomes `\r\n Name:`: the line continues the previous field.
                let at = starts[1 + i.index(starts.len() - 1)];
                msg.insert(at, b' ');
            }
            Self::Truncate(i) => msg.truncate(i.index(msg.len() + 1)),
            _ => {}
        }
    }
}

/// A well-formed request with one to three mutations.
pub fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (request(), vec(mutation(), 1..4)).prop_map(|(r, ms)| {
        let mut msg = r.bytes();
        for m in &ms {
            m.apply(&mut msg);
        }
        msg
    })
}
