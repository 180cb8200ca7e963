//! Reads host pressure from `/proc`, and the local app's resource use from its cgroup, for
//! reports and `/metrics`; the parsing is the core's ([`loadshift_core::telemetry::pressure`],
//! [`loadshift_core::telemetry::usage`]).

use std::{path::PathBuf, time::Instant};

use loadshift_core::telemetry::{
    pressure::{CpuTimes, HostPressure, cpu_util, parse_proc_stat, parse_psi_some_avg10},
    usage::{ContainerUsage, cpu_cores, parse_cpu_max, parse_cpu_usage_usec, parse_memory_bytes},
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

/// Reads one cgroup v2 directory.
#[derive(Debug)]
pub struct UsageSampler {
    dir: PathBuf,
    prev: Option<(Instant, u64)>,
}

impl UsageSampler {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, prev: None }
    }

    /// Takes one reading; CPU use is known from the second reading on.
    pub fn sample(&mut self) -> ContainerUsage {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).ok();
        let now = Instant::now();
        let usec = read("cpu.stat").as_deref().and_then(parse_cpu_usage_usec);
        let cpu = match (self.prev, usec) {
            (Some((t, prev)), Some(cur)) => cpu_cores(prev, cur, (now - t).as_secs_f64()),
            _ => None,
        };
        if let Some(u) = usec {
            self.prev = Some((now, u));
        }
        ContainerUsage {
            cpu_cores: cpu,
            memory_mib: read("memory.current")
                .as_deref()
                .and_then(parse_memory_bytes),
            cpu_limit_cores: read("cpu.max").as_deref().and_then(parse_cpu_max),
            memory_limit_mib: read("memory.max").as_deref().and_then(parse_memory_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_sampler_reads_a_cgroup_directory() {
        let dir = std::env::temp_dir().join(format!("loadshift-cgroup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |f: &str, v: &str| std::fs::write(dir.join(f), v).unwrap();
        write("cpu.stat", "usage_usec 1000000\n");
        write("memory.current", "2097152\n");
        write("cpu.max", "200000 100000\n");
        write("memory.max", "max\n");
        let mut s = UsageSampler::new(dir.clone());
        let first = s.sample();
        assert_eq!(first.cpu_cores, None, "one reading has no rate");
        assert_eq!(first.memory_mib, Some(2.0));
        assert_eq!(first.cpu_limit_cores, Some(2.0));
        assert_eq!(first.memory_limit_mib, None);
        write("cpu.stat", "usage_usec 1100000\n");
        let second = s.sample();
        assert!(second.cpu_cores.is_some_and(|c| c > 0.0), "{second:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sampler_reads_this_host() {
        let p = HostSampler::default().sample();
        assert!((0.0..=1.0).contains(&p.cpu_util));
    }
}
