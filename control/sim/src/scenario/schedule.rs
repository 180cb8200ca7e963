//! A value that changes over simulated time: host interference, inter-zone RTT.
//!
//! Three shapes: a constant (`0.3`), a piecewise schedule of `[t_s, value]` points held until the
//! next point (`{steps: [[0, 0.2], [60, 0.8]]}`) or interpolated linearly between points
//! (`{linear: [[0, 10], [300, 40]]}`), and a sinusoid `mean + amplitude * sin(2 pi (t + phase_s) /
//! period_s)` (`{sinusoid: {mean: 0.5, amplitude: 0.3, period_s: 120}}`). Before the first point a
//! piecewise schedule has the first point's value; after the last, the last one's.

use serde::{Deserialize, Serialize};

/// A time-varying value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Schedule {
    /// The same value all the time.
    Constant(f64),
    /// A value that changes.
    Shaped(Shape),
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Constant(0.0)
    }
}

/// The non-constant shapes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Shape {
    /// `[t_s, value]` points, each value held until the next point.
    Steps(Vec<(f64, f64)>),
    /// `[t_s, value]` points, linear in between.
    Linear(Vec<(f64, f64)>),
    /// `mean + amplitude * sin(2 pi (t + phase_s) / period_s)`.
    Sinusoid(Sinusoid),
}

/// Parameters of a sinusoidal schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sinusoid {
    pub mean: f64,
    pub amplitude: f64,
    /// Period in seconds, > 0.
    pub period_s: f64,
    /// Shift in seconds. Default 0.
    #[serde(default)]
    pub phase_s: f64,
}

impl Schedule {
    /// The value at `t` seconds.
    pub fn at(&self, t: f64) -> f64 {
        match self {
            Schedule::Constant(v) => *v,
            Schedule::Shaped(Shape::Steps(p)) => steps_at(p, t),
            Schedule::Shaped(Shape::Linear(p)) => linear_at(p, t),
            Schedule::Shaped(Shape::Sinusoid(s)) => {
                s.mean + s.amplitude * (std::f64::consts::TAU * (t + s.phase_s) / s.period_s).sin()
            }
        }
    }

    /// Smallest and largest value the schedule takes.
    pub fn range(&self) -> (f64, f64) {
        let fold = |p: &[(f64, f64)]| {
            p.iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, v)| {
                    (lo.min(v), hi.max(v))
                })
        };
        match self {
            Schedule::Constant(v) => (*v, *v),
            Schedule::Shaped(Shape::Steps(p) | Shape::Linear(p)) => fold(p),
            Schedule::Shaped(Shape::Sinusoid(s)) => {
                (s.mean - s.amplitude.abs(), s.mean + s.amplitude.abs())
            }
        }
    }

    /// Checks the shape; the error is the reason, the caller adds the field path.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Schedule::Constant(v) if !v.is_finite() => Err("must be finite".into()),
            Schedule::Shaped(Shape::Steps(p) | Shape::Linear(p)) => {
                if p.is_empty() {
                    return Err("needs at least one [t_s, value] point".into());
                }
                if p.iter().any(|(t, v)| !t.is_finite() || !v.is_finite()) {
                    return Err("points must be finite".into());
                }
                if p.windows(2).any(|w| w[1].0 < w[0].0) {
                    return Err("point times must not decrease".into());
                }
                Ok(())
            }
            Schedule::Shaped(Shape::Sinusoid(s)) => {
                if !(s.period_s.is_finite() && s.period_s > 0.0) {
                    return Err(format!("period_s = {} must be > 0", s.period_s));
                }
                if ![s.mean, s.amplitude, s.phase_s]
                    .iter()
                    .all(|v| v.is_finite())
                {
                    return Err("mean, amplitude and phase_s must be finite".into());
                }
                Ok(())
            }
            Schedule::Constant(_) => Ok(()),
        }
    }
}

/// Value of a step schedule at `t`: the last point at or before `t`.
pub(crate) fn steps_at(p: &[(f64, f64)], t: f64) -> f64 {
    let i = p.partition_point(|&(pt, _)| pt <= t);
    match i {
        0 => p.first().map_or(0.0, |x| x.1),
        _ => p[i - 1].1,
    }
}

/// Linear interpolation between the points around `t`.
pub(crate) fn linear_at(p: &[(f64, f64)], t: f64) -> f64 {
    let i = p.partition_point(|&(pt, _)| pt <= t);
    if i == 0 {
        return p.first().map_or(0.0, |x| x.1);
    }
    if i == p.len() {
        return p[i - 1].1;
    }
    let (t0, v0) = p[i - 1];
    let (t1, v1) = p[i];
    if t1 <= t0 {
        return v1;
    }
    v0 + (v1 - v0) * (t - t0) / (t1 - t0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_evaluate() {
        let s: Schedule = serde_yaml_ng::from_str("0.3").unwrap();
        assert_eq!(s.at(100.0), 0.3);
        let s: Schedule = serde_yaml_ng::from_str("{steps: [[0, 0.2], [60, 0.8]]}").unwrap();
        assert_eq!(
            (s.at(-1.0), s.at(59.0), s.at(60.0), s.at(1e6)),
            (0.2, 0.2, 0.8, 0.8)
        );
        let s: Schedule = serde_yaml_ng::from_str("{linear: [[0, 10], [100, 40]]}").unwrap();
        assert_eq!((s.at(0.0), s.at(50.0), s.at(200.0)), (10.0, 25.0, 40.0));
        let s: Schedule =
            serde_yaml_ng::from_str("{sinusoid: {mean: 1, amplitude: 0.5, period_s: 40}}").unwrap();
        assert!((s.at(10.0) - 1.5).abs() < 1e-12);
        assert_eq!(s.range(), (0.5, 1.5));
    }

    #[test]
    fn bad_shapes_have_reasons() {
        let s: Schedule = serde_yaml_ng::from_str("{steps: [[10, 1], [5, 2]]}").unwrap();
        assert!(s.check().unwrap_err().contains("decrease"));
        let s: Schedule =
            serde_yaml_ng::from_str("{sinusoid: {mean: 1, amplitude: 1, period_s: 0}}").unwrap();
        assert!(s.check().unwrap_err().contains("period_s"));
    }
}
