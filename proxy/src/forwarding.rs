//! Forwarding and trace fields on requests going upstream: who the client was (`x-forwarded-for`,
//! `x-forwarded-proto`, `forwarded`, RFC 7239), a request id (`x-request-id`) and W3C trace
//! context (`traceparent`, `tracestate`), with a trust boundary.
//!
//! A proxy that does not trust its clients' fields (the default of a standalone proxy: the edge)
//! drops whatever the client sent in them, so an application behind it can believe what it reads;
//! a trusting one (the default of a sidecar: its local app and the mesh's other proxies) keeps and
//! extends them. Then every request gets:
//! - `x-forwarded-for`: the client's address, appended to a trusted list;
//! - `x-forwarded-proto: http` (`https` when the client came over TLS) when no trusted value
//!   says otherwise;
//! - `forwarded: for=ADDR;proto=http` (`https` over TLS), appended to a trusted list (IPv6
//!   quoted as the RFC asks);
//! - `x-request-id`: a trusted one is kept, otherwise a new one (32 random hex digits);
//! - `traceparent`: a valid trusted one keeps its trace id and flags with a new parent id (this
//!   hop's span), anything else starts a new trace; `tracestate` goes with a kept trace and is
//!   dropped with a new one. A new trace is flagged sampled (`01`) when this proxy exports spans
//!   (`otel`, [`crate::otel`]) and its sampling ratio picks it, else `00`.
//!
//! Whatever the trust and even with forwarding off, `loadshift-peer-identity` is the proxy's own:
//! the client's is dropped, and it is set only to the identity of a client certificate this
//! proxy verified ([`Secure`]).

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use rand::Rng;

/// The request header that carries the caller's verified identity to the app (a SPIFFE ID),
/// set only from a client certificate this proxy verified (`crate::tls`) and removed from every
/// request that brings its own.
pub const PEER_IDENTITY: HeaderName = HeaderName::from_static("loadshift-peer-identity");

/// Put by the connection on every request that arrived over TLS: the forwarded protocol is
/// `https`, and `peer` is the client certificate's identity when the listener verified one
/// (`mesh_tls`: its SPIFFE ID; `client_ca_file`: its first URI SAN).
#[derive(Clone, Debug)]
pub struct Secure {
    pub peer: Option<HeaderValue>,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// What to do with one request's forwarding fields.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Keep and extend the client's forwarding, request-id and trace fields (else drop them).
    pub trust: bool,
    /// Add the fields at all; off, the request goes as the client sent it (minus hop-by-hop).
    pub enabled: bool,
    /// With a span exporter: the share of new traces sampled (flag `01`). `None`: no exporter,
    /// new traces go unsampled.
    pub sample: Option<f64>,
}

/// This hop's place in its trace: what the request carries upstream in `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trace {
    pub trace_id: [u8; 16],
    /// This hop's span, the parent id sent upstream.
    pub span_id: [u8; 8],
    /// The client's span when the trace was kept from a trusted `traceparent`.
    pub parent_id: Option<[u8; 8]>,
    /// The sampled flag sent upstream.
    pub sampled: bool,
}

/// The fields an untrusting proxy drops.
const CLIENT_CLAIMS: [HeaderName; 7] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    header::FORWARDED,
    X_REQUEST_ID,
    TRACEPARENT,
    TRACESTATE,
];

