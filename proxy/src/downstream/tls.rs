//! A client connection over TLS: the handshake, then the connection as any other
//! ([`super::serve`]) with each request marked [`crate::forwarding::Secure`]. The handshake
//! spends from the first request's head-read limit, so a client that never finishes it is cut
//! off like one that never sends a head (counted as a header timeout); a drain or an eviction
//! ends it too.
//! ALPN's choice needs no branch here: an `h2` client opens with the HTTP/2 preface, which the
//! connection recognises as it does in plaintext.

use std::{net::IpAddr, rc::Rc, sync::Arc};

use tokio::{net::TcpStream, sync::watch, time::Instant};

use super::{
    conn::{Limits, Peer, serve},
    io::TlsConn,
    probation::Ticket,
};
use crate::{
    admission::ClientTimeout, request::ClientAddr, request::Worker, side::Side, tls::ServerTls,
};

/// Serves one accepted connection on a TLS listener.
// The connection's parts, each used on its own; a struct would only be taken apart again.
#[allow(clippy::too_many_arguments)]
pub async fn serve_tls(
    tcp: TcpStream,
    client: IpAddr,
    tls: Arc<ServerTls>,
    side: Side,
    w: Rc<Worker>,
    limits: Limits,
    ticket: Ticket,
    mut shutdown: watch::Receiver<bool>,
) {
    let first_by = Instant::now() + limits.header_read;
    let mut timer = w.deadlines.timer();
    let done = tokio::select! {
        r = timer.bound(Some(first_by), tls.accept(tcp)) => r,
        _ = shutdown.wait_for(|&s| s) => return,
        () = ticket.evicted() => return,
    };
    drop(timer);
    let stream = match done {
        None => {
            w.shared.admission.timed_out(ClientTimeout::Header);
            return;
        }
        Some(Err(e)) => {
            tracing::debug!(%client, error = %e, "TLS handshake failed");
            return;
        }
        Some(Ok(s)) => s,
    };
    let peer = Peer {
        addr: ClientAddr(client),
        tls: Some(tls.secure(stream.get_ref().1)),
    };
    let conn = TlsConn::new(stream);
    serve(conn, peer, first_by, side, w, limits, ticket, shutdown).await;
}
