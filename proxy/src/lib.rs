//! The loadshift data plane: an HTTP/1.1 + HTTP/2 proxy that measures every upstream call inline
//! and applies plans of endpoint weights, connection subsets and request blocking.
//!
//! IO only: listeners, the HTTP/1.1 codec, upstream pools, the request path, the admin listener
//! and the control-plane client. Plans, telemetry windows, balancers, admission and shifting are
//! the sans-IO core's (`loadshift-core`), shared with the control plane and the simulator.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod control_client;

mod admin;
pub mod admission;
pub mod config;
pub mod data_plane;
mod deadline;
mod downstream;
mod ejection;
pub mod error;
mod forwarding;
mod grpc;
mod h1;
mod headers;
mod host_sampler;
pub mod load;
pub mod metrics;
pub mod otel;
pub mod plan_file;
mod reply;
mod request;
pub mod routes;
pub mod server;
mod side;
mod spare;
pub mod spiffe;
pub mod state;
pub mod stats;
mod time_limit;
pub mod tls;
mod upstream;

/// The HTTP/1.1 codec's parsers, for the fuzz targets in `fuzz/`; not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::h1::{
        chunked::{ChunkError, Decoder, Step},
        framing::Framing,
        request::{self, Head, HeadError},
        response,
    };
}

pub use server::{Running, StartError, start};

/// Hash map for lookups on the request path (authorities, endpoint addresses, priority
/// classes). Its keys come from config and plans, never from requests, so a fast hasher cannot
/// be flooded; SipHash cost about 5% of a proxied request's instructions.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// Set counterpart of [`FastMap`].
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
