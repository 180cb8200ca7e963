//! WebSocket over HTTP/2 (RFC 8441). An HTTP/2 client's extended CONNECT with `:protocol =
//! websocket` is routed like any request and reaches the upstream as the HTTP/1.1 upgrade it
//! stands for (RFC 8441 §5 maps one onto the other): `GET` on the same target with `Connection:
//! Upgrade` and `Upgrade: websocket`, a `Sec-WebSocket-Key` the proxy makes up (an HTTP/2
//! client sends none), and the client's other fields. The upstream's `101`, its
//! `Sec-WebSocket-Accept` checked against that key (`crate::h1::upgrade`), becomes the client's
//! `200`, and the stream a byte tunnel to the upstream socket ([`super::tunnel`]). Any other
//! answer reaches the client as it is, except a `2xx` or `1xx`, which the client would read as
//! an open tunnel: that is a `502`.
//!
//! A plain CONNECT is the request path's to refuse (501), a `:protocol` other than `websocket`
//! this module's (501). Towards a service of `protocol: http2` the WebSocket is refused (501) as
//! an HTTP/1.1 client's upgrade is: the proxy does not send extended CONNECT upstream.

use std::{rc::Rc, time::Duration};

use http::{
    HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header, request::Parts,
};
use hyper::{ext::Protocol, upgrade::OnUpgrade};
use hyper_util::rt::TokioIo;

use super::tunnel;
use crate::{
    deadline::Deadlines,
    h1::upgrade::{self, Upgrade},
    request::{RespBody, Worker, handle},
    side::Side,
    upstream::{Upgraded, body::ReqBody},
};

/// The upgrade token RFC 8441 §5 names as `:protocol` (RFC 6455 §4.1: case-insensitive).
const WEBSOCKET: &str = "websocket";

const ERROR_HEADER: HeaderName = HeaderName::from_static("loadshift-error");

/// What an HTTP/2 request asks for, if it is a CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Connect {
    /// A plain CONNECT (a TCP tunnel to its authority), refused by the request path.
    Plain,
    /// An extended CONNECT for WebSocket.
    WebSocket,
    /// An extended CONNECT for another protocol.
    Other,
}

impl Connect {
    pub(super) fn of<B>(req: &Request<B>) -> Option<Self> {
        if req.method() != Method::CONNECT {
            return None;
        }
        Some(match req.extensions().get::<Protocol>() {
            None => Self::Plain,
            Some(p) if p.as_str().eq_ignore_ascii_case(WEBSOCKET) => Self::WebSocket,
            Some(_) => Self::Other,
        })
    }
}

/// An HTTP/2 stream whose upstream switched to WebSocket: run once the client has its `200`.
pub(super) struct Tunnel {
    client: OnUpgrade,
    upstream: Upgraded,
}

impl Tunnel {
    /// Copies bytes between the client's stream and the upstream socket until the tunnel ends
    /// ([`tunnel::splice`]); nothing when the stream went away before its `200` was sent.
    pub(super) async fn run(self, deadlines: &Rc<Deadlines>, idle: Duration) {
        let client = match self.client.await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "HTTP/2 WebSocket stream gone before its tunnel");
                return;
            }
        };
        let early = tunnel::Early {
            from_client: &[],
            from_upstream: &self.upstream.early,
        };
        let mut timer = deadlines.timer();
        let mut client = TokioIo::new(client);
        tunnel::splice(&mut client, self.upstream.stream, early, idle, &mut timer).await;
    }
}

/// Serves an extended CONNECT for WebSocket: the answer for the client, and the tunnel when the
/// upstream switched.
pub(super) async fn websocket(
    w: Rc<Worker>,
    side: Side,
    mut req: Request<ReqBody>,
) -> (Response<RespBody>, Option<Tunnel>) {
    let client = hyper::upgrade::on(&mut req);
    // hyper's server gives a CONNECT no body (one that announces a length is reset).
    let (mut parts, _) = req.into_parts();
    to_upgrade(&mut parts);
    let Ok(resp) = handle(w, side, Request::from_parts(parts, ReqBody::Empty)).await;
    answer(resp, client)
}

/// Turns an extended CONNECT into the HTTP/1.1 upgrade it stands for. `Host` and the
/// origin-form target come from `:authority` and `:path` when it is written, as for any
/// request; `Connection` and `Upgrade` from the [`Upgrade`] extension.
fn to_upgrade(parts: &mut Parts) {
    parts.method = Method::GET;
    // `protocol: auto` sends an HTTP/1.1 request as HTTP/1.1; `protocol: http2` refuses an
    // upgrade (501).
    parts.version = Version::HTTP_11;
    parts.extensions.remove::<Protocol>();
    parts
        .extensions
        .insert(Upgrade(HeaderValue::from_static(WEBSOCKET)));
    let h = &mut parts.headers;
    // A bodiless GET announces no length; the key is the proxy's, since it checks the answer.
    h.remove(header::CONTENT_LENGTH);
    let (key, accept) = upgrade::new_key();
    h.remove(header::SEC_WEBSOCKET_KEY);
    if let Ok(key) = HeaderValue::from_str(&key) {
        h.insert(header::SEC_WEBSOCKET_KEY, key);
    }
    parts.extensions.insert(accept);
}

