//! The parts of gRPC over HTTP/2 the proxy reads and writes itself (the "gRPC over HTTP2"
//! protocol document, `doc/PROTOCOL-HTTP2.md` in grpc/grpc): which requests are gRPC calls, the
//! `grpc-timeout` deadline they carry, and the status fields of a response the proxy answers on
//! its own (a trailers-only response: one HEADERS frame that ends the stream).
//!
//! Sans-IO: header values in, header values out.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, header};

pub const TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
pub const STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub const MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// How long a client should wait before retrying (gRFC A6, "Pushback").
pub const RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// Most digits of a `grpc-timeout` value (`TimeoutValue`, "at most 8 digits").
const MAX_TIMEOUT_DIGITS: usize = 8;

/// The status codes the proxy answers with (`grpc/status.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Cancelled = 1,
    DeadlineExceeded = 4,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
}

impl Code {
    /// The `grpc-status` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "1",
            Self::DeadlineExceeded => "4",
            Self::ResourceExhausted => "8",
            Self::Unimplemented => "12",
            Self::Internal => "13",
            Self::Unavailable => "14",
        }
    }
}

/// True for a gRPC request: `content-type` `application/grpc`, alone or with a suffix
/// (`+proto`, `+json`, `-web`, parameters).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 16 && v[..16].eq_ignore_ascii_case(b"application/grpc")
    })
}

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits, then the unit, one of `H` `M` `S`
/// (hours, minutes, seconds), `m` `u` `n` (milli-, micro-, nanoseconds). `None` for anything
/// else. Zero is accepted, as gRPC's own servers do: the deadline has passed on arrival.
pub fn parse_timeout(v: &[u8]) -> Option<Duration> {
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty()
        || digits.len() > MAX_TIMEOUT_DIGITS
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    // At most 8 digits: no overflow, even in hours.
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A `grpc-timeout` value for `d`: the finest unit from milliseconds up that keeps it within
/// 8 digits, rounded up so the upstream never sees a shorter deadline than the one enforced.
pub fn encode_timeout(d: Duration) -> HeaderValue {
    let ms = d.as_nanos().div_ceil(1_000_000);
    let limit = 10u128.pow(MAX_TIMEOUT_DIGITS as u32);
    let (n, unit) = [(1, 'm'), (1000, 'S'), (60_000, 'M'), (3_600_000, 'H')]
        .into_iter()
        .map(|(per, unit)| (ms.div_ceil(per), unit))
        .find(|&(n, _)| n < limit)
        .unwrap_or((limit - 1, 'H'));
    // Digits and an ASCII letter: always a valid header value.
    HeaderValue::try_from(format!("{n}{unit}")).unwrap_or(HeaderValue::from_static("99999999H"))
}

/// Sets `grpc-status` and, when there is one, `grpc-message` (percent-encoded) in `headers`.
pub fn set_status(headers: &mut HeaderMap, code: Code, message: &str) {
    headers.insert(STATUS, HeaderValue::from_static(code.as_str()));
    if !message.is_empty() {
        // Percent-encoding leaves only visible ASCII and spaces: always a valid header value.
        if let Ok(v) = HeaderValue::try_from(percent_encode(message)) {
            headers.insert(MESSAGE, v);
        }
    }
}

/// `grpc-message` encoding: bytes outside visible ASCII and space, and `%` itself, become
/// `%XX` of their UTF-8 bytes (`Percent-Byte-Unencoded = %x20-%x24 / %x26-%x7E`).
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn percent_decode(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn timeouts_parse_per_unit_and_malformed_ones_are_refused() {
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout(b"30S"), Some(Duration::from_secs(30)));
        assert_eq!(parse_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout(b"7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        assert_eq!(parse_timeout(b"0m"), Some(Duration::ZERO));
        for bad in [
            &b""[..],
            b"m",
            b"10",
            b"10s",
            b"10ms",
            b"-1S",
            b"+1S",
            b" 1S",
            b"1S ",
            b"1.5S",
            b"123456789m",
            b"\xff1S",
        ] {
            assert_eq!(
                parse_timeout(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn messages_are_percent_encoded_per_the_spec() {
        assert_eq!(percent_encode("no route"), "no route");
        assert_eq!(percent_encode("50% done"), "50%25 done");
        assert_eq!(percent_encode("a\r\nb"), "a%0D%0Ab");
        assert_eq!(percent_encode("café"), "caf%C3%A9");
        let mut h = HeaderMap::new();
        set_status(&mut h, Code::Unavailable, "service \"web\" has no endpoint");
        assert_eq!(h[&STATUS], "14");
        assert_eq!(h[&MESSAGE], "service \"web\" has no endpoint");
    }

    proptest! {
        #[test]
        fn any_timeout_value_parses_without_panicking_and_well_formed_ones_round_trip(
            raw in proptest::collection::vec(any::<u8>(), 0..12),
            n in 0u64..100_000_000,
            unit in proptest::sample::select(vec!['H', 'M', 'S', 'm', 'u', 'n']),
        ) {
            let _ = parse_timeout(&raw);
            let per = match unit {
                'H' => Duration::from_secs(3600),
                'M' => Duration::from_secs(60),
                'S' => Duration::from_secs(1),
                'm' => Duration::from_millis(1),
                'u' => Duration::from_micros(1),
                _ => Duration::from_nanos(1),
            };
            let d = parse_timeout(format!("{n}{unit}").as_bytes());
            prop_assert_eq!(d, Some(per * u32::try_from(n).unwrap()));
            // What the proxy forwards parses back to at least what it enforces, and not more
            // than a unit's rounding above it.
            let d = d.unwrap();
            let sent = encode_timeout(d);
            let back = parse_timeout(sent.as_bytes()).unwrap();
            prop_assert!(back >= d, "{:?} -> {:?} -> {:?}", d, sent, back);
            prop_assert!(back - d <= Duration::from_secs(3600), "{:?} -> {:?}", d, sent);
        }

        #[test]
        fn any_message_encodes_to_a_header_value_that_decodes_back(s in any::<String>()) {
            let e = percent_encode(&s);
            prop_assert!(HeaderValue::try_from(e.as_str()).is_ok());
            prop_assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(percent_decode(&e), s.as_bytes());
        }
    }
}
