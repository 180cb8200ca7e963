//! Tests of the codec as a whole: properties of each parser on generated and mutated input
//! ([`prop`]), and a differential test against hyper's HTTP/1 server on the same bytes, the
//! generated ones and the request-smuggling corpus in `tests/corpus/smuggling/`
//! ([`differential`]).

mod differential;
mod inputs;
mod ours;
mod prop;
mod reference;

use http::{HeaderMap, Method, Version};

/// One request as a reader delivered it.
#[derive(Debug)]
pub struct Seen {
    pub method: Method,
    pub target: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// The whole body, or why it failed.
    pub body: Result<Vec<u8>, String>,
}

/// Fixed seed and case count: the same inputs on every run, so CI is deterministic; set
/// `PROPTEST_CASES` to run more locally.
fn config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(cases),
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_1b0d),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}
