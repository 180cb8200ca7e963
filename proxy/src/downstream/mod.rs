//! The client-facing side: one task per accepted connection. HTTP/1.1 uses the proxy's own codec
//! ([`crate::h1`]); hyper's server connection keeps an 8 KiB read and an 8 KiB write buffer per
//! keep-alive connection for as long as it is open, while this one holds no buffer while a
//! connection is idle (like HAProxy and nginx): it waits for readability, reads into the worker's
//! scratch buffer, and copies only what is left after a complete head (a pipelined request, a
//! body's first bytes, or a partial head). Responses go out in one write when the body's first
//! chunk is already there. A connection that opens with the HTTP/2 preface is handed to hyper's
//! HTTP/2 server (h2c prior knowledge). A connection whose WebSocket upgrade the upstream accepts
//! becomes a byte tunnel ([`tunnel`]); so does an HTTP/2 stream that opens a WebSocket with an
//! extended CONNECT ([`connect`], RFC 8441).

mod conn;
mod connect;
mod io;
mod probation;
mod tunnel;

pub use conn::{Limits, serve};
pub use probation::{MIN_AGE, Probation};
