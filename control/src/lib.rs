//! The control plane server: the proxy stream API and the operator API over gRPC, telemetry state
//! built from proxy reports, the plan book, discovery, actuators and performance-table stores.
//! The policies and the schedule that runs them are `loadshift-policy`'s; this crate hosts them.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod actuators;
pub mod config;
pub mod discovery;
pub mod metrics;
pub mod plans;
pub mod server;
pub mod state;
pub mod store;

pub use config::ControlConfig;
pub use server::{BoundAddrs, ControlError, ControlServer, run};
