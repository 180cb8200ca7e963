//! Which listener a connection, and each request on it, came in on.

/// A listener of the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// From the local app (sidecar) or any client (standalone): routed by authority.
    Outbound,
    /// To the local app: its latency is the container latency the planners use.
    Inbound,
}