/// Rewrites `headers` of a request from `client` (`None` when the address is unknown: no
/// address fields are added then), which came over TLS when `secure` is given. On the request
/// path: values are built on the stack, one allocation per field written (its `HeaderValue`),
/// and the client's fields are looked for in one pass over the request's (usually none).
/// Returns the trace context sent upstream; `None` when forwarding is off.
pub fn apply(
    headers: &mut HeaderMap,
    client: Option<IpAddr>,
    secure: Option<&Secure>,
    p: Params,
    rng: &mut impl Rng,
) -> Option<Trace> {
    // A pass over the names is cheaper than a hashed removal, and finds nothing on almost every
    // request.
    if headers.keys().any(|k| *k == PEER_IDENTITY) {
        headers.remove(PEER_IDENTITY);
    }
    if let Some(id) = secure.and_then(|s| s.peer.clone()) {
        headers.insert(PEER_IDENTITY, id);
    }
    if !p.enabled {
        return None;
    }
    let proto = if secure.is_some() { "https" } else { "http" };
    if !p.trust && headers.keys().any(|k| CLIENT_CLAIMS.contains(k)) {
        for name in CLIENT_CLAIMS {
            headers.remove(name);
        }
    }
    if let Some(ip) = client {
        let mut v = Buf::new();
        v.ip(ip);
        append(headers, X_FORWARDED_FOR, v.as_bytes());
        let mut v = Buf::new();
        v.push(b"for=");
        match ip {
            IpAddr::V4(_) => v.ip(ip),
            IpAddr::V6(_) => {
                v.push(b"\"[");
                v.ip(ip);
                v.push(b"]\"");
            }
        }
        v.push(b";proto=");
        v.push(proto.as_bytes());
        append(headers, header::FORWARDED, v.as_bytes());
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !headers.contains_key(X_REQUEST_ID) {
        let mut v = Buf::new();
        v.hex(&rng.random::<[u8; 16]>());
        if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
            headers.insert(X_REQUEST_ID, v);
        }
    }
    let kept = headers
        .get(TRACEPARENT)
        .and_then(|t| t.to_str().ok())
        .and_then(parse_traceparent);
    let (trace_id, parent_id, flags) = match kept {
        Some(k) => (k.trace_id, Some(k.parent_id), k.flags),
        None => {
            headers.remove(TRACESTATE);
            let mut trace: [u8; 16] = rng.random();
            trace[15] |= 1; // never all zero
            let sampled = p.sample.is_some_and(|r| rng.random::<f64>() < r);
            (trace, None, u8::from(sampled))
        }
    };
    let span_id = nonzero(rng);
    let mut v = Buf::new();
    v.push(b"00-");
    v.hex(&trace_id);
    v.push(b"-");
    v.hex(&span_id);
    v.push(b"-");
    v.hex(&[flags]);
    if let Ok(t) = HeaderValue::from_bytes(v.as_bytes()) {
        headers.insert(TRACEPARENT, t);
    }
    Some(Trace {
        trace_id,
        span_id,
        parent_id,
        sampled: flags & 1 == 1,
    })
}

/// A field value assembled on the stack: the longest written is an IPv6 `forwarded` element
/// (61 bytes).
struct Buf {
    b: [u8; 64],
    n: usize,
}

impl Buf {
    fn new() -> Self {
        Self { b: [0; 64], n: 0 }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.b[..self.n]
    }

    fn push(&mut self, s: &[u8]) {
        let end = (self.n + s.len()).min(self.b.len());
        self.b[self.n..end].copy_from_slice(&s[..end - self.n]);
        self.n = end;
    }

    fn hex(&mut self, bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for &x in bytes {
            self.push(&[DIGITS[usize::from(x >> 4)], DIGITS[usize::from(x & 0xf)]]);
        }
    }

    fn ip(&mut self, ip: IpAddr) {
        use std::io::Write as _;
        let mut rest = &mut self.b[self.n..];
        let before = rest.len();
        // An address fits (at most 39 characters); a failed write leaves what was written.
        let _ = write!(rest, "{ip}");
        self.n += before - rest.len();
    }
}

/// `value` appended to `name`'s list (a new field when it has none or an unreadable one).
fn append(headers: &mut HeaderMap, name: HeaderName, value: &[u8]) {
    let v = match headers.get(&name).map(HeaderValue::as_bytes) {
        Some(prev) if !prev.trim_ascii().is_empty() => {
            let mut joined = Vec::with_capacity(prev.len() + 2 + value.len());
            joined.extend_from_slice(prev);
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(value);
            HeaderValue::from_bytes(&joined)
        }
        _ => HeaderValue::from_bytes(value),
    };
    if let Ok(v) = v {
        headers.insert(name, v);
    }
}

