//! TLS origination to upstreams: per service with its own `tls`, and mTLS to every mesh endpoint
//! with `mesh_tls`. ALPN follows the connection the pool wants: `h2` for its HTTP/2 connection,
//! `http/1.1` for HTTP/1.1 ones, both for the `protocol: auto` probe. A client certificate is
//! read from a slot the reloader swaps ([`super::reload`]), so new connections present a rotated
//! one.

use std::{net::SocketAddr, sync::Arc};

use rustls::{
    ClientConfig, client::ResolvesClientCert, crypto::CryptoProvider, sign::CertifiedKey,
};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

use super::{Pairs, Slot, TlsError, files::PairFiles, files::roots, verify::MeshServer};
use crate::config::{MeshTls, UpstreamTls};

/// What a connection is for, which decides the protocols offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wants {
    Http1,
    Http2,
    /// The `protocol: auto` probe: whichever the endpoint picks.
    Either,
}

/// How to open TLS to one service's endpoints.
pub struct Originate {
    http1: TlsConnector,
    http2: TlsConnector,
    either: TlsConnector,
    /// Sent as SNI and checked against the certificate; `None`: the endpoint's address.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Originate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Originate")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Originate {
    /// A service's `tls`: its CA, optional name and client certificate.
    pub(super) fn upstream(
        t: &UpstreamTls,
        at: &str,
        pairs: &mut Pairs,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let field = format!("{at}.ca_file");
        let base = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::setup(at, e))?
            .with_root_certificates(roots(&field, &t.ca_file)?);
        let config = match (&t.cert_file, &t.key_file) {
            (Some(c), Some(k)) => {
                let slot = pairs.slot(PairFiles::new(at, c, k), provider)?;
                base.with_client_cert_resolver(Arc::new(Presents(slot)))
            }
            _ => base.with_no_client_auth(),
        };
        // Checked by config validation.
        let server_name = t
            .server_name
            .as_deref()
            .and_then(|n| ServerName::try_from(n.to_string()).ok());
        Ok(Self::with(config, server_name))
    }

    /// `mesh_tls`: the peer must chain to the mesh CA and carry a SPIFFE ID in the trust domain;
    /// this workload's certificate is presented.
    pub(super) fn mesh(
        m: &MeshTls,
        pairs: &mut Pairs,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let slot = pairs.slot(
            PairFiles::new("mesh_tls", &m.cert_file, &m.key_file),
            provider,
        )?;
        let verifier = MeshServer::new(
            roots("mesh_tls.ca_file", &m.ca_file)?,
            &m.trust_domain,
            provider.signature_verification_algorithms,
        );
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::setup("mesh_tls", e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(Presents(slot)));
        Ok(Self::with(config, None))
    }

    fn with(base: ClientConfig, server_name: Option<ServerName<'static>>) -> Self {
        let alpn = |protocols: &[&[u8]]| {
            let mut c = base.clone();
            c.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
            TlsConnector::from(Arc::new(c))
        };
        Self {
            http1: alpn(&[b"http/1.1"]),
            http2: alpn(&[b"h2"]),
            either: alpn(&[b"h2", b"http/1.1"]),
            server_name,
        }
    }

    /// Runs the handshake on a connected socket to `addr`.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        wants: Wants,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let connector = match wants {
            Wants::Http1 => &self.http1,
            Wants::Http2 => &self.http2,
            Wants::Either => &self.either,
        };
        connector.connect(name, tcp).await
    }
}

/// Presents the certificate in a slot to every server that asks.
#[derive(Debug)]
struct Presents(Slot);

impl ResolvesClientCert for Presents {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
