//! The share sweep behind the oracle: every (pick, share) on every seed through the real
//! simulator, a refinement around the best grid point, and baselines on the same seeds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{HostSplit, OracleError, Pick, even_share, noisy_hosts};
use crate::scenario::Scenario;
use crate::{
    Outcome, Policies, SimOptions, onset_s, run, run_with,
    seeds::{Ratio, Stat},
};
use loadshift_policy::{Planner, planners::PlannerSettings};

/// What to sweep.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Seeds every point and baseline runs on (`--compare --seeds` uses consecutive seeds from
    /// the scenario's).
    pub seeds: Vec<u64>,
    /// Picks to sweep. Default both.
    pub picks: Vec<Pick>,
    /// Grid step of the share. Default 0.02.
    pub step: f64,
    /// Step of the refinement around the best grid point (one grid step either side). Default
    /// 0.005.
    pub refine_step: f64,
    /// Split from t = 0 instead of from the scenario's onset. Default false.
    pub from_start: bool,
    /// Planners run on the same seeds for the ratios. Default `round-robin`, `p2c-ewma`,
    /// `imbres-shift`.
    pub baselines: Vec<String>,
    /// Tunables of the baseline planners. Default: the scenario's.
    pub planner_settings: Option<PlannerSettings>,
}

impl SweepOptions {
    /// The defaults above on `seeds`.
    pub fn new(seeds: Vec<u64>) -> Self {
        Self {
            seeds,
            picks: vec![Pick::Weighted, Pick::WeightedP2c],
            step: 0.02,
            refine_step: 0.005,
            from_start: false,
            baselines: ["round-robin", "p2c-ewma", "imbres-shift"]
                .map(String::from)
                .to_vec(),
            planner_settings: None,
        }
    }
}

/// One share with one pick over every seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub pick: Pick,
    /// Share of each noisy host in every service.
    pub share: f64,
    /// Added by the refinement.
    pub refined: bool,
    pub p95_ms: Stat,
    pub p99_ms: Stat,
    /// Noisy hosts' share of all calls, mean over the report intervals after the split.
    pub noisy_call_share: Stat,
}

/// A baseline planner on the same seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub policy: String,
    pub p95_ms: Stat,
    pub p99_ms: Stat,
    pub noisy_call_share: Stat,
}

/// The result (`summary.json` of `loadshift sim --oracle-host-split`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    pub scenario: String,
    pub seeds: Vec<u64>,
    pub noisy_hosts: Vec<String>,
    /// Top of the grid: a noisy host's largest share under even weights.
    pub even_share: f64,
    /// Simulated second from which the split holds (first planner tick at or after it).
    pub split_from_s: f64,
    /// Every point, by pick then share.
    pub points: Vec<Point>,
    pub baselines: Vec<Baseline>,
    /// Per pick, the point with the lowest mean p95.
    pub best: Vec<Point>,
    /// Per seed `p95(a) / p95(b)`: each pick's best against each baseline and back, and the
    /// best against the even share.
    pub ratios: Vec<Ratio>,
}

impl Sweep {
    /// The point of `pick` at `share`, if swept.
    pub fn point(&self, pick: Pick, share: f64) -> Option<&Point> {
        self.points
            .iter()
            .find(|p| p.pick == pick && same(p.share, share))
    }

    /// The ratio `policy / baseline`, if computed.
    pub fn ratio(&self, policy: &str, baseline: &str) -> Option<&Stat> {
        self.ratios
            .iter()
            .find(|r| r.policy == policy && r.baseline == baseline)
            .map(|r| &r.p95_ratio)
    }
}