/// A span id: 8 random bytes, not all zero.
fn nonzero(rng: &mut impl Rng) -> [u8; 8] {
    let mut b: [u8; 8] = rng.random();
    b[7] |= 1;
    b
}

/// A valid `traceparent`'s fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Parent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

/// The fields of a version-00 `traceparent` (W3C Trace Context §3.2): four dash-separated
/// lowercase hex fields of 2, 32, 16 and 2 digits, trace and parent ids not all zero. `None` for
/// anything else, which starts a new trace.
fn parse_traceparent(v: &str) -> Option<Parent> {
    let mut f = v.trim().split('-');
    let (version, trace, parent, flags) = (f.next()?, f.next()?, f.next()?, f.next()?);
    let hexes = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    };
    let zero = |s: &str| s.bytes().all(|c| c == b'0');
    (f.next().is_none()
        && version == "00"
        && hexes(trace, 32)
        && !zero(trace)
        && hexes(parent, 16)
        && !zero(parent)
        && hexes(flags, 2))
    .then(|| Parent {
        trace_id: unhex(trace),
        parent_id: unhex(parent),
        flags: unhex::<1>(flags)[0],
    })
}

/// Lowercase hex digits (checked by the caller) to bytes.
fn unhex<const N: usize>(s: &str) -> [u8; N] {
    let digit = |c: u8| {
        if c.is_ascii_digit() {
            c - b'0'
        } else {
            c - b'a' + 10
        }
    };
    let mut out = [0; N];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *o = digit(pair[0]) << 4 | digit(pair[1]);
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::SmallRng};

    use super::*;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

    fn run(sent: &[(&str, &str)], trust: bool, client: Option<IpAddr>) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in sent {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let p = Params {
            trust,
            enabled: true,
            sample: None,
        };
        apply(&mut h, client, None, p, &mut SmallRng::seed_from_u64(7));
        h
    }

    fn get<'a>(h: &'a HeaderMap, k: &str) -> &'a str {
        h.get(k).map_or("", |v| v.to_str().unwrap())
    }

    #[test]
    fn an_untrusted_clients_fields_are_replaced() {
        let sent = [
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil"),
            ("x-request-id", "chosen-by-client"),
            ("traceparent", &format!("00-{TRACE}-b7ad6b7169203331-01")),
            ("tracestate", "k=v"),
        ];
        let h = run(&sent, false, Some("10.0.0.7".parse().unwrap()));
        assert_eq!(get(&h, "x-forwarded-for"), "10.0.0.7");
        assert_eq!(get(&h, "forwarded"), "for=10.0.0.7;proto=http");
        assert_eq!(get(&h, "x-forwarded-proto"), "http");
        assert!(h.get("x-forwarded-host").is_none());
        let id = get(&h, "x-request-id");
        assert!(id.len() == 32 && id != "chosen-by-client", "{id}");
        let tp = get(&h, "traceparent");
        assert!(!tp.contains(TRACE) && tp.ends_with("-00"), "{tp}");
        assert!(parse_traceparent(tp).is_some(), "{tp}");
        assert!(h.get("tracestate").is_none());
    }

    #[test]
    fn a_trusted_clients_fields_are_kept_and_extended() {
        let sent = [
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9;proto=https"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "abc-123"),
            ("traceparent", &format!("00-{TRACE}-b7ad6b7169203331-01")),
            ("tracestate", "k=v"),
        ];
        let h = run(&sent, true, Some("::1".parse().unwrap()));
        assert_eq!(get(&h, "x-forwarded-for"), "203.0.113.9, ::1");
        assert_eq!(
            get(&h, "forwarded"),
            "for=203.0.113.9;proto=https, for=\"[::1]\";proto=http"
        );
        assert_eq!(get(&h, "x-forwarded-proto"), "https");
        assert_eq!(get(&h, "x-request-id"), "abc-123");
        let tp = get(&h, "traceparent");
        assert!(
            tp.starts_with(&format!("00-{TRACE}-")) && tp.ends_with("-01"),
            "{tp}"
        );
        assert!(
            !tp.contains("b7ad6b7169203331"),
            "a new span id per hop: {tp}"
        );
        assert_eq!(get(&h, "tracestate"), "k=v");
    }

    #[test]
    fn over_tls_the_proto_is_https_and_only_a_verified_identity_reaches_the_app() {
        let forged = [(
            "loadshift-peer-identity",
            "spiffe://loadshift/ns/default/sa/admin",
        )];
        let client = Some("10.0.0.7".parse().unwrap());
        let p = |enabled| Params {
            trust: true,
            enabled,
            sample: None,
        };
        let with = |secure: Option<&Secure>, enabled: bool| {
            let mut h = HeaderMap::new();
            for (k, v) in forged {
                h.insert(k, HeaderValue::from_static(v));
            }
            apply(
                &mut h,
                client,
                secure,
                p(enabled),
                &mut SmallRng::seed_from_u64(3),
            );
            h
        };
        // Plaintext: the forged identity is dropped, trusted or not, forwarding on or off.
        for enabled in [true, false] {
            assert!(!with(None, enabled).contains_key("loadshift-peer-identity"));
        }
        let h = with(None, true);
        assert_eq!(get(&h, "x-forwarded-proto"), "http");
        // TLS without a client certificate: https, still no identity.
        let h = with(Some(&Secure { peer: None }), true);
        assert_eq!(get(&h, "x-forwarded-proto"), "https");
        assert_eq!(get(&h, "forwarded"), "for=10.0.0.7;proto=https");
        assert!(!h.contains_key("loadshift-peer-identity"));
        // A verified client: its identity, once.
        let me = HeaderValue::from_static("spiffe://loadshift/ns/default/sa/web");
        let h = with(Some(&Secure { peer: Some(me) }), false);
        let ids: Vec<_> = h.get_all("loadshift-peer-identity").iter().collect();
        assert_eq!(ids, ["spiffe://loadshift/ns/default/sa/web"]);
    }

    #[test]
    fn malformed_trace_context_starts_a_new_trace_and_off_changes_nothing() {
        for bad in [
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "garbage",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
            let h = run(&[("traceparent", bad)], true, None);
            assert!(!get(&h, "traceparent").contains(TRACE), "{bad}");
        }
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        let off = Params {
            trust: false,
            enabled: false,
            sample: None,
        };
        assert_eq!(
            apply(&mut h, None, None, off, &mut SmallRng::seed_from_u64(1)),
            None
        );
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn the_trace_sent_upstream_is_returned_and_sampling_follows_the_ratio() {
        let parent = format!("00-{TRACE}-b7ad6b7169203331-01");
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_str(&parent).unwrap());
        let p = Params {
            trust: true,
            enabled: true,
            sample: Some(0.0),
        };
        let mut rng = SmallRng::seed_from_u64(3);
        let t = apply(&mut h, None, None, p, &mut rng).unwrap();
        assert_eq!(
            t.parent_id,
            Some([0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31])
        );
        assert!(t.sampled, "a trusted sampled flag wins over the ratio");
        let sent = parse_traceparent(get(&h, "traceparent")).unwrap();
        assert_eq!(
            (sent.trace_id, sent.parent_id, sent.flags),
            (t.trace_id, t.span_id, 1)
        );
        assert_eq!(sent.trace_id[0], 0x0a);

        // New traces: sampled at the ratio, flagged accordingly.
        let mut sampled = 0;
        for _ in 0..1000 {
            let mut h = HeaderMap::new();
            let p = Params {
                sample: Some(0.25),
                ..p
            };
            let t = apply(&mut h, None, None, p, &mut rng).unwrap();
            assert_eq!(t.parent_id, None);
            assert!(get(&h, "traceparent").ends_with(if t.sampled { "-01" } else { "-00" }));
            sampled += usize::from(t.sampled);
        }
        // Binomial(1000, 0.25): sd 13.7; 5 sd.
        assert!((182..=318).contains(&sampled), "{sampled}");
    }
}
