//! Proxy errors, tagged by where they came from and whether a retry on another endpoint is safe
//! (the shape of pingora's `ErrorSource` / `RetryType`). Each maps to one status and one
//! `loadshift-error` header value, so a client always learns why its request failed.

use std::net::SocketAddr;

use http::StatusCode;

/// Where an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorSource {
    /// The request itself (unknown service, malformed).
    Downstream,
    /// The upstream endpoint (connect, timeout, protocol).
    Upstream,
    /// The proxy's own policy (no endpoint, pool exhausted).
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no service routes authority {authority:?}")]
    NoRoute { authority: String },
    #[error("service {service:?} has no endpoint")]
    NoEndpoint { service: String },
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connecting to {addr}: timed out")]
    ConnectTimeout { addr: SocketAddr },
    #[error("{addr} sent no response headers in time")]
    Timeout { addr: SocketAddr },
    #[error("talking to {addr}: {source}")]
    Upstream {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("talking to {addr}: {source}")]
    UpstreamIo {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("every connection to {addr} is busy (pool cap reached)")]
    PoolExhausted { addr: SocketAddr },
}

impl ProxyError {
    pub fn source_kind(&self) -> ErrorSource {
        match self {
            Self::NoRoute { .. } => ErrorSource::Downstream,
            Self::NoEndpoint { .. } | Self::PoolExhausted { .. } => ErrorSource::Internal,
            Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::Timeout { .. }
            | Self::Upstream { .. }
            | Self::UpstreamIo { .. } => ErrorSource::Upstream,
        }
    }

    /// True when the request never reached the application, so sending it elsewhere is safe
    /// whatever its method.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::ConnectTimeout { .. } | Self::PoolExhausted { .. }
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::NoEndpoint { .. } | Self::PoolExhausted { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Connect { .. } | Self::Upstream { .. } | Self::UpstreamIo { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Self::ConnectTimeout { .. } | Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Value of the `loadshift-error` response header.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoRoute { .. } => "no-route",
            Self::NoEndpoint { .. } => "no-endpoint",
            Self::Connect { .. } => "connect",
            Self::ConnectTimeout { .. } => "connect-timeout",
            Self::Timeout { .. } => "timeout",
            Self::Upstream { .. } | Self::UpstreamIo { .. } => "upstream",
            Self::PoolExhausted { .. } => "pool-exhausted",
        }
    }
}
