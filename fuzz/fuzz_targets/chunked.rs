//! The chunked decoder: no panic, and the same data and the same end (or failure) whether the
//! bytes arrive at once or in two pieces cut where the first byte says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loadshift_proxy::fuzzing::{ChunkError, Decoder, Step};

/// Decodes `input` given in pieces ending at `cuts` (ascending) and at its end, as the
/// connection does: the data and where the body ended, or why it failed (`None`: never ended).
fn feed(input: &[u8], cuts: &[usize]) -> (Vec<u8>, Result<usize, Option<ChunkError>>) {
    let mut d = Decoder::default();
    let mut data = Vec::new();
    let mut consumed = 0;
    for &to in cuts.iter().chain(std::iter::once(&input.len())) {
        while consumed < to {
            match d.step(&input[consumed..to]) {
                Ok(Step::Data { start, end, used }) => {
                    data.extend_from_slice(&input[consumed + start..consumed + end]);
                    consumed += used;
                }
                Ok(Step::NeedMore) => consumed = to,
                Ok(Step::End { used }) => return (data, Ok(consumed + used)),
                Err(e) => return (data, Err(Some(e))),
            }
        }
    }
    (data, Err(None))
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let cut = usize::from(first) * input.len() / 256;
    let whole = feed(input, &[]);
    if let (_, Ok(end)) = &whole {
        assert!(*end <= input.len());
    }
    assert_eq!(feed(input, &[cut]), whole, "cut at {cut}");
});
