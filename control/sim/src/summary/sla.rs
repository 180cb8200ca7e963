//! `sla_met_at_s`: from when on every flow met its SLA in every report interval to the end of the
//! run, the time a scaler took to bring an application within its SLA (Imbres, seed 002,
//! Fig. 13b: how long from an under-provisioned start until the tail is within the SLA).
//!
//! Per report interval and flow, the requests that finished in it (warm-up included, since a
//! cold start is the point; blocked ones left out, as `sla_violation_pct` leaves them out) are
//! judged with `sla_violation_pct`'s per-request test: a request violates the SLA when it failed
//! or took longer than the flow's `sla.latency_ms`. The flow met its SLA in the interval when its
//! nearest-rank `sla.percentile` latency, failed requests counting as slower than any SLA, is at
//! or below `sla.latency_ms`: at most `n - ceil(n percentile / 100)` of its `n` requests violate
//! it, that is at most `(100 - percentile)` % of them. A flow with no request finishing in an
//! interval has nothing to judge there and does not count against it.

use super::nearest_rank;

/// One flow's requests that finished in one report interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    /// Completed or failed, not blocked.
    answered: u64,
    /// Of those, failed or slower than the flow's SLA latency.
    violated: u64,
}

impl Tally {
    /// Whether the nearest-rank `q` quantile (failures as infinitely slow) is within the SLA.
    fn within(self, q: f64) -> bool {
        let n = self.answered as usize;
        n == 0 || self.violated <= (n - nearest_rank(q, n)) as u64
    }
}

/// Per report interval of a run, whether every flow met its SLA.
#[derive(Clone, Debug, Default)]
pub(super) struct SlaRecord {
    /// Per flow, the quantile its SLA is stated at (`percentile / 100`).
    q: Vec<f64>,
    /// Per flow, the report interval still open.
    open: Vec<Tally>,
    /// Per closed report interval, in order: its end (s since the start) and whether every flow
    /// met its SLA in it.
    verdicts: Vec<(f64, bool)>,
}

impl SlaRecord {
    /// `percentiles`: per flow, the percentile its SLA is stated at.
    pub fn new(percentiles: &[f64]) -> Self {
        Self {
            q: percentiles.iter().map(|p| p / 100.0).collect(),
            open: vec![Tally::default(); percentiles.len()],
            verdicts: Vec::new(),
        }
    }

    /// A request of `flow` that was answered (not blocked); `violated`: it failed or was slower
    /// than the flow's SLA latency.
    pub fn record(&mut self, flow: usize, violated: bool) {
        let t = &mut self.open[flow];
        t.answered += 1;
        t.violated += u64::from(violated);
    }

    /// Closes the report interval ending at `t_s`.
    pub fn close(&mut self, t_s: f64) {
        let met = self.open.iter().zip(&self.q).all(|(t, &q)| t.within(q));
        self.verdicts.push((t_s, met));
        self.open.fill(Tally::default());
    }

    /// `sla_met_at_s`; `None` when the scenario has no flow (so no SLA).
    pub fn met_at_s(&self) -> Option<f64> {
        if self.q.is_empty() {
            return None;
        }
        met_from(&self.verdicts)
    }
}

/// The earliest report-interval boundary from which every interval to the end met the SLA: the
/// end of the last interval that missed it, or 0 (the start of the run) when none did. `None` when
/// the last interval missed it (the run ended before the tail settled) or there is no interval.
/// `verdicts`: per report interval in order, its end time and whether it met the SLA.
fn met_from(verdicts: &[(f64, bool)]) -> Option<f64> {
    match verdicts.iter().rposition(|&(_, met)| !met) {
        None if verdicts.is_empty() => None,
        None => Some(0.0),
        Some(i) if i + 1 < verdicts.len() => Some(verdicts[i].0),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One interval per entry (ends 5, 10, 15, ... s), each of `n` requests of one flow with an
    /// SLA at the 95th percentile, `slow` of them violating it.
    fn run(intervals: &[(u64, u64)]) -> Option<f64> {
        let mut r = SlaRecord::new(&[95.0]);
        for (k, &(n, slow)) in intervals.iter().enumerate() {
            for i in 0..n {
                r.record(0, i < slow);
            }
            r.close(5.0 * (k + 1) as f64);
        }
        r.met_at_s()
    }

    #[test]
    fn met_from_the_end_of_the_last_interval_that_missed_it() {
        // Missed in the 2nd interval (10 of 100 slow), met from the 3rd on: the end of the 2nd.
        assert_eq!(
            run(&[(100, 0), (100, 10), (100, 0), (100, 5), (100, 0)]),
            Some(10.0)
        );
        // Missed from the start (a cold start), met from the 4th: the end of the 3rd.
        assert_eq!(
            run(&[(100, 90), (100, 40), (100, 6), (100, 1), (100, 0)]),
            Some(15.0)
        );
    }

    #[test]
    fn met_throughout_is_the_start_of_the_run() {
        assert_eq!(run(&[(100, 0), (100, 5), (100, 2)]), Some(0.0));
    }

    #[test]
    fn missed_in_the_last_interval_is_never() {
        assert_eq!(run(&[(100, 50), (100, 0), (100, 0), (100, 6)]), None);
        assert_eq!(run(&[(100, 50)]), None);
        assert_eq!(run(&[]), None);
    }

    #[test]
    fn the_bar_is_the_nearest_rank_percentile() {
        // At the 95th percentile: 5 of 100 violating keeps the p95 within the SLA, 6 do not;
        // of 30 requests ceil(28.5) = 29 must be within it, so 1 may violate and 2 may not.
        assert_eq!(run(&[(100, 6), (100, 5)]), Some(5.0));
        assert_eq!(run(&[(100, 5), (100, 6), (100, 0)]), Some(10.0));
        assert_eq!(run(&[(30, 2), (30, 1)]), Some(5.0));
        // Fewer than 20 requests: one violation is already more than 5 %.
        assert_eq!(run(&[(19, 1), (19, 0)]), Some(5.0));
    }

    #[test]
    fn every_flow_must_meet_its_own_percentile() {
        // Flow 0 at p95, flow 1 at p50; 10 requests each per interval.
        let mut r = SlaRecord::new(&[95.0, 50.0]);
        let mut interval = |t: f64, slow: [u64; 2]| {
            for (f, &slow) in slow.iter().enumerate() {
                for i in 0..10 {
                    r.record(f, i < slow);
                }
            }
            r.close(t);
        };
        interval(5.0, [0, 6]); // flow 1's median violates: missed
        interval(10.0, [1, 5]); // flow 0: 1 of 10 > 5 %: missed
        interval(15.0, [0, 5]); // both within
        assert_eq!(r.met_at_s(), Some(10.0));
        // A flow with no request finishing in an interval does not count against it.
        r.record(0, false);
        r.close(20.0);
        assert_eq!(r.met_at_s(), Some(10.0));
    }

    #[test]
    fn no_flow_no_sla() {
        let mut r = SlaRecord::new(&[]);
        r.close(5.0);
        assert_eq!(r.met_at_s(), None);
    }
}
