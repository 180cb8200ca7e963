//! An upstream's response head: no panic; a head is a prefix of the input that ends a line;
//! and a shorter prefix gives "needs more" or the same head (or an error where the whole is one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use loadshift_proxy::fuzzing::{Framing, response};

/// Needs more, a head of this many bytes with its framing, or an error.
fn outcome(buf: &[u8]) -> Option<Result<(usize, Framing, bool), ()>> {
    match response::parse(buf) {
        Ok(None) => None,
        Ok(Some(h)) => {
            assert!(h.len <= buf.len() && buf[..h.len].ends_with(b"\n"));
            Some(Ok((h.len, h.framing, h.keep_alive)))
        }
        Err(_) => Some(Err(())),
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = outcome(data);
    if data.len() < 2 {
        return;
    }
    let cut = usize::from(data[0]) * data.len() / 256;
    for k in [cut, data.len() - 1] {
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
