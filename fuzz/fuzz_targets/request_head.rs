//! A client's request head: no panic; a head is a prefix of the input that ends a line; and a
//! shorter prefix gives "needs more" or the same outcome (the connection parses whatever has
//! arrived, so the outcome must not depend on how the bytes were split).
#![no_main]

use libfuzzer_sys::fuzz_target;
use loadshift_proxy::fuzzing::request;

/// Needs more, a head of this many bytes, or a refusal with this status.
fn outcome(buf: &[u8]) -> Option<Result<usize, u16>> {
    match request::parse(buf) {
        Ok(None) => None,
        Ok(Some(h)) => {
            assert!(h.len <= buf.len() && buf[..h.len].ends_with(b"\n"));
            Some(Ok(h.len))
        }
        Err(e) => Some(Err(e.status().as_u16())),
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = outcome(data);
    if data.len() < 2 {
        return;
    }
    let cut = usize::from(data[0]) * data.len() / 256;
    for k in [cut, data.len() / 2, data.len() - 1] {
        if k == 0 {
            continue;
        }
        let part = outcome(&data[..k]);
        assert!(
            part.is_none() || part == whole,
            "{k} bytes: {part:?}, all: {whole:?}"
        );
    }
});
