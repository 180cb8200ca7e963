//! The production commands: the data-plane proxy, the control plane, the operator CLI and the
//! simulator. Each reads its config or arguments, refuses bad input with exit code 64 naming the
//! field and the reason, and runs until done or signalled.

pub mod control;
pub mod ctl;
pub mod proxy;
pub mod sim;
