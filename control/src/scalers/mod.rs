//! Scaler registry: every scaler by its name, chosen per service in the config file or through
//! the operator API, the same way planners are.

mod none;

use crate::policy::Scaler;

pub use none::NoScaling;

/// A scaler name nobody registered.
#[derive(Debug, thiserror::Error)]
#[error("unknown scaler {name:?}; known scalers: {known}")]
pub struct UnknownScaler {
    pub name: String,
    pub known: String,
}

/// Names `build` accepts.
pub const NAMES: &[&str] = &["none"];

/// Builds a scaler with its paper's defaults.
pub fn build(name: &str) -> Result<Box<dyn Scaler>, UnknownScaler> {
    match name {
        "none" => Ok(Box::new(NoScaling)),
        _ => Err(UnknownScaler {
            name: name.to_string(),
            known: NAMES.join(", "),
        }),
    }
}
