//! A server's latency at the load it has now, as a Prequal server estimates it for its probe
//! answers (Wydrowski et al., "Load is not what you should balance: Introducing Prequal",
//! NSDI 2024): each finished request's latency is kept by the requests in flight (RIF) when it
//! arrived, and the estimate is taken at the RIF the server has when it answers, from the
//! samples at that RIF or, when there are none, at the nearest RIF that has some.
//!
//! Conditioning on RIF is the paper's point: a replica's latency depends on how busy it is, so a
//! caller comparing replicas that are all lightly loaded (the hot-cold rule's cold ones) should
//! see how fast each is at light load, not the queueing it had a moment ago. A caller-side
//! Peak-EWMA mixes both, and keeps a queueing peak for its time constant.
//!
//! Departures, for O(1) memory and update on every response: RIF is bucketed (0 to 7 exactly,
//! then 8-15, 16-31, 32-63, 64 and up), and each bucket keeps an exponentially weighted mean of
//! its samples (weight [`WEIGHT`], about its last eight) instead of the paper's median of the
//! recent samples at that RIF.
//!
//! Used by the proxy's inbound side (the sidecar in front of the app, `loadshift-load` on every
//! response, docs/protocols.md) and by the twin's containers, so both report the same number.

use std::time::Duration;

/// Buckets: RIF 0 to 7 each, then 8-15, 16-31, 32-63 and 64 or more.
const BUCKETS: usize = 12;

/// Weight of a new sample in its bucket's mean: 1/8, about the last eight samples (the paper's
/// median is over a bucket's recent samples; at the rates it serves these are the last few
/// milliseconds).
pub const WEIGHT: f64 = 0.125;

/// Latency means by requests in flight at arrival.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RifLatency {
    /// Mean latency per bucket, ms; `None` until the bucket has a sample.
    ms: [Option<f64>; BUCKETS],
}

/// The bucket of a RIF value.
fn bucket(rif: u32) -> usize {
    match rif {
        0..=7 => rif as usize,
        // 8 -> 8, 16 -> 9, 32 -> 10, 64 and up -> 11.
        _ => (5 + rif.ilog2() as usize).min(BUCKETS - 1),
    }
}

impl RifLatency {
    /// Folds in one finished request: `rif` is the number of requests in flight when it
    /// arrived (not counting itself).
    pub fn observe(&mut self, rif: u32, latency: Duration) {
        let x = latency.as_secs_f64() * 1e3;
        let m = &mut self.ms[bucket(rif)];
        *m = Some(match *m {
            Some(mean) => mean + WEIGHT * (x - mean),
            None => x,
        });
    }

    /// The latency estimate at `rif` requests in flight, ms: its bucket's mean, else the nearest
    /// bucket's that has samples (the lower one on a tie); `None` before any sample.
    pub fn estimate_ms(&self, rif: u32) -> Option<f64> {
        let b = bucket(rif);
        (0..BUCKETS).find_map(|d| {
            let below = b.checked_sub(d).and_then(|k| self.ms[k]);
            below.or_else(|| self.ms.get(b + d).copied().flatten())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn buckets_are_exact_then_doubling() {
        let got: Vec<usize> = [0, 1, 7, 8, 15, 16, 31, 32, 63, 64, 1000, u32::MAX]
            .into_iter()
            .map(bucket)
            .collect();
        assert_eq!(got, [0, 1, 7, 8, 8, 9, 9, 10, 10, 11, 11, 11]);
    }

    #[test]
    fn estimate_is_taken_at_the_current_load() {
        let mut r = RifLatency::default();
        assert_eq!(r.estimate_ms(0), None);
        // Idle arrivals take 10 ms, arrivals behind three others 40 ms.
        r.observe(0, 10 * MS);
        r.observe(3, 40 * MS);
        assert_eq!(r.estimate_ms(0), Some(10.0));
        assert_eq!(r.estimate_ms(3), Some(40.0));
        // No samples at 1 or 2: the nearest bucket with samples answers (0 for 1, 3 for 2); far
        // above, the highest that has samples.
        assert_eq!(r.estimate_ms(1), Some(10.0));
        assert_eq!(r.estimate_ms(2), Some(40.0));
        assert_eq!(r.estimate_ms(500), Some(40.0));
    }

    #[test]
    fn a_bucket_follows_its_recent_samples() {
        let mut r = RifLatency::default();
        r.observe(0, 10 * MS);
        // One slow sample moves the mean an eighth of the way; a run of them takes it over.
        r.observe(0, 90 * MS);
        assert_eq!(r.estimate_ms(0), Some(20.0));
        for _ in 0..60 {
            r.observe(0, 90 * MS);
        }
        assert!((r.estimate_ms(0).unwrap() - 90.0).abs() < 0.1);
    }
}
