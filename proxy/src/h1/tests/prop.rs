//! Properties of each parser on its own: generated requests parse back to what was generated at
//! every split point; chunked bodies decode to their data however the bytes arrive; response
//! framing follows RFC 9112 §6.3 in both directions; and arbitrary or mutated bytes never panic
//! and give the same outcome whichever way they are split (the connection parses whatever has
//! arrived, so an outcome that depended on the split would depend on TCP segmentation).

use http::{HeaderMap, Method, StatusCode, Version, header};
use proptest::{collection::vec, prelude::*, sample::Index};

use super::{config, inputs, ours};
use crate::h1::{
    chunked::{self, ChunkError, Decoder, Step},
    framing::Framing,
    request::{self, Head},
    response,
};

/// The framing a generated request announces.
fn framing_of(r: &inputs::Request) -> Framing {
    match &r.body {
        inputs::Body::None => Framing::None,
        inputs::Body::Length { data, .. } if data.is_empty() => Framing::None,
        inputs::Body::Length { data, .. } => Framing::Length(data.len() as u64),
        inputs::Body::Chunked { .. } => Framing::Chunked,
    }
}

/// Fields as (name, value) pairs, grouped by name in first-seen order (a `HeaderMap` keeps the
/// order of values under one name, not across names).
fn grouped(fields: impl IntoIterator<Item = (String, String)>) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (n, v) in fields {
        match out.iter_mut().find(|(m, _)| *m == n) {
            Some((_, vs)) => vs.push(v),
            None => out.push((n, vec![v])),
        }
    }
    out.sort();
    out
}

