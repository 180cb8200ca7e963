//! The `loadshift.v1` gRPC contract: the proxy <-> control plane stream (`ProxyControl.Connect`)
//! and the operator API (`Operator`).
//!
//! The `.proto` files live in `proto/loadshift/v1/`; the Rust code generated from them is checked
//! in under `src/gen/` and kept in step by the `generated_up_to_date` test, so building this crate
//! needs no `protoc`.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod codec;

/// Package `loadshift.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
    include!("gen/loadshift.v1.rs");
}
