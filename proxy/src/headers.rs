//! Hop-by-hop header handling per RFC 9110 §7.6.1: connection-specific fields and every field the
//! `Connection` header names are removed before forwarding, in both directions. `TE: trailers` is
//! kept (gRPC needs it end to end over HTTP/2).

use http::{HeaderMap, HeaderValue, header};

const HOP_BY_HOP: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];
const KEEP_ALIVE: &str = "keep-alive";
const PROXY_CONNECTION: &str = "proxy-connection";

/// True when `h` has a field [`strip_hop_by_hop`] acts on. One pass over the fields (standard
/// names compare as enum values) is much cheaper than a hashed lookup per hop-by-hop name, and
/// most messages have none.
fn has_hop_by_hop(h: &HeaderMap) -> bool {
    h.keys().any(is_hop_by_hop)
}

/// True for the fixed hop-by-hop names and `te`.
fn is_hop_by_hop(name: &header::HeaderName) -> bool {
    is_hop_by_hop_name(name.as_str().as_bytes())
}

/// [`is_hop_by_hop`] on a field name as received, in any case. A length check first settles
/// almost every other field without comparing bytes.
pub fn is_hop_by_hop_name(name: &[u8]) -> bool {
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    match name.len() {
        2 => is("te"),
        7 => is("upgrade"),
        10 => is("connection") || is(KEEP_ALIVE),
        16 => is(PROXY_CONNECTION),
        17 => is("transfer-encoding"),
        18 => is("proxy-authenticate"),
        19 => is("proxy-authorization"),
        _ => false,
    }
}

/// True when a `Connection` token names a field to remove: anything but `close`, `keep-alive`
/// (connection options), `te` (kept for gRPC) and `host` (the target: a client must not be able
/// to strip what the request is routed and forwarded by).
pub fn names_a_field(token: &str) -> bool {
    let t = token.trim();
    !t.is_empty()
        && !t.eq_ignore_ascii_case("close")
        && !t.eq_ignore_ascii_case(KEEP_ALIVE)
        && !t.eq_ignore_ascii_case("te")
        && !t.eq_ignore_ascii_case("host")
}

/// The same rules applied field by field while a parser builds a header map, so the map never
/// holds what [`strip_hop_by_hop`] would remove and the later pass over it finds nothing to do.
#[derive(Debug, Default)]
pub struct HopFilter {
    /// A `Connection` value naming fields beyond `close`, `keep-alive` and `te`.
    listed: Option<HeaderValue>,
    te_kept: bool,
}

impl HopFilter {
    /// The value to forward for this field, or `None` to drop it.
    pub fn admit(&mut self, name: &header::HeaderName, value: HeaderValue) -> Option<HeaderValue> {
        if !is_hop_by_hop(name) {
            return Some(value);
        }
        if *name == header::CONNECTION {
            let names_more = value
                .to_str()
                .map_or(true, |v| v.split(',').any(names_a_field));
            if names_more {
                self.listed = Some(value);
            }
            return None;
        }
        if *name == header::TE {
            let trailers = value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            });
            if !trailers || std::mem::replace(&mut self.te_kept, true) {
                return None;
            }
            return Some(HeaderValue::from_static("trailers"));
        }
        None
    }

    /// Removes the fields a `Connection` header named (rare: most name none).
    pub fn finish(self, h: &mut HeaderMap) {
        if let Some(conn) = self.listed {
            strip_listed(h, &conn);
        }
    }
}

fn strip_listed(h: &mut HeaderMap, conn: &HeaderValue) {
    if let Ok(list) = conn.to_str() {
        for name in list.split(',').filter(|n| names_a_field(n)) {
            h.remove(name.trim());
        }
    }
}

/// Strips hop-by-hop fields in place.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if !has_hop_by_hop(h) {
        return;
    }
    // Most requests carry none of these: check before paying for removals.
    if let Some(conn) = h.get(header::CONNECTION).cloned() {
        strip_listed(h, &conn);
    }
    for name in &HOP_BY_HOP {
        if h.contains_key(name) {
            h.remove(name);
        }
    }
    if h.contains_key(KEEP_ALIVE) {
        h.remove(KEEP_ALIVE);
    }
    if h.contains_key(PROXY_CONNECTION) {
        h.remove(PROXY_CONNECTION);
    }
    if let Some(te) = h.get(header::TE) {
        let trailers = te.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
        h.remove(header::TE);
        if trailers {
            h.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn removes_connection_listed_and_fixed_fields() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers, deflate"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        assert!(h.contains_key("x-kept"));
    }

    /// Parsing field by field through the filter leaves what the in-place pass leaves.
    fn filtered(fields: &[(&str, &str)]) -> HeaderMap {
        let mut f = HopFilter::default();
        let mut h = HeaderMap::new();
        for (n, v) in fields {
            let name = header::HeaderName::from_bytes(n.as_bytes()).unwrap();
            if let Some(v) = f.admit(&name, HeaderValue::from_str(v).unwrap()) {
                h.append(name, v);
            }
        }
        f.finish(&mut h);
        h
    }

    #[test]
    fn the_field_filter_agrees_with_the_in_place_pass() {
        let cases: [&[(&str, &str)]; 4] = [
            &[
                ("host", "a"),
                ("x-secret", "1"),
                ("connection", "keep-alive, x-secret"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers, deflate"),
                ("upgrade", "h2c"),
                ("x-kept", "1"),
            ],
            &[
                ("connection", "close"),
                ("content-length", "3"),
                ("te", "gzip"),
            ],
            &[
                ("te", "trailers"),
                ("te", "trailers"),
                ("proxy-connection", "x"),
            ],
            &[
                ("transfer-encoding", "chunked"),
                ("connection", "te, Close"),
                ("te", "trailers"),
            ],
        ];
        for fields in cases {
            let mut whole = HeaderMap::new();
            for (n, v) in fields {
                whole.append(
                    header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            strip_hop_by_hop(&mut whole);
            assert_eq!(filtered(fields), whole, "{fields:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_leaves_no_connection_field(v in "[ -~]{0,80}") {
            let mut h = HeaderMap::new();
            if let Ok(val) = HeaderValue::from_str(&v) {
                h.insert(header::CONNECTION, val.clone());
                h.insert(header::TE, val);
            }
            strip_hop_by_hop(&mut h);
            prop_assert!(!h.contains_key(header::CONNECTION));
        }
    }
}
