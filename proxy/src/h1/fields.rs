//! An HTTP/1.1 upstream response's header fields, kept as the wire lines an HTTP/1.1 client
//! gets, sans-IO.
//!
//! Most responses go from an HTTP/1.1 upstream to an HTTP/1.1 client, and nothing on the way
//! reads their fields: building a `HeaderMap` (a parsed name, a value and a hash insert per
//! field, then a walk to encode it again) cost about a seventh of a proxied request's
//! instructions. So the fields are copied once, as `name: value` lines with hop-by-hop and
//! framing fields already removed (RFC 9110 §7.6.1, RFC 9112 §6), and turned into a map only for
//! an HTTP/2 client ([`RawFields::to_header_map`]). The proxies' own `loadshift-load` field is
//! picked out on the way ([`Collected::load`], [`crate::load`]): it is read, never forwarded.

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::{
    headers::{is_hop_by_hop_name, names_a_field},
    load::{self, Carried},
    spare,
};

/// Kept fields of one response head.
#[derive(Debug)]
pub struct RawFields {
    lines: spare::Buffer,
    /// The upstream's `Content-Length`, stated again on responses that carry no body (HEAD,
    /// 204, 304) and for HTTP/2 clients.
    length: Option<u64>,
}

/// What a response head's fields say besides the fields themselves.
#[derive(Debug)]
pub struct Collected {
    pub fields: RawFields,
    /// `Transfer-Encoding` with `chunked` last.
    pub chunked: bool,
    /// Other codings without `chunked` last: the body runs until the connection closes.
    pub until_close: bool,
    pub keep_alive: bool,
    /// The `Upgrade` field (dropped from the lines like every hop-by-hop field): what a `101`
    /// switches to.
    pub upgrade: Option<HeaderValue>,
    /// The upstream's load report (`loadshift-load`, not kept in the lines); two fields are
    /// invalid.
    pub load: Option<Carried>,
}

impl RawFields {
    /// `name: value\r\n` lines, ready to write after the status line.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// The same fields as a map (names lower-cased), with the upstream's length if it sent one.
    pub fn to_header_map(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in self.lines.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii_start());
            // Both were accepted by the head parser; a field `http` refuses is left out.
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                h.append(n, v);
            }
        }
        if let Some(n) = self.length {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        h
    }
}

/// Sorts a response head's fields: framing and connection fields are read, hop-by-hop fields
/// and the ones `Connection` names are dropped, the rest are copied as lines. `Err` names a
/// field that makes the head unusable.
pub fn collect(fields: &[httparse::Header<'_>], http11: bool) -> Result<Collected, String> {
    let mut keep_alive = http11;
    // `close` ends the connection whatever else the fields list (RFC 9112 §9.6).
    let mut close = false;
    // Names beyond the usual tokens make a second, rarer check per field.
    let mut names_more = false;
    for f in fields {
        if f.name.eq_ignore_ascii_case("connection") {
            for t in std::str::from_utf8(f.value).unwrap_or("").split(',') {
                let t = t.trim();
                if t.eq_ignore_ascii_case("close") {
                    close = true;
                } else if t.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                } else if names_a_field(t) {
                    names_more = true;
                }
            }
        }
    }
    let mut lines = spare::buffer();
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut until_close = false;
    let mut upgrade = None;
    let mut report = None;
    for f in fields {
        let name = f.name.as_bytes();
        if name.len() == load::NAME.as_str().len()
            && name.eq_ignore_ascii_case(load::NAME.as_str().as_bytes())
        {
            report = Some(match report {
                None => Carried::of(f.value),
                Some(_) => Carried::Invalid,
            });
            continue;
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let v = std::str::from_utf8(f.value).unwrap_or("");
            let last = v.rsplit(',').next().unwrap_or("").trim();
            chunked = last.eq_ignore_ascii_case("chunked");
            until_close = !chunked;
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(f.value)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| format!("upstream content-length {:?}", f.value.escape_ascii()))?;
            if length.is_some_and(|m| m != n) {
                return Err("conflicting upstream content-length".into());
            }
            length = Some(n);
            continue;
        }
        if is_hop_by_hop_name(name) {
            if upgrade.is_none() && name.eq_ignore_ascii_case(b"upgrade") {
                upgrade = HeaderValue::from_bytes(f.value).ok();
            }
            continue;
        }
        if names_more && listed(fields, name) {
            continue;
        }
        lines.extend_from_slice(name);
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(f.value);
        lines.extend_from_slice(b"\r\n");
    }
    if chunked || until_close {
        // A transfer coding overrides any length (RFC 9112 §6.3).
        length = None;
        // An HTTP/1.0 message with one has faulty framing: the connection closes after it
        // (RFC 9112 §6.1).
        close |= !http11;
    }
    Ok(Collected {
        fields: RawFields { lines, length },
        chunked,
        until_close,
        keep_alive: keep_alive && !close,
        upgrade,
        load: report,
    })
}

