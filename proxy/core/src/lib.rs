//! loadshift's sans-IO core: the vocabulary and algorithms the data plane, the control plane,
//! the policies and the simulator share. Everything is a state machine fed with observations and
//! a clock reading; nothing here opens a socket, reads a file or starts a task.
//!
//! - [`endpoint`]: one container as a routing target, with its `host` / `zone` / `container` labels.
//! - [`plan`]: the plan type (weights, subsets, blocking) and its validation.
//! - [`telemetry`]: Peak-EWMA, log-linear histograms, rotating windows, host-pressure parsing,
//!   a server's latency by its requests in flight.
//! - [`balance`]: alias tables, P2C, weighted P2C, round robin, least request, Prequal's hot-cold
//!   rule, rendezvous subsets, slow start.
//! - [`admission`]: request blocking by error diffusion and in-flight caps.
//! - [`outlier`]: consecutive-failure and latency-outlier ejection with backoff.
//! - [`retry_budget`]: the retry budget for idempotent requests.
//! - [`shift`]: Imbres Alg. 1, shared by the control-plane planner and the proxy's local mode.
//! - `proto` (feature `proto`): conversions to and from the `loadshift.v1` wire types.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admission;
pub mod balance;
pub mod endpoint;
pub mod outlier;
pub mod plan;
#[cfg(feature = "proto")]
pub mod proto;
pub mod retry_budget;
pub mod shift;
pub mod telemetry;
