//! The control plane: per-service telemetry state, planners, scalers, actuators and the simulator.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod actuators;
pub mod config;
pub mod discovery;
mod loops;
pub mod metrics;
pub mod planners;
pub mod plans;
pub mod policy;
pub mod report;
pub mod scalers;
pub mod scenario;
pub mod server;
pub mod sim;
pub mod state;

pub use config::ControlConfig;
pub use server::{BoundAddrs, ControlError, ControlServer, run};
