//! The emulated host's own CPU load (the simulator's `self_load`): the apps of one emulated host
//! share a directory in which each keeps its requests in service (`<container>.busy`), and when
//! work starts an app adds the CPU term of the scenario's interference model over the host's
//! utilisation, the lab's background share (`background-cpu`, rewritten every second from the
//! host's schedule) plus every container's busy servers over the host's cores:
//!
//! ```text
//! multiplier = rest + a_cpu * g(u),   u = background + busy / cores,   g(u) = u / (1 - min(u, cap))
//! ```
//!
//! where `rest` is the interference file's value, which the lab then writes without the CPU
//! term. Busy files are replaced atomically (written beside, then renamed), so a reader sees the
//! old count or the new one; a file that cannot be read counts as idle.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::tools::support::write_atomically;

/// File of the host's background CPU utilisation, in [0, 1].
pub const BACKGROUND: &str = "background-cpu";

/// Suffix of a container's busy file.
const BUSY: &str = ".busy";

/// One app's view of its emulated host.
#[derive(Debug)]
pub struct HostLoad {
    dir: PathBuf,
    own: PathBuf,
    cores: f64,
    a_cpu: f64,
    cap: f64,
    /// Serialises writes of the own file, so the last count written is the current one.
    write: Mutex<()>,
}

impl HostLoad {
    /// Joins the host directory `dir` (created if missing) as `container`, idle.
    pub fn join(
        dir: &Path,
        container: &str,
        cores: u32,
        a_cpu: f64,
        cap: f64,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let me = Self {
            dir: dir.to_path_buf(),
            own: dir.join(format!("{container}{BUSY}")),
            cores: f64::from(cores.max(1)),
            a_cpu,
            cap: cap.clamp(0.0, 0.999),
            write: Mutex::new(()),
        };
        me.publish(|| 0);
        Ok(me)
    }

    /// Writes the count `busy` returns (read under the write lock).
    pub fn publish(&self, busy: impl Fn() -> usize) {
        let _g = self.write.lock();
        if let Err(e) = write_atomically(&self.own, &format!("{}\n", busy())) {
            tracing::warn!(path = %self.own.display(), error = %e, "cannot publish busy servers");
        }
    }

    /// Busy servers of every container on the host, this one included.
    pub fn busy(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(BUSY))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| t.trim().parse::<usize>().ok())
            .sum()
    }

    /// The host's background CPU utilisation; 0 until the lab writes one.
    fn background(&self) -> f64 {
        std::fs::read_to_string(self.dir.join(BACKGROUND))
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .map_or(0.0, |v| v.clamp(0.0, 1.0))
    }

    /// The CPU term `a_cpu * g(u)` now.
    pub fn cpu_term(&self) -> f64 {
        cpu_term(
            self.background(),
            self.busy(),
            self.cores,
            self.a_cpu,
            self.cap,
        )
    }
}

/// `a_cpu * g(background + busy / cores)`, `g` capped at `cap`.
pub fn cpu_term(background: f64, busy: usize, cores: f64, a_cpu: f64, cap: f64) -> f64 {
    let u = (background + busy as f64 / cores).clamp(0.0, cap);
    a_cpu * u / (1.0 - u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_container_of_the_host_and_the_background() {
        // The simulator's numbers: two cores, a_cpu 0.5, cap 0.75.
        assert!((cpu_term(0.0, 1, 2.0, 0.5, 0.75) - 0.5).abs() < 1e-12);
        assert!((cpu_term(0.0, 2, 2.0, 0.5, 0.75) - 1.5).abs() < 1e-12);
        assert!((cpu_term(0.2, 1, 2.0, 0.5, 0.75) - 0.5 * 0.7 / 0.3).abs() < 1e-12);
        let dir = std::env::temp_dir().join(format!("loadshift-hostload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = HostLoad::join(&dir, "a", 2, 0.5, 0.75).unwrap();
        let b = HostLoad::join(&dir, "b", 2, 0.5, 0.75).unwrap();
        assert_eq!(a.busy(), 0);
        a.publish(|| 1);
        assert!((b.cpu_term() - 0.5).abs() < 1e-12);
        b.publish(|| 1);
        std::fs::write(dir.join(BACKGROUND), "0.1\n").unwrap();
        assert_eq!(a.busy(), 2);
        assert!((a.cpu_term() - 1.5).abs() < 1e-12, "capped at 0.75");
        // A stray temporary file is not a container.
        std::fs::write(dir.join("c.busy.tmp"), "5\n").unwrap();
        assert_eq!(a.busy(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
