//! An upstream endpoint and its placement labels.

use std::net::SocketAddr;

use serde::Serialize;

/// One upstream container's address with the labels the planners group by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// `ip:port` rendering of `addr`, the key plans use.
    #[serde(skip)]
    key: String,
    /// Node the container runs on (the papers' "host").
    pub host: String,
    /// Zone, region or cloud.
    pub zone: String,
    /// Container id.
    pub container: String,
}

impl Endpoint {
    pub fn new(
        addr: SocketAddr,
        host: impl Into<String>,
        zone: impl Into<String>,
        container: impl Into<String>,
    ) -> Self {
        Self {
            addr,
            key: addr.to_string(),
            host: host.into(),
            zone: zone.into(),
            container: container.into(),
        }
    }

    /// The `ip:port` key plans and reports use for this endpoint.
    pub fn key(&self) -> &str {
        &self.key
    }
}
