//! Upstream response heads: status, version, lengths (repeated, maybe conflicting), codings,
//! `Connection`, other fields.

use proptest::{collection::vec, prelude::*};

use super::{field_name, value};

/// An upstream's response head: status, version, framing fields and others.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub http10: bool,
    pub lengths: Vec<u64>,
    pub coding: Option<&'static str>,
    pub connection: Option<&'static str>,
    pub fields: Vec<(String, String)>,
}

pub fn response() -> impl Strategy<Value = Response> {
    (
        prop_oneof![
            prop::sample::select(&[100u16, 103, 200, 201, 204, 206, 301, 304, 404, 500, 503][..]),
            200u16..600,
        ],
        prop::bool::weighted(0.2),
        prop_oneof![
            2 => Just(Vec::new()),
            2 => (0u64..100_000).prop_map(|n| vec![n]),
            1 => (0u64..100).prop_map(|n| vec![n, n]),
        ],
        proptest::option::of(prop::sample::select(
            &["chunked", "gzip, chunked", "gzip", "chunked, gzip"][..],
        )),
        proptest::option::of(prop::sample::select(
            &[
                "close",
                "keep-alive",
                "close, keep-alive",
                "keep-alive, close",
                "x-a",
            ][..],
        )),
        vec((field_name(), value()), 0..4),
    )
        .prop_map(
            |(status, http10, lengths, coding, connection, fields)| Response {
                status,
                http10,
                lengths,
                coding,
                connection,
                fields,
            },
        )
}

impl Response {
    pub fn bytes(&self) -> Vec<u8> {
        let version = if self.http10 { "1.0" } else { "1.1" };
        let mut out = format!("HTTP/{version} {} Whatever\r\n", self.status);
        for (n, v) in &self.fields {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        for n in &self.lengths {
            out.push_str(&format!("Content-Length: {n}\r\n"));
        }
        if let Some(c) = self.coding {
            out.push_str(&format!("Transfer-Encoding: {c}\r\n"));
        }
        if let Some(c) = self.connection {
            out.push_str(&format!("Connection: {c}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    fn tokens(&self) -> Vec<String> {
        self.connection
            .iter()
            .flat_map(|c| c.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect()
    }

    /// RFC 9112 §9.3 and §6.1: `close` wins; HTTP/1.0 persists only when asked and never after
    /// a transfer coding (its framing is faulty).
    pub fn keep_alive(&self) -> bool {
        let t = self.tokens();
        !t.iter().any(|t| t == "close")
            && (!self.http10 || (t.iter().any(|t| t == "keep-alive") && self.coding.is_none()))
    }
}
