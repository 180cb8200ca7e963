//! HTTP/1.1 Upgrade (RFC 9110 §7.8), sans-IO: which requests may turn their connection into a
//! tunnel, the fields that ask an upstream for it, and whether an upstream's `101 Switching
//! Protocols` agrees.
//!
//! Only WebSocket (RFC 6455 §4) is tunnelled, and only from a request that cannot hide another
//! one: HTTP/1.1, `GET`, no body (none announced, or `Content-Length: 0`), `Connection` listing
//! `upgrade` and not `close`, and an `Upgrade` field naming `websocket`. Any other upgrade
//! (`h2c`, `TLS/1.0`, an `Upgrade` without the `Connection` option, one on a request with a body
//! or in HTTP/1.0) is ignored as RFC 9110 §7.8 allows: both fields are dropped and the request is
//! served as a plain one, so a client that asked opportunistically (curl's `--http2` sends
//! `Upgrade: h2c`) carries on in HTTP/1.1 and no smuggled bytes ever reach an upstream as a
//! tunnel (the h2c smuggling of Miller 2020).
//!
//! A WebSocket an HTTP/2 client opens with an extended CONNECT (RFC 8441) reaches an HTTP/1.1
//! upstream as such an upgrade. RFC 8441 §5 drops the key exchange, so the proxy makes up the
//! `Sec-WebSocket-Key` itself ([`new_key`]) and checks the upstream's `Sec-WebSocket-Accept`
//! against it ([`Accept`], RFC 6455 §4.1-4.2.2), as the client would have over HTTP/1.1.

use http::{HeaderValue, Method, Version};

use super::{
    fields::RawFields,
    framing::{Framing, push_field},
};

/// The protocol tunnelled; RFC 6455 §4.1 names it case-insensitively.
const WEBSOCKET: &str = "websocket";

/// A request extension: the request asks to switch its connection to WebSocket. Holds the
/// client's token as sent (`websocket`, `WebSocket`), forwarded as the upstream's `Upgrade`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade(pub HeaderValue);

/// What a request head's fields say about an upgrade, gathered while the head is parsed.
#[derive(Debug, Default)]
pub struct Asked {
    /// `Connection` lists `upgrade`.
    pub option: bool,
    /// The `websocket` token of an `Upgrade` field, if one names it.
    pub websocket: Option<HeaderValue>,
}

impl Asked {
    /// Reads one `Upgrade` field value: a list of protocols (`name[/version]`).
    pub fn upgrade_field(&mut self, value: &HeaderValue) {
        if self.websocket.is_some() {
            return;
        }
        let Ok(list) = value.to_str() else { return };
        self.websocket = list
            .split(',')
            .map(str::trim)
            .find(|p| p.eq_ignore_ascii_case(WEBSOCKET))
            .and_then(|p| HeaderValue::from_str(p).ok());
    }

    /// The upgrade to forward, if this request may become a tunnel; `close` is whether
    /// `Connection` also listed `close`.
    pub fn decide(
        self,
        method: &Method,
        version: Version,
        framing: Framing,
        close: bool,
    ) -> Option<Upgrade> {
        let eligible = self.option
            && !close
            && version == Version::HTTP_11
            && *method == Method::GET
            && framing == Framing::None;
        eligible.then_some(self.websocket).flatten().map(Upgrade)
    }
}

/// Appends the fields that ask an upstream to switch: `connection: upgrade` and `upgrade: P`.
pub fn push_request_fields(out: &mut Vec<u8>, u: &Upgrade) {
    out.extend_from_slice(b"connection: upgrade\r\n");
    push_field(out, "upgrade", u.0.as_bytes());
}

/// True when an upstream's `101` names the protocol that was asked for in its `Upgrade` field
/// (RFC 9110 §15.2.2: a 101 must say what it switches to).
pub fn accepted(asked: &Upgrade, answered: Option<&HeaderValue>) -> bool {
    let Some(list) = answered.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    list.split(',')
        .map(str::trim)
        .any(|p| p.eq_ignore_ascii_case(asked.0.to_str().unwrap_or(WEBSOCKET)))
}

/// The GUID RFC 6455 §1.3 appends to a key before hashing it.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A request extension on an upgrade whose key the proxy chose: the `Sec-WebSocket-Accept` the
/// upstream's `101` must carry for the switch to count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accept(String);

impl Accept {
    /// The answer to `key`: base64 of the SHA-1 of the key and the GUID (RFC 6455 §4.2.2).
    pub fn for_key(key: &[u8]) -> Self {
        let mut input = Vec::with_capacity(key.len() + GUID.len());
        input.extend_from_slice(key);
        input.extend_from_slice(GUID);
        Self(base64(&sha1(&input)))
    }

    /// Whether an upstream's `101` fields carry this answer, as its only `Sec-WebSocket-Accept`.
    pub fn answered_in(&self, fields: &RawFields) -> bool {
        let mut found = fields.lines().split(|&b| b == b'\n').filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            line[..colon]
                .eq_ignore_ascii_case(b"sec-websocket-accept")
                .then(|| line[colon + 1..].trim_ascii())
        });
        matches!((found.next(), found.next()), (Some(v), None) if v == self.0.as_bytes())
    }
}

