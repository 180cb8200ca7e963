//! The client-facing side: one task per accepted connection. HTTP/1.1 uses the proxy's own codec
//! ([`crate::h1`]); hyper's server connection keeps an 8 KiB read and an 8 KiB write buffer per
//! keep-alive connection for as long as it is open, while this one holds no buffer while a
//! connection is idle (like HAProxy and nginx): it waits for readability, reads into the worker's
//! scratch buffer, and copies only what is left after a complete head (a pipelined request, a
//! body's first bytes, or a partial head). Responses go out in one write when the body's first
//! chunk is already there. A connection that opens with the HTTP/2 preface is handed to hyper's
//! HTTP/2 server (h2c prior knowledge). A connection whose WebSocket upgrade the upstream accepts
//! becomes a byte tunnel ([`tunnel`]); so does an HTTP/2 stream that opens a WebSocket with an
//! extended CONNECT ([`connect`], RFC 8441). A TLS listener's connections come in through
//! [`serve_tls`], which runs the handshake and then serves them the same way.

mod conn;
mod connect;
mod io;
mod probation;
mod tls;
mod tunnel;

pub use conn::{Limits, Peer, serve};
pub use probation::{MIN_AGE, Probation};
pub use tls::serve_tls;