/// The client's answer to the upstream's: a `101` becomes `200` with the `101`'s end-to-end
/// fields (`Sec-WebSocket-Protocol`, `-Extensions`, others) but its `Sec-WebSocket-Accept`,
/// which answers the proxy's key.
fn answer(mut resp: Response<RespBody>, client: OnUpgrade) -> (Response<RespBody>, Option<Tunnel>) {
    let switched = match resp.body_mut() {
        RespBody::H1(b) => b.take_upgraded().map(|up| (up, b.take_fields())),
        _ => None,
    };
    if let Some((upstream, raw)) = switched {
        let mut ok = Response::new(RespBody::Local(None));
        if let Some(raw) = raw {
            *ok.headers_mut() = raw.to_header_map();
        }
        let h = ok.headers_mut();
        h.remove(header::SEC_WEBSOCKET_ACCEPT);
        // hyper resets a 2xx to a CONNECT that announces a body.
        h.remove(header::CONTENT_LENGTH);
        return (ok, Some(Tunnel { client, upstream }));
    }
    let status = resp.status();
    if status.is_success() || status.is_informational() {
        tracing::debug!(%status, "upstream answered a WebSocket upgrade without switching");
        let resp = reply(
            StatusCode::BAD_GATEWAY,
            "upstream",
            "the upstream did not switch to WebSocket",
        );
        return (resp, None);
    }
    (resp, None)
}

/// A refusal of a WebSocket that would take one descriptor too many: the connection's first
/// tunnel has the upstream socket every client connection is budgeted, each other one needs a
/// connection slot of its own (`limits.max_connections`, `max_connections_per_source`).
pub(super) fn no_room(retry_after_s: u32) -> Response<RespBody> {
    let mut resp = reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "no connection slot left for another WebSocket on this connection; retry later",
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    resp
}

/// The proxy's own plain answer, as `crate::reply` writes them.
fn reply(status: StatusCode, code: &'static str, msg: &str) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::local(format!("{msg}\n")));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(ERROR_HEADER, HeaderValue::from_static(code));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extended_connect_becomes_a_get_that_asks_to_switch() {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("http://web/chat?room=1")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-protocol", "chat")
            .header("sec-websocket-key", "chosen-by-the-client")
            .header("content-length", "0")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(Protocol::from_static("websocket"));
        assert_eq!(Connect::of(&req), Some(Connect::WebSocket));
        let (mut parts, ()) = req.into_parts();
        to_upgrade(&mut parts);
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.version, Version::HTTP_11);
        assert_eq!(parts.uri, "http://web/chat?room=1");
        assert!(parts.extensions.get::<Protocol>().is_none());
        assert_eq!(
            parts.extensions.get::<Upgrade>(),
            Some(&Upgrade(HeaderValue::from_static("websocket")))
        );
        let key = parts.headers["sec-websocket-key"].as_bytes();
        assert_ne!(key, b"chosen-by-the-client");
        assert_eq!(
            parts.extensions.get::<upgrade::Accept>(),
            Some(&upgrade::Accept::for_key(key))
        );
        assert_eq!(parts.headers["sec-websocket-version"], "13");
        assert_eq!(parts.headers["sec-websocket-protocol"], "chat");
        assert!(parts.headers.get("content-length").is_none());
    }

    #[test]
    fn connects_are_told_apart_by_their_protocol() {
        let connect = |p: Option<&'static str>| {
            let mut req = Request::builder()
                .method(Method::CONNECT)
                .uri("http://web/")
                .body(())
                .unwrap();
            if let Some(p) = p {
                req.extensions_mut().insert(Protocol::from_static(p));
            }
            Connect::of(&req)
        };
        assert_eq!(connect(None), Some(Connect::Plain));
        assert_eq!(connect(Some("WebSocket")), Some(Connect::WebSocket));
        assert_eq!(connect(Some("connect-udp")), Some(Connect::Other));
        let get = Request::get("http://web/").body(()).unwrap();
        assert_eq!(Connect::of(&get), None);
    }

    #[test]
    fn an_answer_that_did_not_switch_is_never_a_success() {
        for status in [
            StatusCode::OK,
            StatusCode::NO_CONTENT,
            StatusCode::SWITCHING_PROTOCOLS,
        ] {
            let mut resp = Response::new(RespBody::Local(None));
            *resp.status_mut() = status;
            // No upgrade behind it: the answer alone is looked at.
            let client = hyper::upgrade::on(Request::new(()));
            let (got, tunnel) = answer(resp, client);
            assert_eq!(got.status(), StatusCode::BAD_GATEWAY, "{status}");
            assert_eq!(got.headers()["loadshift-error"], "upstream");
            assert!(tunnel.is_none());
        }
    }
}
