//! The headline of a comparison: one line per policy under test, its p95 over each baseline's
//! (`imbres-shift: p95 0.84x round-robin, 0.96x p2c-ewma`), the ratio `loadshift sim --seeds`
//! pairs per seed (`seeds::Ratio`: `p95(policy) / p95(baseline)`, none when the baseline's p95 is
//! 0), here on the one seed of the report. When the runs' container-seconds differ (a scaler
//! ran), the same ratio of container-seconds follows: a lower tail bought with more containers
//! shows.
//!
//! Baselines are the policies whose planner and scaler are both the papers' yardsticks (the
//! planners `even`, `round-robin`, `least-request`, `p2c-ewma`, `local`, `static`,
//! `random-partial` and `full`; the scalers `none`, `hpa`, `hpa-best` and `avg`); the others are
//! under test. With no baseline, or nothing else, every later policy is set against the first.

use super::{PolicyRun, Report};

const BASELINE_PLANNERS: &[&str] = &[
    "even",
    "round-robin",
    "least-request",
    "p2c-ewma",
    "local",
    "static",
    "random-partial",
    "full",
];
const BASELINE_SCALERS: &[&str] = &["none", "hpa", "hpa-best", "avg"];

/// Container-seconds closer than this (relative) count as the same cost.
const SAME_COST: f64 = 1e-3;

/// Whether `policy` (`<planner>` or `<planner>+<scaler>`) is a baseline.
pub(super) fn is_baseline(policy: &str) -> bool {
    let (planner, scaler) = policy.split_once('+').unwrap_or((policy, "none"));
    BASELINE_PLANNERS.contains(&planner) && BASELINE_SCALERS.contains(&scaler)
}

/// The policies set against others and the ones they are set against, in run order.
pub(super) fn pairs(r: &Report) -> (Vec<&PolicyRun>, Vec<&PolicyRun>) {
    let (base, test): (Vec<&PolicyRun>, Vec<&PolicyRun>) =
        r.runs.iter().partition(|run| is_baseline(&run.policy));
    if base.is_empty() || test.is_empty() {
        let mut all = r.runs.iter();
        let first: Vec<&PolicyRun> = all.next().into_iter().collect();
        return (all.collect(), first);
    }
    (test, base)
}

/// One line per policy under test; empty with fewer than two runs.
pub fn headline(r: &Report) -> Vec<String> {
    let (test, base) = pairs(r);
    let costs_differ = r.runs.iter().any(|a| {
        r.runs.iter().any(|b| {
            let (x, y) = (a.summary.container_seconds, b.summary.container_seconds);
            (x - y).abs() > SAME_COST * x.abs().max(y.abs())
        })
    });
    test.iter()
        .map(|t| {
            let against = |pick: fn(&PolicyRun) -> f64| {
                base.iter()
                    .map(|b| format!("{} {}", times(pick(t), pick(b)), b.policy))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut line = format!("{}: p95 {}", t.policy, against(|x| x.summary.p95_ms));
            if costs_differ {
                line.push_str("; container-seconds ");
                line.push_str(&against(|x| x.summary.container_seconds));
            }
            line
        })
        .collect()
}

/// `a / b` as `0.84x`; `n/a` when `b` is not positive.
fn times(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "n/a".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(names: &[(&str, f64)]) -> Report {
        let mut r = crate::report::tests::sample();
        let template = r.runs[0].clone();
        r.runs = names
            .iter()
            .map(|&(n, p95)| {
                let mut run = template.clone();
                run.policy = n.into();
                run.summary.p95_ms = p95;
                run
            })
            .collect();
        r
    }

    #[test]
    fn each_policy_under_test_against_each_baseline() {
        let r = named(&[
            ("round-robin", 100.0),
            ("p2c-ewma", 87.5),
            ("imbres-shift", 84.0),
        ]);
        assert_eq!(
            headline(&r),
            ["imbres-shift: p95 0.84x round-robin, 0.96x p2c-ewma"]
        );
        // Two policies, one a baseline.
        let r = named(&[("imbres-shift", 30.0), ("round-robin", 40.0)]);
        assert_eq!(headline(&r), ["imbres-shift: p95 0.75x round-robin"]);
    }

    #[test]
    fn without_baselines_the_first_run_is_the_reference() {
        // The sample: `even` and `p2c-ewma`, both baselines.
        let r = crate::report::tests::sample();
        assert_eq!(headline(&r), ["p2c-ewma: p95 0.75x even"]);
        let r = named(&[("imbres-shift", 50.0), ("imbres-shift-pure", 0.0)]);
        assert_eq!(headline(&r), ["imbres-shift-pure: p95 0.00x imbres-shift"]);
        let r = named(&[("imbres-shift-pure", 0.0), ("imbres-shift", 50.0)]);
        assert_eq!(headline(&r), ["imbres-shift: p95 n/a imbres-shift-pure"]);
        assert!(headline(&named(&[("even", 1.0)])).is_empty());
    }

    #[test]
    fn scalers_add_the_container_cost() {
        let mut r = named(&[("round-robin+hpa", 100.0), ("imbres-connect+imbres", 90.0)]);
        r.runs[1].summary.container_seconds = 450.0;
        assert_eq!(
            headline(&r),
            [
                "imbres-connect+imbres: p95 0.90x round-robin+hpa; container-seconds 0.75x \
                 round-robin+hpa"
            ]
        );
        assert!(is_baseline("p2c-ewma+hpa-best") && !is_baseline("p2c-ewma+queueflower"));
    }
}
