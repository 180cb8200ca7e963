//! How HTTP/1.1 bodies are delimited (RFC 9112 §6), for both directions and both sides: one
//! [`Framing`], the length rules, and the field lines that announce a framing. The request and
//! response codecs ([`super::request`], [`super::response`]) and the chunked coding
//! ([`super::chunked`]) build on it.

use http::Method;

/// How a body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: a request without length fields, a response to HEAD, 1xx, 204 or 304.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// A response of unknown length to an HTTP/1.0 peer, or an upstream response without length
    /// fields: the body ends when the connection closes. Never a request's.
    UntilClose,
}

/// Transfer codings a request's body carries under its chunked coding (`Transfer-Encoding:
/// gzip, chunked` keeps `gzip` here), a request extension: an HTTP/1.1 upstream gets them back in
/// front of `chunked`; HTTP/2 has no transfer codings, so such a request cannot go to an HTTP/2
/// upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferCodings(pub http::HeaderValue);

/// A `content-length` value: ASCII digits only (no sign, no list), surrounding spaces allowed.
pub fn parse_length(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Methods whose requests carry a body by convention, so an empty one is announced as
/// `content-length: 0`.
pub fn method_has_body(m: &Method) -> bool {
    *m == Method::POST || *m == Method::PUT || *m == Method::PATCH
}

/// Appends one `name: value` line.
pub fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a `content-length` line.
pub fn push_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal without allocating.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_written_without_allocating() {
        for n in [0u64, 7, 10, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn lengths_are_digits_only() {
        assert_eq!(parse_length(b" 12 "), Some(12));
        for bad in [
            &b""[..],
            b"-1",
            b"1,2",
            b"0x10",
            b"+3",
            b"99999999999999999999999",
        ] {
            assert_eq!(
                parse_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
