//! Proxy errors, tagged by where they came from and whether a retry on another endpoint is safe
//! (the shape of pingora's `ErrorSource` / `RetryType`). Each maps to one HTTP status, one
//! `grpc-status` (for gRPC calls) and one `loadshift-error` header value, so a client always
//! learns why its request failed; what it reads never names an upstream address (the log
//! does). Only [`ErrorSource::Upstream`] errors are charged to an endpoint: they alone feed
//! ejection, Peak-EWMA, the error counters and the reports, so a client that sends garbage,
//! stalls or sets itself a short deadline cannot get healthy endpoints ejected.

use std::{error::Error, net::SocketAddr, time::Duration};

use http::StatusCode;

use crate::grpc::Code;

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

/// Why a request body could not be read from the client: the request's fault, never the
/// upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientBodyError {
    #[error("malformed request body: {0}")]
    Malformed(String),
    #[error("client closed the connection before the request body was complete")]
    Closed,
    #[error("request body made no progress for {0:?}")]
    Stalled(Duration),
    #[error("client aborted the request body: {0}")]
    Aborted(String),
}

/// The client-side cause somewhere in an error's chain (an upstream client library wraps the
/// body error it got).
pub fn client_fault<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a ClientBodyError> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(c) = err.downcast_ref::<ClientBodyError>() {
            return Some(c);
        }
        cur = err.source();
    }
    None
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no service routes authority {authority:?}")]
    NoRoute { authority: String },
    /// The request cannot be forwarded as sent (its target, its framing fields).
    #[error("{reason}")]
    BadRequest { reason: String },
    /// A method or coding the proxy does not forward.
    #[error("{what} is not supported")]
    NotImplemented { what: &'static str },
    /// The client's request body failed: malformed, cut short, or stalled.
    #[error("{source}")]
    ClientBody { source: ClientBodyError },
    /// The proxy's cap on a gRPC call (`timeouts.grpc_max_ms`) passed while the client was
    /// still sending its body.
    #[error("request body not received before the call's deadline")]
    ClientBodyTimeout,
    /// The deadline the client gave its gRPC call (`grpc-timeout`) passed. The client chose it,
    /// so it says nothing about the endpoint.
    #[error("the call's deadline passed")]
    DeadlineExceeded,
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
    /// The upstream took none of a request body the client was sending.
    #[error("{addr} took none of the request body for {limit:?}")]
    UploadStalled { addr: SocketAddr, limit: Duration },
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
            Self::NoRoute { .. }
            | Self::BadRequest { .. }
            | Self::NotImplemented { .. }
            | Self::ClientBody { .. }
            | Self::ClientBodyTimeout
            | Self::DeadlineExceeded => ErrorSource::Downstream,
            Self::NoEndpoint { .. } | Self::PoolExhausted { .. } => ErrorSource::Internal,
            Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::Timeout { .. }
            | Self::UploadStalled { .. }
            | Self::Upstream { .. }
            | Self::UpstreamIo { .. } => ErrorSource::Upstream,
        }
    }

    /// A client too slow with its body.
    pub fn is_client_timeout(&self) -> bool {
        matches!(
            self,
            Self::ClientBodyTimeout
                | Self::ClientBody {
                    source: ClientBodyError::Stalled(_)
                }
        )
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
            Self::ClientBody {
                source: ClientBodyError::Stalled(_),
            } => StatusCode::REQUEST_TIMEOUT,
            Self::BadRequest { .. } | Self::ClientBody { .. } => StatusCode::BAD_REQUEST,
            Self::NotImplemented { .. } => StatusCode::NOT_IMPLEMENTED,
            Self::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::NoEndpoint { .. } | Self::PoolExhausted { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Connect { .. } | Self::Upstream { .. } | Self::UpstreamIo { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Self::ConnectTimeout { .. }
            | Self::Timeout { .. }
            | Self::UploadStalled { .. }
            | Self::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `grpc-status` a gRPC client gets. Every time limit is DEADLINE_EXCEEDED, never the
    /// retryable UNAVAILABLE, since the call may have reached the application; UNAVAILABLE is
    /// kept for what a retry elsewhere may cure (no endpoint, connect failures, a broken
    /// upstream connection), as gRPC's own clients report them.
    pub fn grpc_status(&self) -> Code {
        match self {
            Self::NoRoute { .. } | Self::NotImplemented { .. } => Code::Unimplemented,
            Self::BadRequest { .. }
            | Self::ClientBody {
                source: ClientBodyError::Malformed(_),
            } => Code::Internal,
            Self::ClientBody {
                source: ClientBodyError::Stalled(_),
            }
            | Self::ClientBodyTimeout
            | Self::DeadlineExceeded
            | Self::Timeout { .. }
            | Self::UploadStalled { .. } => Code::DeadlineExceeded,
            Self::ClientBody { .. } => Code::Cancelled,
            Self::NoEndpoint { .. }
            | Self::PoolExhausted { .. }
            | Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::Upstream { .. }
            | Self::UpstreamIo { .. } => Code::Unavailable,
        }
    }

    /// Value of the `loadshift-error` response header.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoRoute { .. } => "no-route",
            Self::BadRequest { .. } => "bad-request",
            Self::NotImplemented { .. } => "not-implemented",
            Self::ClientBody { .. } => "bad-request-body",
            Self::ClientBodyTimeout => "body-timeout",
            Self::DeadlineExceeded => "deadline-exceeded",
            Self::NoEndpoint { .. } => "no-endpoint",
            Self::Connect { .. } => "connect",
            Self::ConnectTimeout { .. } => "connect-timeout",
            Self::Timeout { .. } => "timeout",
            Self::UploadStalled { .. } => "upload-stalled",
            Self::Upstream { .. } | Self::UpstreamIo { .. } => "upstream",
            Self::PoolExhausted { .. } => "pool-exhausted",
        }
    }

    /// What the client reads: the reason for its own faults, a fixed phrase for the proxy's and
    /// the upstream's (their addresses and causes go to the log only).
    pub fn client_message(&self) -> String {
        match self.source_kind() {
            ErrorSource::Downstream => self.to_string(),
            ErrorSource::Internal | ErrorSource::Upstream => match self {
                Self::NoEndpoint { service } => format!("service {service:?} has no endpoint"),
                Self::PoolExhausted { .. } => "every upstream connection is busy".into(),
                Self::Connect { .. } => "could not connect to the upstream".into(),
                Self::ConnectTimeout { .. } => "connecting to the upstream timed out".into(),
                Self::Timeout { .. } => "the upstream sent no response in time".into(),
                Self::UploadStalled { .. } => "the upstream stopped taking the request body".into(),
                _ => "the upstream connection failed".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_faults_are_downstream_and_messages_hide_addresses() {
        let addr: SocketAddr = "10.1.2.3:8080".parse().unwrap();
        let io = || std::io::Error::other("reset by peer");
        let upstream = [
            ProxyError::Connect { addr, source: io() },
            ProxyError::ConnectTimeout { addr },
            ProxyError::Timeout { addr },
            ProxyError::UploadStalled {
                addr,
                limit: Duration::from_secs(1),
            },
            ProxyError::UpstreamIo { addr, source: io() },
            ProxyError::PoolExhausted { addr },
        ];
        for e in &upstream {
            assert!(e.to_string().contains("10.1.2.3"), "the log names it: {e}");
            assert!(
                !e.client_message().contains("10.1.2.3"),
                "{}",
                e.client_message()
            );
        }
        let client = [
            ProxyError::ClientBodyTimeout,
            ProxyError::ClientBody {
                source: crate::upstream::body::ClientBodyError::Closed,
            },
            ProxyError::BadRequest {
                reason: "two Host fields".into(),
            },
        ];
        for e in &client {
            assert_eq!(e.source_kind(), ErrorSource::Downstream, "{e}");
            assert!(e.status().is_client_error(), "{e}");
            assert!(!e.retryable());
        }
        assert_eq!(
            ProxyError::ClientBodyTimeout.status(),
            StatusCode::REQUEST_TIMEOUT
        );
    }

    #[test]
    fn time_limits_are_deadline_exceeded_and_only_what_a_retry_may_cure_is_unavailable() {
        let addr: SocketAddr = "10.1.2.3:8080".parse().unwrap();
        let timed_out = [
            ProxyError::Timeout { addr },
            ProxyError::UploadStalled {
                addr,
                limit: Duration::from_secs(1),
            },
            ProxyError::DeadlineExceeded,
            ProxyError::ClientBodyTimeout,
            ProxyError::ClientBody {
                source: ClientBodyError::Stalled(Duration::from_secs(1)),
            },
        ];
        for e in &timed_out {
            assert_eq!(e.grpc_status(), Code::DeadlineExceeded, "{e}");
            assert!(!e.retryable(), "{e}");
        }
        let unavailable = [
            ProxyError::NoEndpoint {
                service: "web".into(),
            },
            ProxyError::Connect {
                addr,
                source: std::io::Error::other("refused"),
            },
            ProxyError::ConnectTimeout { addr },
            ProxyError::UpstreamIo {
                addr,
                source: std::io::Error::other("reset"),
            },
        ];
        for e in &unavailable {
            assert_eq!(e.grpc_status(), Code::Unavailable, "{e}");
        }
        let no_route = ProxyError::NoRoute {
            authority: "x".into(),
        };
        assert_eq!(no_route.grpc_status(), Code::Unimplemented);
        let bad = ProxyError::BadRequest {
            reason: "malformed grpc-timeout".into(),
        };
        assert_eq!(bad.grpc_status(), Code::Internal);
        // The client's own deadline is never charged to an endpoint.
        assert_eq!(
            ProxyError::DeadlineExceeded.source_kind(),
            ErrorSource::Downstream
        );
    }
}
