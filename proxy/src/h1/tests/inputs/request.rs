//! Well-formed requests: method, target, version, fields in any order and case, a body framed
//! by length or by the chunked coding, and the fields and framing a parser must give back.

use proptest::{collection::vec, prelude::*, sample::Index};

use super::{Chunked, SECOND, cased, chunked, field_name, host, method, target, value};

/// How a generated request's body is framed.
#[derive(Clone, Debug)]
pub enum Body {
    None,
    /// `Content-Length`, the name in some case.
    Length {
        name: String,
        data: Vec<u8>,
    },
    /// `Transfer-Encoding` with `chunked` last.
    Chunked {
        name: String,
        coding: String,
        body: Chunked,
    },
}

/// A well-formed request: the fields a parser must give back, and its bytes.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub http10: bool,
    pub host: Option<String>,
    /// Fields besides Host, the framing field, `Connection` and `Expect`.
    pub fields: Vec<(String, String)>,
    pub connection: Option<String>,
    pub expect: bool,
    pub body: Body,
    /// Where Host and the framing field go among the other fields.
    pub host_at: Index,
    pub framing_at: Index,
    /// Whitespace after each colon and before each line end.
    pub ows: (String, String),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        1 => Just(Body::None),
        1 => (cased("content-length"), vec(any::<u8>(), 0..64))
            .prop_map(|(name, data)| Body::Length { name, data }),
        1 => (
            cased("transfer-encoding"),
            prop::sample::select(&["chunked", "Chunked", "CHUNKED", "gzip, chunked", "gzip,chunked"][..]),
            chunked(),
        )
            .prop_map(|(name, coding, body)| Body::Chunked { name, coding: coding.into(), body }),
    ]
}

pub fn request() -> impl Strategy<Value = Request> {
    let line = (
        method(),
        target(),
        prop::bool::weighted(0.15),
        host(),
        any::<bool>(),
    );
    let rest = (
        vec((field_name(), value()), 0..6),
        proptest::option::of(prop::sample::select(
            &[
                "close",
                "keep-alive",
                "Keep-Alive",
                "close, keep-alive",
                "keep-alive, close",
                "CLOSE",
                "upgrade",
                "x-hop, keep-alive",
            ][..],
        )),
        prop::bool::weighted(0.1),
        body(),
        any::<Index>(),
        any::<Index>(),
        (
            prop::sample::select(&["", " ", "\t", "  "][..]),
            prop::sample::select(&["", " ", "\t"][..]),
        ),
    );
    (line, rest).prop_map(
        |(
            (method, target, http10, host, omit_host_10),
            (fields, connection, expect, body, host_at, framing_at, (after, before)),
        )| {
            // A transfer coding in HTTP/1.0 is faulty framing (RFC 9112 §6.1).
            let http10 = http10 && !matches!(body, Body::Chunked { .. });
            Request {
                method,
                target,
                http10,
                // HTTP/1.1 needs Host (RFC 9112 §3.2); HTTP/1.0 may go without.
                host: (!(http10 && omit_host_10)).then_some(host),
                fields,
                connection: connection.map(str::to_string),
                expect,
                body,
                host_at,
                framing_at,
                ows: (after.into(), before.into()),
            }
        },
    )
}

impl Request {
    /// Every field line in order, Host and framing included.
    pub fn lines(&self) -> Vec<(String, String)> {
        let mut lines = self.fields.clone();
        if let Some(h) = &self.host {
            lines.insert(
                self.host_at.index(lines.len() + 1),
                ("Host".into(), h.clone()),
            );
        }
        let framing = match &self.body {
            Body::None => None,
            Body::Length { name, data } => Some((name.clone(), data.len().to_string())),
            Body::Chunked { name, coding, .. } => Some((name.clone(), coding.clone())),
        };
        if let Some(f) = framing {
            lines.insert(self.framing_at.index(lines.len() + 1), f);
        }
        if let Some(c) = &self.connection {
            lines.push(("Connection".into(), c.clone()));
        }
        if self.expect {
            lines.push(("Expect".into(), "100-continue".into()));
        }
        lines
    }

    pub fn head(&self) -> Vec<u8> {
        let version = if self.http10 { "1.0" } else { "1.1" };
        let mut out = format!("{} {} HTTP/{version}\r\n", self.method, self.target);
        let (after, before) = &self.ows;
        for (n, v) in self.lines() {
            out.push_str(&format!("{n}:{after}{v}{before}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// The body as sent.
    pub fn body_wire(&self) -> Vec<u8> {
        match &self.body {
            Body::None => Vec::new(),
            Body::Length { data, .. } => data.clone(),
            Body::Chunked { body, .. } => body.encode(),
        }
    }

    /// The body as delivered.
    pub fn data(&self) -> Vec<u8> {
        match &self.body {
            Body::None => Vec::new(),
            Body::Length { data, .. } => data.clone(),
            Body::Chunked { body, .. } => body.data(),
        }
    }

    /// Head, body and the [`SECOND`] request.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.head();
        out.extend_from_slice(&self.body_wire());
        out.extend_from_slice(SECOND);
        out
    }

    fn connection_tokens(&self) -> Vec<String> {
        self.connection
            .iter()
            .flat_map(|c| c.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect()
    }

    /// RFC 9112 §9.3: `close` ends the connection whatever else is listed; otherwise HTTP/1.1
    /// persists and HTTP/1.0 persists only when asked to.
    pub fn keep_alive(&self) -> bool {
        let tokens = self.connection_tokens();
        !tokens.iter().any(|t| t == "close")
            && (!self.http10 || tokens.iter().any(|t| t == "keep-alive"))
    }

    /// Fields other than the hop-by-hop ones, whose names `Connection` lists or `Expect:
    /// 100-continue` (RFC 9110 §7.6.1, §10.1.1): what the request is forwarded with.
    pub fn forwarded_fields(&self) -> Vec<(String, String)> {
        let listed = self.connection_tokens();
        self.lines()
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .filter(|(n, _)| {
                !matches!(
                    n.as_str(),
                    "transfer-encoding" | "connection" | "expect" | "upgrade"
                ) && !listed.contains(n)
            })
            .collect()
    }
}
