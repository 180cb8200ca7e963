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

use http::{HeaderValue, Method, Version};

use super::framing::{Framing, push_field};

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
}
