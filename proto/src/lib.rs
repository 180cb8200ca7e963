//! The `loadshift.v1` gRPC contract: proxy <-> control plane stream and the operator API.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
