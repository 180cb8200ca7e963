//! The HTTP/1.1 codec, sans-IO, for both sides of the proxy: how bodies are delimited
//! ([`framing`]), request heads parsed from clients and written to upstreams ([`request`]),
//! response heads parsed from upstreams and written to clients ([`response`]), the fields of an
//! upstream response kept as wire lines ([`fields`]), the chunked coding ([`chunked`]) and which
//! requests may switch protocols ([`upgrade`]). The connections that drive it are
//! [`crate::downstream`] (clients) and [`crate::upstream`].

pub mod chunked;
pub mod fields;
pub mod framing;
pub mod request;
pub mod response;
pub mod upgrade;

#[cfg(test)]
mod tests;
