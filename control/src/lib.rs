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
pub mod scalers;
pub mod server;
pub mod state;
pub mod report;
pub mod scenario;
pub mod sim;

pub use config::ControlConfig;
pub use server::{BoundAddrs, ControlError, ControlServer, run};
