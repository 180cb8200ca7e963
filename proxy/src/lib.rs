//! The loadshift data plane: an HTTP/1.1 + HTTP/2 proxy that measures every upstream call inline
//! and applies plans of endpoint weights, connection subsets and request blocking.
//!
//! Sans-IO modules (shared with the control plane and the simulator): [`plan`], [`endpoint`],
//! [`telemetry`], [`balance`], [`admission`], [`outlier`], [`retry_budget`].
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admission;
pub mod balance;
pub mod endpoint;
pub mod outlier;
pub mod plan;
pub mod retry_budget;
pub mod shift;
pub mod telemetry;
