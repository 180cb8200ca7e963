//! The production commands: the data-plane proxy, the control plane, the operator CLI and the
//! simulator. Each reads its config or arguments, refuses bad input with exit code 64 naming the
//! field and the reason, and runs until done or signalled.

pub mod control;
pub mod ctl;
pub mod proxy;
pub mod sim;
pub mod token;

/// Where `token create` writes and what `ctl` reads by default: `loadshift.token` in the working
/// directory, the path `deploy/control.example.yaml` names.
pub const DEFAULT_TOKEN_FILE: &str = "loadshift.token";
