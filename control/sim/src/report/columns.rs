//! What every column of the report's tables counts, in the words of the code that fills it
//! (`summary.rs` and `engine.rs` / `request.rs` in the simulator, `src/tools/lab/run.rs` in the
//! lab): written under each table so the page explains itself. The two sources differ where
//! their measurements do, so each says its own.

/// Whose numbers a table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    Sim,
    Lab,
}

impl Source {
    /// `lab` for the lab's reports, the simulator's wording for anything else.
    pub fn of(source: &str) -> Self {
        if source == "lab" {
            Self::Lab
        } else {
            Self::Sim
        }
    }
}

/// (column, what it counts) for the comparison table, in its column order.
pub(super) fn comparison(src: Source) -> Vec<(&'static str, &'static str)> {
    let lab = src == Source::Lab;
    vec![
        (
            "policy",
            "the planner, or planner+scaler, that ran; every policy saw the same scenario and seed",
        ),
        (
            "requests",
            if lab {
                "requests the load generator sent after the warm-up (intended send time at or after \
                 warmup_s), every flow together"
            } else {
                "requests offered (arrived) after the warm-up, every flow together; the latency, \
                 SLA and blocked figures are over these"
            },
        ),
        (
            "mean, p50, p90, p95, p99 ms",
            if lab {
                "end-to-end latency of the successful responses to those requests, measured by the \
                 generator from each request's intended send time (so a request the generator sent \
                 late counts its wait); from log-linear histograms, within 6.25 %"
            } else {
                "end-to-end latency (ingress to response: every hop's queueing, service time and \
                 inter-zone RTT) of those requests that were not blocked and got an answer, \
                 failed ones included (a timed-out one with its full latency); exact \
                 nearest-rank percentiles over the whole counted run, not per interval"
            },
        ),
        (
            "SLA violations %",
            if lab {
                "of those requests not answered 503: successful but slower than their flow's SLA \
                 latency, or failed (error, timeout, no answer), in %; per request, not whether \
                 the p95 stayed under the SLA"
            } else {
                "of those requests not blocked and answered: failed, or slower than their flow's \
                 SLA latency (sla.latency_ms x sla_scale), in %; per request, not whether the \
                 p95 stayed under the SLA"
            },
        ),
        (
            "blocked %",
            if lab {
                "503 responses (a proxy's blocking rule, or an overloaded app) over the requests \
                 sent after the warm-up, in %"
            } else {
                "requests refused by a caller proxy's admission gate (a plan's blocking rule) \
                 over the requests offered after the warm-up, in %"
            },
        ),
        (
            "container-seconds",
            if lab {
                "the lab's containers (app + sidecar pairs) integrated over the counted time, \
                 from the warm-up to the end: the resource cost"
            } else {
                "containers integrated over the counted time, from the warm-up to the end of \
                 the arrivals: the resource cost a scaler is judged on"
            },
        ),
        (
            "converge iterations",
            "planner iterations from the scenario's last change (its last interference or load \
             step before 3/4 of the run; 0 s when none) until the p95 of each iteration, pooled \
             with the two before it, stays within 5 % of the p95 of the run's last quarter; - \
             when it never settles",
        ),
        (
            "SLA met at s",
            if lab {
                "not judged in the lab (it keeps no per-flow tallies per interval): always -"
            } else {
                "seconds from the start of the run from which every report interval to the end \
                 met every flow's SLA at its percentile; 0 when none missed it, - when the last \
                 interval still missed it"
            },
        ),
        (
            "plan pushes",
            if lab {
                "plan updates the real control plane sent to proxies while the load ran (one per \
                 proxy stream and update; a plan made before the load, such as round-robin's, \
                 counts none)"
            } else {
                "service plans or per-proxy plans that changed, over the whole run"
            },
        ),
        (
            "completed / failed / blocked",
            if lab {
                "where every request the generator sent ended, warm-up included (so the three add \
                 up to more than requests): a successful response; failed (an error, a timeout, \
                 or no answer when the run ended); a 503"
            } else {
                "where the requests counted in requests ended (the three add up to requests): \
                 completed within their flow's timeout; failed (an error, slower than timeout_ms, \
                 or still in flight after the drain); blocked"
            },
        ),
    ]
}

/// (column, what it counts) for the per-flow table (the simulator's; the lab does not split by
/// flow).
pub(super) fn per_flow() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "requests",
            "the flow's requests offered after the warm-up (the flows add up to the policy's)",
        ),
        (
            "mean, p90, p95 ms",
            "end-to-end latency of the flow's requests that were not blocked and got an answer, \
             failed ones included",
        ),
        (
            "SLA violations %",
            "of those: failed or slower than the flow's own SLA latency (x sla_scale), in %",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_comparison_column_is_explained_for_both_sources() {
        for src in [Source::Sim, Source::Lab] {
            let cols: Vec<&str> = comparison(src).iter().map(|c| c.0).collect();
            assert_eq!(cols.len(), 10, "{cols:?}");
            assert!(comparison(src).iter().all(|c| c.1.len() > 40));
        }
        assert!(
            comparison(Source::of("lab"))[9]
                .1
                .contains("warm-up included")
        );
        assert!(
            comparison(Source::of("sim"))[9]
                .1
                .contains("add up to requests")
        );
    }
}
