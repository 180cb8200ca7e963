//! The tooling around the product: the lab (a scenario with real processes on loopback), the
//! emulated app it runs, the open-loop load generator, the benchmarks against peers and the
//! training of the planners' models (`model`). Nothing here runs in production; the helpers
//! these share live in [`support`].

pub mod app;
pub mod bench;
pub mod lab;
pub mod load;
pub mod model;
pub mod support;