fn map_fields(h: &HeaderMap) -> Vec<(String, Vec<String>)> {
    grouped(h.iter().map(|(n, v)| {
        (
            n.as_str().to_string(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        )
    }))
}

/// `h` is what `r` says.
fn check_head(r: &inputs::Request, h: &Head, head_len: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(h.len, head_len);
    prop_assert_eq!(h.parts.method.as_str(), r.method.as_str());
    prop_assert_eq!(h.parts.uri.to_string(), r.target.clone());
    let version = if r.http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    prop_assert_eq!(h.parts.version, version);
    prop_assert_eq!(h.framing, framing_of(r));
    prop_assert_eq!(h.keep_alive, r.keep_alive(), "keep-alive");
    prop_assert_eq!(h.has_host, r.host.is_some());
    prop_assert_eq!(
        h.expect_continue,
        r.expect && !r.http10 && h.framing != Framing::None
    );
    prop_assert_eq!(map_fields(&h.parts.headers), grouped(r.forwarded_fields()));
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    /// (a) Every prefix shorter than the head needs more bytes; every longer one gives the same
    /// head, whatever body bytes follow.
    #[test]
    fn generated_heads_parse_back_at_every_split(r in inputs::request()) {
        let head = r.head();
        let msg = r.bytes();
        for k in 1..head.len() {
            let got = request::parse(&msg[..k]);
            prop_assert!(matches!(got, Ok(None)), "prefix of {} bytes: {:?}", k, got);
        }
        for k in head.len()..=msg.len() {
            let h = request::parse(&msg[..k]);
            prop_assert!(matches!(h, Ok(Some(_))), "{} bytes: {:?}", k, h);
            if let Ok(Some(h)) = h {
                check_head(&r, &h, head.len())?;
            }
        }
    }

    /// (a) Read as the connection reads it, a generated request delivers its body, and the
    /// pipelined request behind it exactly when the request keeps the connection alive.
    #[test]
    fn generated_requests_deliver_their_body_and_what_follows(r in inputs::request()) {
        let read = ours::read(&r.bytes());
        let want = if r.keep_alive() { 2 } else { 1 };
        prop_assert_eq!(read.requests.len(), want, "{:?}", read.end);
        if let Some(first) = read.requests.first() {
            prop_assert_eq!(first.body.as_ref().ok(), Some(&r.data()));
        }
        if let Some(second) = read.requests.get(1) {
            prop_assert_eq!(second.target.as_str(), "/second");
        }
    }

    /// (a) What `request::encode` writes for an upstream parses back to the same request.
    #[test]
    fn encoded_heads_parse_back(r in inputs::request()) {
        let h = request::parse(&r.head()).expect("valid").expect("complete");
        let mut out = Vec::new();
        request::encode(&mut out, &h.parts, h.framing);
        let back = request::parse(&out).expect("our own head").expect("complete");
        prop_assert_eq!(back.len, out.len());
        prop_assert_eq!(&back.parts.method, &h.parts.method);
        prop_assert_eq!(back.parts.uri.path_and_query(), h.parts.uri.path_and_query());
        prop_assert_eq!(back.parts.version, Version::HTTP_11);
        prop_assert_eq!(back.framing, h.framing);
        prop_assert!(back.keep_alive);
        let without_length = |m: &HeaderMap| {
            let mut m = m.clone();
            m.remove(header::CONTENT_LENGTH);
            map_fields(&m)
        };
        prop_assert_eq!(without_length(&back.parts.headers), without_length(&h.parts.headers));
    }

    /// (b) A chunked body fed in random pieces gives exactly its data and ends at its last byte;
    /// what follows is left for the next request.
    #[test]
    fn chunked_bodies_decode_whole_in_any_pieces(
        c in inputs::chunked(),
        cuts in vec(any::<Index>(), 0..8),
        after in vec(any::<u8>(), 0..16),
    ) {
        let wire = c.encode();
        let mut input = wire.clone();
        input.extend_from_slice(&after);
        let (data, end) = feed(&input, &cuts);
        prop_assert_eq!(end, Ok(wire.len()));
        prop_assert_eq!(data, c.data());
    }

    /// (b) The framing the proxy writes (`push_chunk_header`) decodes back to the same data.
    #[test]
    fn our_chunk_framing_decodes_back(
        chunks in vec(vec(any::<u8>(), 1..600), 0..6),
        cuts in vec(any::<Index>(), 0..8),
    ) {
        let mut wire = Vec::new();
        for c in &chunks {
            chunked::push_chunk_header(&mut wire, c.len());
            wire.extend_from_slice(c);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let (data, end) = feed(&wire, &cuts);
        prop_assert_eq!(end, Ok(wire.len()));
        prop_assert_eq!(data, chunks.concat());
    }

    /// (b, d) Any bytes, chunked-looking or not: no panic, and the same data and outcome
    /// however they are split.
    #[test]
    fn the_decoder_outcome_does_not_depend_on_the_split(
        input in prop_oneof![
            vec(any::<u8>(), 0..64),
            (inputs::chunked(), vec(any::<Index>(), 1..4), vec(any::<u8>(), 1..4))
                .prop_map(|(c, at, bytes)| {
                    let mut w = c.encode();
                    for (i, b) in at.iter().zip(bytes.iter().cycle()) {
                        let k = i.index(w.len() + 1);
                        w.insert(k, *b);
                    }
                    w
                }),
        ],
        cuts in vec(any::<Index>(), 1..8),
    ) {
        let whole = feed(&input, &[]);
        let split = feed(&input, &cuts);
        prop_assert_eq!(split, whole);
    }

    /// (c) An upstream's head is framed as RFC 9112 §6.3 says: a transfer coding with chunked
    /// last is chunked, another coding runs until close, then Content-Length, then until close;
    /// conflicting lengths are refused. (HEAD, 1xx, 204 and 304 are bodiless whatever the head
    /// says: `upstream::h1` applies that, knowing the request.)
    #[test]
    fn upstream_heads_are_framed_by_rfc_9112(r in inputs::response()) {
        let bytes = r.bytes();
        for k in 1..bytes.len() {
            prop_assert!(matches!(response::parse(&bytes[..k]), Ok(None)), "prefix {}", k);
        }
        let conflicting = r.lengths.windows(2).any(|w| w[0] != w[1]);
        let got = response::parse(&bytes);
        if conflicting && r.coding.is_none() {
            prop_assert!(got.is_err());
            return Ok(());
        }
        let h = got.expect("valid").expect("complete");
        let want = match (r.coding, r.lengths.first()) {
            (Some(c), _) if c.ends_with("chunked") => Framing::Chunked,
            (Some(_), _) => Framing::UntilClose,
            (None, Some(&n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        };
        prop_assert_eq!(h.framing, want);
        prop_assert_eq!(h.status.as_u16(), r.status);
        prop_assert_eq!(h.len, bytes.len());
        prop_assert_eq!(h.keep_alive, r.keep_alive(), "keep-alive");
    }

    /// (c) What the proxy writes to a client, read back by a client that knows its request
    /// (RFC 9112 §6.3 items 1-2: HEAD, 1xx, 204 and 304 have no body), delimits the body the
    /// proxy sends: the framing `response::framing` chose, a close when it runs until close, an
    /// HTTP/1.0 client told `keep-alive` exactly when the connection stays open, and no length
    /// on a 1xx or 204 (RFC 9110 §8.6).
    #[test]
    fn responses_to_clients_are_read_as_written(
        r in inputs::response(),
        method in prop::sample::select(&[Method::GET, Method::HEAD, Method::POST][..]),
        client10 in any::<bool>(),
        close in any::<bool>(),
    ) {
        let Ok(Some(up)) = response::parse(&r.bytes()) else { return Ok(()) };
        let exact = match up.framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        let version = if client10 { Version::HTTP_10 } else { Version::HTTP_11 };
        let framing = response::framing(&method, version, up.status, exact);
        let close = close || framing == Framing::UntilClose;
        let mut out = Vec::new();
        let persist = response::Persist::after(version, close);
        response::encode(&mut out, up.status, &HeaderMap::new(), Some(&up.fields), framing, persist);
        let back = response::parse(&out).expect("our own head").expect("complete");
        prop_assert_eq!(back.len, out.len());
        let bodiless = method == Method::HEAD
            || back.status.is_informational()
            || back.status == StatusCode::NO_CONTENT
            || back.status == StatusCode::NOT_MODIFIED;
        let read = if bodiless { Framing::None } else { back.framing };
        prop_assert_eq!(read, framing);
        prop_assert_eq!(back.keep_alive, !close);
        let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
        if client10 {
            prop_assert!(framing != Framing::Chunked, "chunked to an HTTP/1.0 client");
            // An HTTP/1.0 client assumes a close unless told `keep-alive` (RFC 9112 §C.2.2).
            prop_assert_eq!(text.contains("\r\nconnection: keep-alive\r\n"), !close);
        }
        if back.status.is_informational() || back.status == StatusCode::NO_CONTENT {
            prop_assert!(!text.contains("content-length") && !text.contains("transfer-encoding"));
        }
    }

    /// (d) Random bytes and mutated requests: no panic; a head, when there is one, is a prefix
    /// that ends a line; and the outcome is the one the connection reaches reading the bytes in
    /// any pieces.
    #[test]
    fn request_heads_from_hostile_bytes_do_not_depend_on_the_split(
        input in prop_oneof![
            vec(any::<u8>(), 0..200),
            inputs::mutated(),
            inputs::request().prop_map(|r| r.bytes()),
        ],
    ) {
        let whole = request::parse(&input);
        if let Ok(Some(h)) = &whole {
            prop_assert!(h.len <= input.len() && input[..h.len].ends_with(b"\n"));
            if let Framing::Chunked = h.framing {
                prop_assert!(!h.parts.headers.contains_key(header::CONTENT_LENGTH));
            }
        }
        let whole = outcome(&whole);
        for k in 1..input.len() {
            let part = outcome(&request::parse(&input[..k]));
            prop_assert!(part == Outcome::More || part == whole, "{} bytes: {:?}, all: {:?}", k, part, whole);
        }
    }

    /// (d) Response heads from hostile bytes: no panic, and a head is a prefix.
    #[test]
    fn response_heads_from_hostile_bytes_do_not_panic(
        input in prop_oneof![
            vec(any::<u8>(), 0..200),
            (inputs::response(), vec((any::<Index>(), any::<u8>()), 1..4)).prop_map(|(r, ins)| {
                let mut b = r.bytes();
                for (i, x) in ins {
                    let k = i.index(b.len() + 1);
                    b.insert(k, x);
                }
                b
            }),
        ],
    ) {
        if let Ok(Some(h)) = response::parse(&input) {
            prop_assert!(h.len <= input.len() && input[..h.len].ends_with(b"\n"));
        }
    }
}

/// Feeds `input` to a decoder as `pump_body` does, cut at `cuts`: the data, and where the body
/// ended or why it failed (`Err(None)`: it never ended).
fn feed(input: &[u8], cuts: &[Index]) -> (Vec<u8>, Result<usize, Option<ChunkError>>) {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
    at.push(input.len());
    at.sort_unstable();
    let mut d = Decoder::default();
    let mut data = Vec::new();
    // `input[consumed..to]` is what has arrived and not been consumed: `carry` in conn.rs.
    let mut consumed = 0;
    for to in at {
        while consumed < to {
            match d.step(&input[consumed..to]) {
                Ok(Step::Data { start, end, used }) => {
                    data.extend_from_slice(&input[consumed + start..consumed + end]);
                    consumed += used;
                }
                Ok(Step::NeedMore) => consumed = to,
                Ok(Step::End { used }) => return (data, Ok(consumed + used)),
                Err(e) => return (data, Err(Some(e))),
            }
        }
    }
    (data, Err(None))
}

/// A parse result in a comparable form: needs more, a head of this many bytes, or a refusal
/// with this status.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    More,
    Head(usize),
    Refused(StatusCode),
}

fn outcome(r: &Result<Option<Head>, request::HeadError>) -> Outcome {
    match r {
        Ok(None) => Outcome::More,
        Ok(Some(h)) => Outcome::Head(h.len),
        Err(e) => Outcome::Refused(e.status()),
    }
}
