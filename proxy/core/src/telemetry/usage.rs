//! What the container beside a proxy uses, read from its cgroup (v2): CPU from `cpu.stat`'s
//! `usage_usec` deltas, memory from `memory.current`, and the limits from `cpu.max` and
//! `memory.max`. Parsing only; the proxy's sampler reads the files.

use serde::{Deserialize, Serialize};

/// Resource use of one container; each field `None` where unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerUsage {
    /// CPU in cores (1.0 = one core busy) over the last sampling interval.
    pub cpu_cores: Option<f64>,
    /// Memory in use, MiB.
    pub memory_mib: Option<f64>,
    /// The container's CPU limit in cores; `None` without a limit.
    pub cpu_limit_cores: Option<f64>,
    /// The container's memory limit, MiB; `None` without a limit.
    pub memory_limit_mib: Option<f64>,
}

const MIB: f64 = 1024.0 * 1024.0;

/// `usage_usec` from `cpu.stat`.
pub fn parse_cpu_usage_usec(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// The limit in cores from `cpu.max` (`"<quota> <period>"` in microseconds, or `"max <period>"`
/// without a limit).
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut f = text.split_whitespace();
    let quota: f64 = f.next()?.parse().ok()?;
    let period: f64 = f.next()?.parse().ok()?;
    (quota.is_finite() && quota > 0.0 && period.is_finite() && period > 0.0).then(|| quota / period)
}

/// MiB from `memory.current` or `memory.max` (`max` without a limit).
pub fn parse_memory_bytes(text: &str) -> Option<f64> {
    let v: u64 = text.trim().parse().ok()?;
    Some(v as f64 / MIB)
}

/// Cores used between two `usage_usec` readings `elapsed_s` apart.
pub fn cpu_cores(prev_usec: u64, cur_usec: u64, elapsed_s: f64) -> Option<f64> {
    (elapsed_s > 0.0 && cur_usec >= prev_usec)
        .then(|| (cur_usec - prev_usec) as f64 / 1e6 / elapsed_s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_cgroup_v2_files() {
        let stat = "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n";
        assert_eq!(parse_cpu_usage_usec(stat), Some(1_500_000));
        assert_eq!(parse_cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_memory_bytes("1048576\n"), Some(1.0));
        assert_eq!(parse_memory_bytes("max\n"), None);
        assert_eq!(cpu_cores(1_000_000, 1_500_000, 1.0), Some(0.5));
        assert_eq!(
            cpu_cores(2, 1, 1.0),
            None,
            "a reset counter reads as unknown"
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,120}") {
            let _ = parse_cpu_usage_usec(&s);
            let _ = parse_cpu_max(&s);
            let _ = parse_memory_bytes(&s);
        }
    }
}