/// True when a `Connection` field names `name`.
fn listed(fields: &[httparse::Header<'_>], name: &[u8]) -> bool {
    fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("connection"))
        .flat_map(|f| f.value.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Collected, String> {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut fields);
        assert!(r.parse(raw).unwrap().is_complete());
        collect(r.headers, r.version == Some(1))
    }

    #[test]
    fn hop_by_hop_framing_and_listed_fields_are_not_kept() {
        let c = parse(
            b"HTTP/1.1 200 OK\r\nServer: up\r\nConnection: keep-alive, X-Secret\r\n\
              Keep-Alive: timeout=5\r\nX-Secret: 1\r\nContent-Length: 12\r\n\
              Upgrade: h2c\r\nX-Kept: a, b\r\nProxy-Authenticate: Basic\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(c.fields.lines()).unwrap(),
            "Server: up\r\nX-Kept: a, b\r\n"
        );
        assert_eq!(c.fields.length(), Some(12));
        assert!(c.keep_alive && !c.chunked && !c.until_close);
        assert_eq!(c.upgrade.as_ref().unwrap(), "h2c");

        let m = c.fields.to_header_map();
        assert_eq!(m.len(), 3);
        assert_eq!(m["server"], "up");
        assert_eq!(m["x-kept"], "a, b");
        assert_eq!(m["content-length"], "12");
    }

    #[test]
    fn the_load_field_is_read_and_not_kept() {
        let c = parse(
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\nLoadshift-Load: rif=4;lat=2.5\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(std::str::from_utf8(c.fields.lines()).unwrap(), "X-A: 1\r\n");
        let want = load::Report {
            rif: 4,
            latency_ms: 2.5,
            app_ms: None,
        };
        assert_eq!(c.load, Some(Carried::Report(want)));
        let c = parse(b"HTTP/1.1 200 OK\r\nloadshift-load: rif=4\r\n\r\n").unwrap();
        assert_eq!(
            (c.load, c.fields.lines().is_empty()),
            (Some(Carried::Invalid), true)
        );
        let c = parse(
            b"HTTP/1.1 200 OK\r\nloadshift-load: rif=1;lat=1\r\nloadshift-load: rif=1;lat=1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(c.load, Some(Carried::Invalid));
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().load, None);
    }

    #[test]
    fn framing_and_keep_alive_follow_the_head() {
        let c = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap();
        assert!(c.chunked && !c.until_close && c.keep_alive);
        assert!(c.fields.lines().is_empty());
        let c = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").unwrap();
        assert!(!c.chunked && c.until_close);
        let c = parse(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
        assert!(!c.keep_alive);
        let c = parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(c.keep_alive);
        let c = parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!c.keep_alive);
    }

    /// Found by the codec's properties (`h1::tests::prop`).
    #[test]
    fn close_wins_and_an_http10_coding_closes() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nConnection: close, keep-alive\r\n\r\n"[..],
            b"HTTP/1.0 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(
                !parse(raw).unwrap().keep_alive,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn bad_or_conflicting_lengths_are_refused() {
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").is_err());
        assert!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n").is_err()
        );
        let c = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(c.unwrap().fields.length(), Some(2));
    }
}
