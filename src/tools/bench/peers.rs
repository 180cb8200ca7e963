//! The servers of `loadshift bench proxy`: the upstream nginx and the three proxies, rendered
//! from the templates in `benches/peers/` with OS-chosen ports and started pinned to a core.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::tools::support::process::{Guard, free_port, which};

const UPSTREAM_NGINX: &str = include_str!("../../../benches/peers/upstream-nginx.conf");
const HAPROXY: &str = include_str!("../../../benches/peers/haproxy.cfg");
const NGINX_PROXY: &str = include_str!("../../../benches/peers/nginx-proxy.conf");
const LOADSHIFT: &str = include_str!("../../../benches/peers/loadshift-proxy.yaml");

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The upstream itself, no proxy.
    Direct,
    /// `loadshift proxy`, standalone, one worker.
    Loadshift,
    /// HAProxy, one thread, `http-reuse always`.
    Haproxy,
    /// nginx, one worker, upstream keepalive.
    Nginx,
}

impl Target {
    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "upstream direct",
            Self::Loadshift => "loadshift",
            Self::Haproxy => "haproxy",
            Self::Nginx => "nginx",
        }
    }
}

/// A started server and where it listens.
#[derive(Debug)]
pub struct Server {
    /// The process (killed on drop).
    pub guard: Guard,
    /// Its listening address.
    pub addr: SocketAddr,
}

fn render(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(template.to_string(), |t, (k, v)| {
        t.replace(&format!("{{{{{k}}}}}"), v)
    })
}

fn write(dir: &Path, name: &str, content: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, content).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

fn find(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    match which(name) {
        Some(p) => Ok(p),
        None => bail!(
            "{name} not found; install it with `apt-get install -y {package}` (see benches/README.md)"
        ),
    }
}

/// Starts the upstream nginx (`return 200`) pinned to `core`.
pub fn upstream(dir: &Path, core: u32) -> anyhow::Result<Server> {
    let nginx = find("nginx", "nginx-light")?;
    let port = free_port()?;
    let conf = render(
        UPSTREAM_NGINX,
        &[
            ("DIR", dir.display().to_string()),
            ("PORT", port.to_string()),
        ],
    );
    let path = write(dir, "upstream-nginx.conf", &conf)?;
    start(
        &nginx,
        "upstream-nginx",
        core,
        &nginx_args(dir, &path),
        port,
        dir,
    )
}

fn nginx_args(dir: &Path, conf: &Path) -> Vec<String> {
    // -e sends the startup log away from /var/log, which may not be writable.
    vec![
        "-p".into(),
        dir.display().to_string(),
        "-e".into(),
        dir.join("nginx-startup.log").display().to_string(),
        "-c".into(),
        conf.display().to_string(),
    ]
}

fn start(
    program: &Path,
    name: &str,
    core: u32,
    args: &[String],
    port: u16,
    dir: &Path,
) -> anyhow::Result<Server> {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut guard = Guard::spawn_pinned(name, core, program, &argv, dir)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    guard.wait_ready(addr)?;
    Ok(Server { guard, addr })
}

/// Starts one proxy `target` in front of `upstream`, pinned to `core`. `loadshift` is the
/// binary to run for [`Target::Loadshift`].
pub fn proxy(
    target: Target,
    dir: &Path,
    core: u32,
    upstream: SocketAddr,
    loadshift: &Path,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let up = upstream.port().to_string();
    match target {
        Target::Direct => bail!("the upstream is not a proxy"),
        Target::Haproxy => {
            let haproxy = find("haproxy", "haproxy")?;
            let conf = render(HAPROXY, &[("PORT", port.to_string()), ("UPSTREAM", up)]);
            let path = write(dir, "haproxy.cfg", &conf)?;
            start(
                &haproxy,
                "haproxy",
                core,
                &["-db".into(), "-f".into(), path.display().to_string()],
                port,
                dir,
            )
        }
        Target::Nginx => {
            let nginx = find("nginx", "nginx-light")?;
            let conf = render(
                NGINX_PROXY,
                &[
                    ("DIR", dir.display().to_string()),
                    ("PORT", port.to_string()),
                    ("UPSTREAM", up),
                ],
            );
            let path = write(dir, "nginx-proxy.conf", &conf)?;
            start(
                &nginx,
                "nginx-proxy",
                core,
                &nginx_args(dir, &path),
                port,
                dir,
            )
        }
        Target::Loadshift => {
            let admin = free_port()?;
            let conf = render(
                LOADSHIFT,
                &[
                    ("PORT", port.to_string()),
                    ("ADMIN", admin.to_string()),
                    ("UPSTREAM", up),
                ],
            );
            let path = write(dir, "loadshift-proxy.yaml", &conf)?;
            start(
                loadshift,
                "loadshift-proxy",
                core,
                &[
                    "proxy".into(),
                    "--config".into(),
                    path.display().to_string(),
                ],
                port,
                dir,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_have_no_placeholder_left_after_rendering() {
        let vars = [
            ("DIR", "/tmp/x".to_string()),
            ("PORT", "1".to_string()),
            ("ADMIN", "2".to_string()),
            ("UPSTREAM", "3".to_string()),
        ];
        for t in [UPSTREAM_NGINX, HAPROXY, NGINX_PROXY, LOADSHIFT] {
            let out = render(t, &vars);
            assert!(!out.contains("{{"), "{out}");
        }
        assert!(render(HAPROXY, &vars).contains("server s1 127.0.0.1:3"));
    }

    #[test]
    fn the_loadshift_template_is_a_valid_proxy_config() {
        let yaml = render(
            LOADSHIFT,
            &[
                ("PORT", "4140".into()),
                ("ADMIN", "9990".into()),
                ("UPSTREAM", "8081".into()),
            ],
        );
        let config: loadshift_proxy::config::ProxyConfig =
            serde_yaml_ng::from_str(&yaml).expect("parses");
        assert_eq!(config.workers, 1);
    }
}
