//! Starts every lab process (control plane, apps, sidecars, gateway) with OS-chosen ports and owns
//! them: dropping the supervisor kills and reaps them all, whether the run ends, fails, panics or
//! is interrupted.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use loadshift_sim::scenario::Scenario;

use super::configs::{self, ControlEdit, Placed, Ports};
use super::layout::Layout;
use crate::tools::support::process::Guard;
use crate::tools::support::write_atomically;

/// Everything running for one lab run.
#[derive(Debug)]
pub struct Supervisor {
    /// Control plane, apps, sidecars, gateway: in start order, killed on drop.
    pub processes: Vec<Guard>,
    /// Containers and their addresses.
    pub placed: Vec<Placed>,
    /// Interference file per container, parallel to `placed`.
    pub interference_files: Vec<PathBuf>,
    /// Where the load generator sends.
    pub gateway: SocketAddr,
    /// The control plane's `/metrics` listener (plan pushes are read there).
    pub control_metrics: SocketAddr,
    /// The period of the control plane's fastest planner.
    pub control_interval: Duration,
}

/// Loopback ports held open until the process that binds them starts. Holding them keeps the OS
/// from handing the same port to two lab processes (a port released right after `bind(:0)` can
/// come back from the next `bind(:0)`), and keeps the window for anything else to take it short.
#[derive(Default)]
struct Reserved(Vec<TcpListener>);

impl Reserved {
    fn take(&mut self) -> anyhow::Result<SocketAddr> {
        let l = TcpListener::bind("127.0.0.1:0").context("reserve a loopback port")?;
        let addr = l.local_addr()?;
        self.0.push(l);
        Ok(addr)
    }

    /// Frees `addrs` for the process about to bind them.
    fn release(&mut self, addrs: &[SocketAddr]) {
        self.0
            .retain(|l| l.local_addr().map_or(true, |a| !addrs.contains(&a)));
    }
}

fn write_yaml(dir: &Path, name: &str, v: &impl serde::Serialize) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, configs::yaml(v)?)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

impl Supervisor {
    /// Starts the whole deployment in `dir` (configs, logs, interference files) and waits until
    /// every listener accepts connections.
    pub fn start(
        s: &Scenario,
        layout: &Layout,
        dir: &Path,
        me: &Path,
        planner: Option<&str>,
        control_edit: Option<&ControlEdit>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let token = dir.join("token");
        // The lab's control plane only listens on loopback; the token still exercises auth.
        std::fs::write(&token, format!("lab-{}\n", std::process::id()))?;

        let mut ports = Reserved::default();
        let mut placed = Vec::new();
        for spec in &layout.containers {
            let p = Ports {
                app: ports.take()?,
                inbound: ports.take()?,
                outbound: ports.take()?,
                admin: ports.take()?,
            };
            placed.push(Placed {
                spec: spec.clone(),
                ports: p,
            });
        }
        let mut this = Self {
            processes: Vec::new(),
            placed,
            interference_files: Vec::new(),
            gateway: ports.take()?,
            control_metrics: ports.take()?,
            control_interval: Duration::from_secs(5),
        };
        let control = ports.take()?;
        let gateway_admin = ports.take()?;

        ports.release(&[control, this.control_metrics]);
        let mut control_cfg = configs::control(
            s,
            &this.placed,
            control,
            this.control_metrics,
            &token,
            planner,
        );
        if let Some(edit) = control_edit {
            edit.apply(&mut control_cfg)?;
        }
        this.control_interval = configs::control_interval(&control_cfg)?;
        let path = write_yaml(dir, "control.yaml", &control_cfg)?;
        this.spawn_ready(
            "control",
            me,
            &[
                "control".into(),
                "--config".into(),
                path.display().to_string(),
            ],
            dir,
            control,
        )?;

        for i in 0..this.placed.len() {
            let p = this.placed[i].clone();
            let interference = dir.join(format!("{}.interference", p.spec.name));
            write_atomically(&interference, "1\n")?;
            this.interference_files.push(interference.clone());
            let args = configs::app_args(s, &p, &interference, None);
            ports.release(&[p.ports.app]);
            this.spawn_ready(&format!("app-{}", p.spec.name), me, &args, dir, p.ports.app)?;
            let cfg = configs::sidecar(s, &this.placed, &p, control, &token);
            let path = write_yaml(dir, &format!("sidecar-{}.yaml", p.spec.name), &cfg)?;
            let args = [
                "proxy".into(),
                "--config".into(),
                path.display().to_string(),
            ];
            ports.release(&[p.ports.inbound, p.ports.outbound, p.ports.admin]);
            this.spawn_ready(
                &format!("sidecar-{}", p.spec.name),
                me,
                &args,
                dir,
                p.ports.inbound,
            )?;
        }

        let cfg = configs::gateway(
            s,
            &this.placed,
            this.gateway,
            gateway_admin,
            control,
            &token,
        );
        let path = write_yaml(dir, "gateway.yaml", &cfg)?;
        let gateway = this.gateway;
        ports.release(&[gateway, gateway_admin]);
        this.spawn_ready(
            "gateway",
            me,
            &[
                "proxy".into(),
                "--config".into(),
                path.display().to_string(),
            ],
            dir,
            gateway,
        )?;
        Ok(this)
    }

    fn spawn_ready(
        &mut self,
        name: &str,
        me: &Path,
        args: &[String],
        dir: &Path,
        addr: SocketAddr,
    ) -> anyhow::Result<()> {
        let mut guard = Guard::spawn(name, me, args, dir)?;
        let ready = guard.wait_ready(addr);
        // Kept even when not ready, so the drop below (or the caller's) reaps it.
        self.processes.push(guard);
        ready
    }

    /// Fails if any process has exited (a crashed sidecar would silently skew the run).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for g in &mut self.processes {
            if !g.is_running() {
                bail!("{} exited during the run; log:\n{}", g.name(), g.log_tail());
            }
        }
        Ok(())
    }
}

impl Drop for Supervisor {
    /// Stops processes in reverse start order: the gateway and sidecars go before the apps they
    /// front and the control plane they report to, so nothing logs a vanished peer.
    fn drop(&mut self) {
        while let Some(p) = self.processes.pop() {
            drop(p);
        }
    }
}
