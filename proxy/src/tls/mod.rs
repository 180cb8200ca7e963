//! TLS with rustls (ring provider): termination on the outbound listener (`outbound.tls`: SNI
//! picks the certificate, ALPN offers h2 and HTTP/1.1, optional client certificates), TLS to a
//! service's endpoints (`services[].tls`), and mTLS between sidecars (`mesh_tls`: the outbound
//! side originates, the inbound side terminates, both check SPIFFE IDs in one trust domain,
//! [`crate::spiffe`], `verify`). Everything is read and checked when the proxy starts, before
//! anything binds ([`Tls::build`]); certificate pairs are watched and swapped while it runs
//! (`reload`).
//!
//! After the handshake a client connection takes the plaintext path (`crate::downstream`), with
//! `crate::forwarding::Secure` on each of its requests; an upstream TLS connection is pooled
//! by (address, [`TlsRef`]) and carries HTTP/1.1 or h2 as ALPN chose (`crate::upstream`).

mod client;
mod files;
mod reload;
mod server;
mod verify;

use std::{path::Path, sync::Arc};

use arc_swap::ArcSwap;
use rustls::{crypto::CryptoProvider, sign::CertifiedKey};

pub use client::{Originate, Wants};
pub use reload::Pairs;
pub use server::ServerTls;

use crate::{FastMap, config::ProxyConfig, side::Side};

/// A certificate and key that the reloader may swap.
pub type Slot = Arc<ArcSwap<CertifiedKey>>;

/// The crypto provider: ring (builds with a C compiler alone; `docs/dependencies.md`).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// TLS material the proxy cannot start with, naming the field that points at it.
#[derive(Debug, thiserror::Error)]
#[error("{field}{}: {reason}", value.as_ref().map(|v| format!(" = {v}")).unwrap_or_default())]
pub struct TlsError {
    pub field: String,
    pub value: Option<String>,
    pub reason: String,
}

impl TlsError {
    fn new(field: &str, path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            value: Some(path.as_ref().display().to_string()),
            reason: reason.into(),
        }
    }

    fn setup(field: &str, e: rustls::Error) -> Self {
        Self {
            field: field.into(),
            value: None,
            reason: e.to_string(),
        }
    }
}

/// Which TLS a pooled upstream connection speaks: plaintext or one of [`Upstreams`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsRef(u16);

impl TlsRef {
    pub const PLAIN: Self = Self(0);

    pub fn is_plain(self) -> bool {
        self == Self::PLAIN
    }
}

/// TLS towards upstreams: per service, and the mesh's for the rest of the outbound side.
#[derive(Debug, Default)]
pub struct Upstreams {
    list: Vec<Originate>,
    by_service: FastMap<String, TlsRef>,
    /// For outbound services without their own: the mesh's, or plaintext.
    outbound: TlsRef,
}

impl Upstreams {
    /// What a request to service `name` uses. The inbound side talks to the local app in
    /// plaintext.
    pub(crate) fn for_service(&self, side: Side, name: &str) -> TlsRef {
        match side {
            Side::Inbound => TlsRef::PLAIN,
            // The common cases (no TLS anywhere, or the mesh's for all) without a lookup.
            Side::Outbound if self.by_service.is_empty() => self.outbound,
            Side::Outbound => self.by_service.get(name).copied().unwrap_or(self.outbound),
        }
    }

    pub fn get(&self, r: TlsRef) -> Option<&Originate> {
        usize::from(r.0)
            .checked_sub(1)
            .and_then(|i| self.list.get(i))
    }

    fn add(&mut self, o: Originate) -> TlsRef {
        self.list.push(o);
        // One per service at most, and services are fewer than 2^16.
        TlsRef(u16::try_from(self.list.len()).unwrap_or(u16::MAX))
    }
}

/// Everything TLS a proxy runs with, built before anything binds.
#[derive(Debug, Default)]
pub struct Tls {
    pub outbound: Option<Arc<ServerTls>>,
    pub inbound: Option<Arc<ServerTls>>,
    pub upstreams: Arc<Upstreams>,
    /// The certificate pairs, for [`Pairs::watch`].
    pub pairs: Pairs,
}

impl Tls {
    /// Reads every file the config names and checks it; the first failure names its field.
    pub fn build(cfg: &ProxyConfig) -> Result<Self, TlsError> {
        if cfg.outbound.tls.is_none()
            && cfg.mesh_tls.is_none()
            && cfg.services.iter().all(|s| s.tls.is_none())
        {
            return Ok(Self::default());
        }
        let provider = provider();
        let mut pairs = Pairs::default();
        let outbound = match &cfg.outbound.tls {
            Some(t) => Some(Arc::new(ServerTls::listener(
                t,
                "outbound.tls",
                &mut pairs,
                &provider,
            )?)),
            None => None,
        };
        let mut upstreams = Upstreams::default();
        let inbound = match &cfg.mesh_tls {
            Some(m) => {
                let inbound = ServerTls::mesh(m, &mut pairs, &provider)?;
                upstreams.outbound = upstreams.add(Originate::mesh(m, &mut pairs, &provider)?);
                Some(Arc::new(inbound))
            }
            None => None,
        };
        for (i, s) in cfg.services.iter().enumerate() {
            if let Some(t) = &s.tls {
                let at = format!("services[{i}].tls");
                let r = upstreams.add(Originate::upstream(t, &at, &mut pairs, &provider)?);
                upstreams.by_service.insert(s.name.clone(), r);
            }
        }
        Ok(Self {
            outbound,
            inbound,
            upstreams: Arc::new(upstreams),
            pairs,
        })
    }
}

/// Reads a certificate chain and key as the proxy would (`field` names them in errors) and
/// checks that the key is the certificate's.
pub fn check_pair(field: &str, cert: &Path, key: &Path) -> Result<(), TlsError> {
    files::PairFiles::new(field, cert, key)
        .load(&provider())
        .map(drop)
}

/// `/stats`' `tls`: whether sidecars talk mTLS (`mesh`) or plaintext (`off`).
pub fn mesh_mode(cfg: &ProxyConfig) -> &'static str {
    if cfg.mesh_tls.is_some() {
        "mesh"
    } else {
        "off"
    }
}
