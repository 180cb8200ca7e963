//! Where endpoints come from. The control plane asks a [`Discovery`] source for every service's
//! endpoints and watches it for changes; the static source serves the config file's lists, and a
//! Kubernetes EndpointSlice source plugs in behind the same trait.

use std::{collections::BTreeMap, sync::Arc};

use loadshift_proxy::endpoint::Endpoint;
use tokio::sync::watch;

use crate::config::ControlConfig;

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
                let eps = s
                    .endpoints
                    .iter()
                    .map(|e| {
                        let container = e.container.clone().unwrap_or_else(|| e.addr.to_string());
                        Endpoint::new(e.addr, e.host.clone(), e.zone.clone(), container)
                    })
                    .collect();
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
