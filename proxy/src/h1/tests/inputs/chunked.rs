//! Chunked bodies (RFC 9112 §7.1): sizes in either case and zero-padded, extensions, trailers.

use proptest::{collection::vec, prelude::*};

use super::{field_name, token, value};

/// One chunk: its data, its size as written (hex in either case, maybe zero-padded) and its
/// extensions.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub data: Vec<u8>,
    pub size: String,
    pub ext: String,
}

/// A chunked body (RFC 9112 §7.1).
#[derive(Clone, Debug)]
pub struct Chunked {
    pub chunks: Vec<Chunk>,
    /// `0`, `00`, ... and the last chunk's extensions.
    pub last: String,
    pub trailers: Vec<(String, String)>,
}

impl Chunked {
    pub fn data(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.data.clone()).collect()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for c in &self.chunks {
            out.extend_from_slice(c.size.as_bytes());
            out.extend_from_slice(c.ext.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&c.data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(self.last.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (n, v) in &self.trailers {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Chunk extensions (RFC 9112 §7.1.1): `;name`, `;name=token`, `;name="quoted"`, with optional
/// whitespace before each `;`.
fn extensions() -> impl Strategy<Value = String> {
    let ext = (
        prop::sample::select(&["", " ", "\t", "  "][..]),
        token(8),
        prop_oneof![
            Just(String::new()),
            token(8).prop_map(|v| format!("={v}")),
            "[ !#-\\[\\]-~]{0,10}".prop_map(|v| format!("=\"{v}\"")),
        ],
    )
        .prop_map(|(ws, n, v)| format!("{ws};{n}{v}"));
    vec(ext, 0..3).prop_map(|e| e.concat())
}

fn hex_size(len: usize, zeros: usize, upper: bool) -> String {
    let hex = if upper {
        format!("{len:X}")
    } else {
        format!("{len:x}")
    };
    format!("{}{hex}", "0".repeat(zeros))
}

pub fn chunked() -> impl Strategy<Value = Chunked> {
    let chunk = (
        vec(any::<u8>(), 1..48),
        0usize..3,
        any::<bool>(),
        extensions(),
    )
        .prop_map(|(data, zeros, upper, ext)| Chunk {
            size: hex_size(data.len(), zeros, upper),
            data,
            ext,
        });
    (
        vec(chunk, 0..5),
        1usize..4,
        extensions(),
        vec((field_name(), value()), 0..3),
    )
        .prop_map(|(chunks, zeros, ext, trailers)| Chunked {
            chunks,
            last: format!("{}{ext}", "0".repeat(zeros)),
            trailers,
        })
}