/// A fresh `Sec-WebSocket-Key` (16 random bytes in base64, RFC 6455 §4.1) and the answer it
/// asks for.
pub fn new_key() -> (String, Accept) {
    let key = base64(&rand::random::<[u8; 16]>());
    let accept = Accept::for_key(key.as_bytes());
    (key, accept)
}

/// SHA-1, as RFC 6455 names it for the handshake: it protects nothing there (the answer proves
/// only that the upstream speaks WebSocket), so its known collisions do not matter.
fn sha1(data: &[u8]) -> [u8; 20] {
    use sha1::Digest as _;
    sha1::Sha1::digest(data).into()
}

/// Base64 with padding (RFC 4648 §4), as RFC 6455 writes keys and answers.
fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(connection_upgrade: bool, upgrade: &str) -> Asked {
        let mut a = Asked {
            option: connection_upgrade,
            websocket: None,
        };
        a.upgrade_field(&HeaderValue::from_str(upgrade).unwrap());
        a
    }

    #[test]
    fn only_a_bodiless_http11_get_asking_for_websocket_is_tunnelled() {
        let get = Method::GET;
        let ok = asked(true, "WebSocket").decide(&get, Version::HTTP_11, Framing::None, false);
        assert_eq!(ok, Some(Upgrade(HeaderValue::from_static("WebSocket"))));
        let listed = asked(true, "h2c, websocket");
        assert!(
            listed
                .decide(&get, Version::HTTP_11, Framing::None, false)
                .is_some()
        );
        let refused = [
            (
                asked(false, "websocket"),
                &get,
                Version::HTTP_11,
                Framing::None,
                false,
            ),
            (
                asked(true, "h2c"),
                &get,
                Version::HTTP_11,
                Framing::None,
                false,
            ),
            (
                asked(true, "websocket"),
                &Method::POST,
                Version::HTTP_11,
                Framing::None,
                false,
            ),
            (
                asked(true, "websocket"),
                &get,
                Version::HTTP_10,
                Framing::None,
                false,
            ),
            (
                asked(true, "websocket"),
                &get,
                Version::HTTP_11,
                Framing::Length(3),
                false,
            ),
            (
                asked(true, "websocket"),
                &get,
                Version::HTTP_11,
                Framing::Chunked,
                false,
            ),
            (
                asked(true, "websocket"),
                &get,
                Version::HTTP_11,
                Framing::None,
                true,
            ),
            (
                asked(true, "websocket2"),
                &get,
                Version::HTTP_11,
                Framing::None,
                false,
            ),
        ];
        for (i, (a, m, v, f, close)) in refused.into_iter().enumerate() {
            assert_eq!(a.decide(m, v, f, close), None, "case {i}");
        }
    }

    #[test]
    fn a_101_must_name_the_protocol_asked_for() {
        let ws = Upgrade(HeaderValue::from_static("websocket"));
        assert!(accepted(&ws, Some(&HeaderValue::from_static("WebSocket"))));
        assert!(!accepted(&ws, Some(&HeaderValue::from_static("h2c"))));
        assert!(!accepted(&ws, None));
        let mut out = Vec::new();
        push_request_fields(&mut out, &ws);
        assert_eq!(out, b"connection: upgrade\r\nupgrade: websocket\r\n");
    }

    #[test]
    fn the_accept_answer_follows_rfc_6455() {
        // RFC 6455 §1.3's example.
        let a = Accept::for_key(b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(a.0, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        // FIPS 180-4's examples, and padding at every length.
        let hex = |d: [u8; 20]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(hex(sha1(long)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
        let million = vec![b'a'; 1_000_000];
        assert_eq!(
            hex(sha1(&million)),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
        let b64: Vec<_> = ["", "f", "fo", "foo", "foob", "fooba", "foobar"]
            .iter()
            .map(|s| base64(s.as_bytes()))
            .collect();
        assert_eq!(
            b64,
            [
                "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"
            ]
        );
        let (key, accept) = new_key();
        assert_eq!(key.len(), 24);
        assert_eq!(accept, Accept::for_key(key.as_bytes()));
        assert_ne!(new_key().0, key, "a new key each time");
    }

    #[test]
    fn a_101_must_carry_the_one_right_answer() {
        let a = Accept::for_key(b"dGhlIHNhbXBsZSBub25jZQ==");
        let fields = |lines: &[(&str, &str)]| {
            let h: Vec<_> = lines
                .iter()
                .map(|(n, v)| httparse::Header {
                    name: n,
                    value: v.as_bytes(),
                })
                .collect();
            super::super::fields::collect(&h, true).unwrap().fields
        };
        let right = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        assert!(a.answered_in(&fields(&[("Sec-WebSocket-Accept", right)])));
        assert!(a.answered_in(&fields(&[("x-a", "1"), ("sec-websocket-accept", right)])));
        assert!(!a.answered_in(&fields(&[("x-a", "1")])));
        assert!(!a.answered_in(&fields(&[("Sec-WebSocket-Accept", "AAAA")])));
        assert!(!a.answered_in(&fields(&[
            ("Sec-WebSocket-Accept", right),
            ("Sec-WebSocket-Accept", right)
        ])));
    }
}
