//! Reads host pressure from `/proc` for reports and `/metrics`; the parsing is the core's
//! ([`loadshift_core::telemetry::pressure`]).

use loadshift_core::telemetry::pressure::{
    CpuTimes, HostPressure, cpu_util, parse_proc_stat, parse_psi_some_avg10,
};

/// Reads host pressure from `/proc`.
#[derive(Debug, Default)]
pub struct HostSampler {
    prev: Option<CpuTimes>,
}

impl HostSampler {
    /// Takes one reading; the first call reports CPU since boot.
    pub fn sample(&mut self) -> HostPressure {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let cur = read("/proc/stat").as_deref().and_then(parse_proc_stat);
        let cpu = match (self.prev, cur) {
            (Some(p), Some(c)) => cpu_util(p, c),
            (None, Some(c)) => cpu_util(CpuTimes::default(), c),
            _ => 0.0,
        };
        if cur.is_some() {
            self.prev = cur;
        }
        let psi = |p: &str| read(p).as_deref().and_then(parse_psi_some_avg10);
        HostPressure {
            cpu_util: cpu,
            psi_cpu: psi("/proc/pressure/cpu"),
            psi_memory: psi("/proc/pressure/memory"),
            psi_io: psi("/proc/pressure/io"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_reads_this_host() {
        let p = HostSampler::default().sample();
        assert!((0.0..=1.0).contains(&p.cpu_util));
    }
}
