//! Where endpoints come from. The control plane asks a [`Discovery`] source for every service's
//! endpoints and watches it for changes; the static source serves the config file's lists, the
//! file source re-reads an endpoints file that an orchestrator (the lab supervisor, a script, a
//! config-management agent) rewrites as containers come and go, and a Kubernetes EndpointSlice
//! source plugs in behind the same trait.

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use loadshift_core::endpoint::Endpoint;
use tokio::sync::watch;

use crate::config::{ConfigError, ControlConfig, EndpointConfig, FileDiscoveryConfig};

/// Every service's endpoints at one moment.
pub type EndpointMap = Arc<BTreeMap<String, Vec<Endpoint>>>;

/// A source of endpoints.
pub trait Discovery: Send + Sync + 'static {
    /// The current endpoints; the receiver wakes on every change.
    fn watch(&self) -> watch::Receiver<EndpointMap>;
}

/// Endpoints fixed by the config file.
#[derive(Debug)]
pub struct StaticDiscovery {
    tx: watch::Sender<EndpointMap>,
}

impl StaticDiscovery {
    pub fn from_config(cfg: &ControlConfig) -> Self {
        let map = cfg
            .services
            .iter()
            .map(|(name, s)| {
                let eps = s.endpoints.iter().map(endpoint).collect();
                (name.clone(), eps)
            })
            .collect();
        Self {
            tx: watch::Sender::new(Arc::new(map)),
        }
    }
}

impl Discovery for StaticDiscovery {
    fn watch(&self) -> watch::Receiver<EndpointMap> {
        self.tx.subscribe()
    }
}

/// Builds the source `cfg` asks for: a [`FileDiscovery`] with a `discovery:` section, else the
/// static lists. Must run inside a tokio runtime when the file source is chosen (it polls).
pub fn from_config(cfg: &ControlConfig) -> Result<Box<dyn Discovery>, ConfigError> {
    match &cfg.discovery {
        None => Ok(Box::new(StaticDiscovery::from_config(cfg))),
        Some(d) => Ok(Box::new(FileDiscovery::start(cfg, d)?)),
    }
}

fn invalid(field: &str, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Endpoints from a file an operator or an orchestrator rewrites (atomically: write a sibling,
/// rename it over). The file's list of a service replaces the config's static list for it;
/// services the file does not name keep their static endpoints; services the config does not
/// know are ignored (they have no policy). A file that stops parsing keeps the last good
/// endpoints (logged); a change reaches every connected proxy as an `Endpoints` update within
/// `poll_ms` plus one push.
#[derive(Debug)]
pub struct FileDiscovery {
    tx: watch::Sender<EndpointMap>,
    poller: tokio::task::JoinHandle<()>,
}

impl Drop for FileDiscovery {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// One service's endpoints in the config's format.
type FileLists = BTreeMap<String, Vec<EndpointConfig>>;

fn endpoint(e: &EndpointConfig) -> Endpoint {
    let container = e.container.clone().unwrap_or_else(|| e.addr.to_string());
    Endpoint::new(e.addr, e.host.clone(), e.zone.clone(), container)
}

/// Parses the file's text and merges it over the static lists.
fn merge(
    statics: &BTreeMap<String, Vec<Endpoint>>,
    text: &str,
) -> Result<BTreeMap<String, Vec<Endpoint>>, String> {
    let lists: FileLists = if text.trim().is_empty() {
        FileLists::new()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
    };
    let mut out = statics.clone();
    for (name, list) in lists {
        let Some(slot) = out.get_mut(&name) else {
            tracing::warn!(service = %name, "endpoints file names a service the config does not know; ignored");
            continue;
        };
        let mut seen = HashSet::new();
        for e in &list {
            if !seen.insert(e.addr) {
                return Err(format!("{name}: {} listed twice", e.addr));
            }
        }
        *slot = list.iter().map(endpoint).collect();
    }
    Ok(out)
}

impl FileDiscovery {
    /// Reads the file once (failing if it is missing or invalid) and starts polling it.
    pub fn start(cfg: &ControlConfig, d: &FileDiscoveryConfig) -> Result<Self, ConfigError> {
        d.validate()?;
        let statics = StaticDiscovery::from_config(cfg).tx.borrow().clone();
        let field = "discovery.file";
        let text = std::fs::read_to_string(&d.file)
            .map_err(|e| invalid(field, d.file.display(), format!("cannot read: {e}")))?;
        let first = merge(&statics, &text).map_err(|e| invalid(field, d.file.display(), e))?;
        let tx = watch::Sender::new(Arc::new(first));
        let poller = tokio::spawn(poll(
            d.file.clone(),
            Duration::from_millis(d.poll_ms),
            statics,
            text,
            tx.clone(),
        ));
        Ok(Self { tx, poller })
    }
}

async fn poll(
    path: PathBuf,
    every: Duration,
    statics: Arc<BTreeMap<String, Vec<Endpoint>>>,
    mut last: String,
    tx: watch::Sender<EndpointMap>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the endpoints file; keeping the last endpoints");
                continue;
            }
        };
        if text == last {
            continue;
        }
        match merge(&statics, &text) {
            Ok(map) => {
                tx.send_if_modified(|cur| {
                    let changed = **cur != map;
                    if changed {
                        *cur = Arc::new(map);
                    }
                    changed
                });
                tracing::info!(file = %path.display(), "endpoints file changed");
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "invalid endpoints file; keeping the last endpoints");
            }
        }
        last = text;
    }
}

