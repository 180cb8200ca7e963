//! Child processes of a benchmark run: started pinned to a core, killed when their guard drops
//! (normal exit, error or panic), with free loopback ports chosen by the OS and RSS read from
//! `/proc/PID/status`.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running child, killed and reaped on drop.
#[derive(Debug)]
pub struct Guard {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Guard {
    /// Starts `program args` under `taskset -c CORE`, stdout and stderr to `DIR/NAME.log`.
    pub fn spawn_pinned(
        name: &str,
        core: u32,
        program: &Path,
        args: &[&str],
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(core.to_string()).arg(program).args(args);
        Self::start(name, cmd, dir)
    }

    /// Starts `program args` unpinned, stdout and stderr to `DIR/NAME.log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], dir: &Path) -> anyhow::Result<Self> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Self::start(name, cmd, dir)
    }

    fn start(name: &str, mut cmd: Command, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log,
        })
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's pid (`taskset` execs the program, so this is the program's pid).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most 10 s) until `addr` accepts connections; fails early if the child exits.
    pub fn wait_ready(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status} before listening; log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "{} did not listen on {addr} within 10 s; log:\n{}",
            self.name,
            self.log_tail()
        )
    }

    /// The last 20 lines of the child's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmRSS` of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// A loopback port free right now: bound on port 0, then released for a peer to bind. Another
/// process could take it in between; startup then fails with a clear error instead of measuring
/// the wrong server.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Finds `name` on `PATH` (and in `/usr/sbin`, where Debian installs haproxy and nginx).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_rss() {
        let kib = rss_kib(std::process::id()).expect("rss");
        assert!(kib > 100, "{kib}");
    }

    #[test]
    fn guard_kills_its_child_on_drop() {
        let dir = std::env::temp_dir();
        let sleep = which("sleep").expect("sleep on PATH");
        let guard = Guard::spawn_pinned("sleeper", 0, &sleep, &["30"], &dir).expect("spawn");
        let pid = guard.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(guard);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} still running"
        );
    }
}
