//! The control plane: per-service telemetry state, planners, scalers, actuators and the simulator.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod policy;
pub mod planners;