impl Discovery for FileDiscovery {
    fn watch(&self) -> watch::Receiver<EndpointMap> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_changes_reach_watchers_and_bad_files_keep_the_last_endpoints() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("endpoints.yaml");
        std::fs::write(
            &file,
            "api:\n  - { addr: 127.0.0.1:1, host: h1, container: api-1 }\n",
        )
        .expect("write");
        let mut cfg = ControlConfig::new("127.0.0.1:0".parse().expect("addr"), "/t");
        let yaml = "endpoints: [ { addr: 127.0.0.1:9 } ]";
        for name in ["api", "db"] {
            cfg.services
                .insert(name.into(), serde_yaml_ng::from_str(yaml).expect("svc"));
        }
        let d = FileDiscoveryConfig {
            file: file.clone(),
            poll_ms: 20,
        };
        let disc = FileDiscovery::start(&cfg, &d).expect("start");
        let mut rx = disc.watch();
        let keys = |m: &EndpointMap, s: &str| -> Vec<String> {
            m[s].iter().map(|e| e.key().to_string()).collect()
        };
        {
            let m = rx.borrow_and_update().clone();
            assert_eq!(keys(&m, "api"), ["127.0.0.1:1"]);
            assert_eq!(m["api"][0].container, "api-1");
            // Not in the file: the static list stays.
            assert_eq!(keys(&m, "db"), ["127.0.0.1:9"]);
        }
        std::fs::write(
            &file,
            "api:\n  - { addr: 127.0.0.1:1 }\n  - { addr: 127.0.0.1:2 }\nghost: []\n",
        )
        .expect("write");
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("change within 5 s")
            .expect("sender alive");
        assert_eq!(
            keys(&rx.borrow_and_update(), "api"),
            ["127.0.0.1:1", "127.0.0.1:2"]
        );
        // A duplicate address is refused whole; nothing changes.
        std::fs::write(
            &file,
            "api:\n  - { addr: 127.0.0.1:1 }\n  - { addr: 127.0.0.1:1 }\n",
        )
        .expect("write");
        let r = tokio::time::timeout(Duration::from_millis(300), rx.changed()).await;
        assert!(r.is_err(), "an invalid file must not publish");
        assert_eq!(keys(&rx.borrow(), "api").len(), 2);

        // Start-up refuses a missing file with the field named.
        let e = FileDiscovery::start(
            &cfg,
            &FileDiscoveryConfig {
                file: dir.path().join("missing.yaml"),
                poll_ms: 20,
            },
        )
        .expect_err("missing file");
        assert!(e.to_string().contains("discovery.file"), "{e}");
    }
}
