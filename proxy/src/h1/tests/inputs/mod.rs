//! Generators: well-formed requests (head, body, and a second request pipelined behind them),
//! chunked bodies, upstream response heads, and the mutations request-smuggling research applies
//! to requests (stray CR/LF/NUL/space, obs-fold, repeated or conflicting framing fields).

mod chunked;
mod mutation;
mod request;
mod response;

pub use chunked::{Chunked, chunked};
pub use mutation::mutated;
pub use request::{Body, Request, request};
pub use response::response;

use proptest::{collection::vec, prelude::*};

/// Field names the generators never pick at random: the ones the codec reads or drops, and the
/// `_` spellings that imitate them.
const SPECIAL: [&str; 11] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "expect",
];

/// Pipelined behind every generated request: whether a reader gets to it shows whether the
/// connection persisted and where it thought the first request ended.
pub const SECOND: &[u8] = b"GET /second HTTP/1.1\r\nHost: second\r\n\r\n";

fn is_special(name: &str) -> bool {
    SPECIAL.contains(&name.to_ascii_lowercase().replace('_', "-").as_str())
}

/// A token (RFC 9110 §5.6.2) of up to `max` characters, in any case.
pub fn token(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[-!#$%&'*+.^_`|~0-9A-Za-z]{{1,{max}}}"))
        .expect("token regex")
}

/// A field value: visible ASCII with spaces and tabs inside, none at either end (a parser trims
/// them, RFC 9112 §5.1).
fn value() -> impl Strategy<Value = String> {
    proptest::string::string_regex("([!-~]([ \t!-~]{0,24}[!-~])?)?").expect("value regex")
}

fn field_name() -> impl Strategy<Value = String> {
    token(16).prop_filter("names the codec treats specially", |n| !is_special(n))
}

/// `name` with the letters whose `flip` bit is set in upper case.
fn with_case(name: &str, flip: &[bool]) -> String {
    name.chars()
        .zip(flip.iter().chain(std::iter::repeat(&false)))
        .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
        .collect()
}

fn cased(name: &'static str) -> impl Strategy<Value = String> {
    vec(any::<bool>(), name.len()).prop_map(move |flip| with_case(name, &flip))
}

/// `name[.label][:port]`, lower case, valid as a Host and as an authority.
fn host() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9-]{0,10}(\\.[a-z0-9]{1,6}){0,2}",
        proptest::option::of(1u16..),
    )
        .prop_map(|(h, port)| match port {
            Some(p) => format!("{h}:{p}"),
            None => h,
        })
}

fn path() -> impl Strategy<Value = String> {
    "(/[-._~!$&'()*+,;=:@A-Za-z0-9]{0,8}){1,4}(\\?[-._~!$&'()*+,;=:@A-Za-z0-9/?]{0,12})?"
}

/// Origin form mostly, absolute form sometimes (RFC 9112 §3.2).
fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => path(),
        1 => (host(), path()).prop_map(|(h, p)| format!("http://{h}{p}")),
    ]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"][..])
            .prop_map(str::to_string),
        // Any token is a method; CONNECT opens a tunnel and is answered before routing.
        1 => "[A-Z]{1,10}".prop_filter("CONNECT is a tunnel", |m| m != "CONNECT"),
    ]
}