/// Label of a pick's best point in [`Sweep::ratios`]: `oracle-<pick>`.
pub fn best_label(pick: Pick) -> String {
    format!("oracle-{}", pick.name())
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Shares on a grid are rounded to 1e-6 so repeated additions do not drift.
fn grid(k: i64, step: f64) -> f64 {
    ((k as f64 * step) * 1e6).round() / 1e6
}

/// Runs the sweep; `progress` gets one line per finished point or baseline.
pub fn sweep(
    s: &Scenario,
    o: &SweepOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Sweep, OracleError> {
    for (name, value) in [("step", o.step), ("refine_step", o.refine_step)] {
        if !(value > 0.0 && value <= 0.5) {
            return Err(OracleError::BadStep { name, value });
        }
    }
    if o.seeds.is_empty() {
        return Err(OracleError::NoSeeds);
    }
    if o.picks.is_empty() {
        return Err(OracleError::NoPicks);
    }
    let noisy = noisy_hosts(s)?;
    let top = even_share(s, &noisy);
    // The engine's own onset (changes in the last quarter are not an onset it judges).
    let onset = if o.from_start {
        0.0
    } else {
        onset_s(s, 0.75 * s.duration_s)
    };
    // Planners run at 0 and then on multiples of their interval: the split holds from the first
    // tick at or after the onset, and call shares count from there (or the warm-up).
    let tick_s = HostSplit::new(Vec::new(), 0.0, Duration::ZERO, Pick::Weighted)
        .interval()
        .as_secs_f64();
    let split_from_s = (onset / tick_s).ceil() * tick_s;
    let counted_from = split_from_s.max(s.warmup_s);
    // Resolved up front so a baseline typo fails before any run.
    for b in &o.baselines {
        Policies::resolve(s, &options(b, o, None))?;
    }
    let run_point = |pick: Pick, share: f64, refined: bool| -> Result<Point, OracleError> {
        let mut outs = Vec::new();
        for &seed in &o.seeds {
            // The scenario's scalers stay; its planners give way to the split.
            let split = HostSplit::new(noisy.clone(), share, Duration::from_secs_f64(onset), pick);
            let mut p =
                Policies::resolve(s, &SimOptions::default())?.with_planner(s, Box::new(split));
            p.name = format!("oracle-{}-{share}", pick.name());
            outs.push(run_with(s, seed, p, &mut |_| {}));
        }
        Ok(Point {
            pick,
            share,
            refined,
            p95_ms: stat(&outs, |x| x.run.summary.p95_ms),
            p99_ms: stat(&outs, |x| x.run.summary.p99_ms),
            noisy_call_share: stat(&outs, |x| noisy_share(x, &noisy, counted_from)),
        })
    };
    let mut points: Vec<Point> = Vec::new();
    let mut per_seed: Vec<(String, Vec<f64>)> = Vec::new();
    for &pick in &o.picks {
        let mut shares: Vec<f64> = (0..)
            .map(|k| grid(k, o.step))
            .take_while(|&x| x < top - 1e-9)
            .collect();
        shares.push(top);
        let mut mine = Vec::new();
        for sh in shares {
            let pt = run_point(pick, sh, false)?;
            progress(&line(&pt));
            mine.push(pt);
        }
        let best_grid = best_of(&mine).map_or(top, |b| b.share);
        let m = (o.step / o.refine_step).round().max(1.0) as i64;
        for j in -(m - 1)..=(m - 1) {
            let sh = ((best_grid + grid(j, o.refine_step)) * 1e6).round() / 1e6;
            if sh < 0.0 || sh > top + 1e-9 || mine.iter().any(|p| same(p.share, sh)) {
                continue;
            }
            let pt = run_point(pick, sh, true)?;
            progress(&line(&pt));
            mine.push(pt);
        }
        mine.sort_by(|a, b| a.share.total_cmp(&b.share));
        if let Some(b) = best_of(&mine) {
            per_seed.push((best_label(pick), b.p95_ms.values.clone()));
            if let Some(e) = mine.iter().find(|p| same(p.share, top)) {
                per_seed.push((format!("even-{}", pick.name()), e.p95_ms.values.clone()));
            }
        }
        points.extend(mine);
    }
    let mut baselines = Vec::new();
    for b in &o.baselines {
        let mut outs = Vec::new();
        for &seed in &o.seeds {
            outs.push(run(s, &options(b, o, Some(seed)), &mut |_| {})?);
        }
        let bl = Baseline {
            policy: outs.first().map_or(b.clone(), |x| x.run.policy.clone()),
            p95_ms: stat(&outs, |x| x.run.summary.p95_ms),
            p99_ms: stat(&outs, |x| x.run.summary.p99_ms),
            noisy_call_share: stat(&outs, |x| noisy_share(x, &noisy, counted_from)),
        };
        progress(&format!(
            "{}: p95 {:.2} ± {:.2} ms",
            bl.policy, bl.p95_ms.mean, bl.p95_ms.sd
        ));
        per_seed.push((bl.policy.clone(), bl.p95_ms.values.clone()));
        baselines.push(bl);
    }
    let best: Vec<Point> = o
        .picks
        .iter()
        .filter_map(|&pick| {
            let mine: Vec<Point> = points.iter().filter(|p| p.pick == pick).cloned().collect();
            best_of(&mine).cloned()
        })
        .collect();
    Ok(Sweep {
        scenario: s.name.clone(),
        seeds: o.seeds.clone(),
        noisy_hosts: noisy,
        even_share: top,
        split_from_s,
        points,
        baselines,
        best,
        ratios: ratios(&per_seed, &o.picks),
    })
}

fn options(planner: &str, o: &SweepOptions, seed: Option<u64>) -> SimOptions {
    SimOptions {
        planner: Some(planner.to_string()),
        seed,
        planner_settings: o.planner_settings.clone(),
        ..Default::default()
    }
}

fn stat(outs: &[Outcome], f: impl Fn(&Outcome) -> f64) -> Stat {
    Stat::of(&outs.iter().map(f).collect::<Vec<_>>())
}

/// Noisy hosts' share of all calls, averaged over the report intervals that start at or after
/// `from_s` (the interval holding the switch mixes both plans).
fn noisy_share(o: &Outcome, noisy: &[String], from_s: f64) -> f64 {
    let ivs: Vec<f64> = o
        .run
        .intervals
        .windows(2)
        .filter(|w| w[0].t_s >= from_s && w[1].requests > 0)
        .map(|w| {
            noisy
                .iter()
                .filter_map(|h| w[1].host_share.get(h))
                .sum::<f64>()
        })
        .collect();
    if ivs.is_empty() {
        return f64::NAN;
    }
    ivs.iter().sum::<f64>() / ivs.len() as f64
}

fn best_of(points: &[Point]) -> Option<&Point> {
    points
        .iter()
        .min_by(|a, b| a.p95_ms.mean.total_cmp(&b.p95_ms.mean))
}

fn line(p: &Point) -> String {
    format!(
        "{} share {:.3}{}: p95 {:.2} ± {:.2} ms",
        p.pick.name(),
        p.share,
        if p.refined { " (refined)" } else { "" },
        p.p95_ms.mean,
        p.p95_ms.sd
    )
}

/// Each pick's best against every other series and back, paired per seed.
fn ratios(per_seed: &[(String, Vec<f64>)], picks: &[Pick]) -> Vec<Ratio> {
    let mut out = Vec::new();
    for &pick in picks {
        let label = best_label(pick);
        let Some((_, best)) = per_seed.iter().find(|(n, _)| *n == label) else {
            continue;
        };
        for (name, other) in per_seed {
            let seen = out
                .iter()
                .any(|r: &Ratio| r.policy == *name && r.baseline == label);
            if *name == label || seen {
                continue;
            }
            let pair = |a: &[f64], b: &[f64]| {
                let v: Vec<f64> = a
                    .iter()
                    .zip(b)
                    .filter(|(_, b)| **b > 0.0)
                    .map(|(a, b)| a / b)
                    .collect();
                Stat::of(&v)
            };
            out.push(Ratio {
                policy: label.clone(),
                baseline: name.clone(),
                p95_ratio: pair(best, other),
            });
            out.push(Ratio {
                policy: name.clone(),
                baseline: label.clone(),
                p95_ratio: pair(other, best),
            });
        }
    }
    out
}
