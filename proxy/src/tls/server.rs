//! TLS termination: one rustls `ServerConfig` per listener, shared by its workers. The
//! certificate is picked per handshake by [`BySni`] from slots the reloader swaps
//! ([`super::reload`]), so a rotated certificate serves every handshake after the swap while
//! connections already open keep theirs.

use std::{collections::HashMap, sync::Arc};

use http::HeaderValue;
use rustls::{
    ServerConfig, ServerConnection,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier, danger::ClientCertVerifier},
    sign::CertifiedKey,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::{Pairs, Slot, TlsError, files::PairFiles, files::roots, verify::MeshClient};
use crate::{
    config::{Alpn, ListenerTls, MeshTls},
    forwarding::Secure,
    spiffe,
};

/// A TLS listener's handshake settings.
pub struct ServerTls {
    acceptor: TlsAcceptor,
    /// What client certificates say, when they are required: `Some(trust domain)` in the mesh
    /// (the identity is the SPIFFE ID there), `Some("")` for a `client_ca_file` (the first URI
    /// SAN), `None` without client certificates.
    clients: Option<String>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("clients", &self.clients)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// `outbound.tls`: SNI certificates, an optional client CA, the configured ALPN.
    pub(super) fn listener(
        t: &ListenerTls,
        at: &str,
        pairs: &mut Pairs,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let default = match (&t.cert_file, &t.key_file) {
            (Some(c), Some(k)) => Some(pairs.slot(PairFiles::new(at, c, k), provider)?),
            _ => None,
        };
        let mut by_name = BySni {
            default,
            ..BySni::default()
        };
        for (i, s) in t.sni.iter().enumerate() {
            let slot = pairs.slot(
                PairFiles::new(format!("{at}.sni[{i}]"), &s.cert_file, &s.key_file),
                provider,
            )?;
            for n in &s.server_names {
                let n = n.to_ascii_lowercase();
                match n.strip_prefix("*.") {
                    Some(base) => by_name.wildcard.insert(base.to_string(), slot.clone()),
                    None => by_name.exact.insert(n, slot.clone()),
                };
            }
        }
        let verifier = match &t.client_ca_file {
            Some(ca) => {
                let field = format!("{at}.client_ca_file");
                let v = WebPkiClientVerifier::builder_with_provider(
                    roots(&field, ca)?,
                    provider.clone(),
                )
                .build()
                .map_err(|e| TlsError::new(&field, ca, e.to_string()))?;
                Some(v)
            }
            None => None,
        };
        let clients = verifier.is_some().then(String::new);
        let config = config(provider, verifier, Arc::new(by_name), &t.alpn)
            .map_err(|e| TlsError::setup(at, e))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            clients,
        })
    }

    /// The inbound listener with `mesh_tls`: this workload's certificate, a client certificate
    /// from the mesh CA with a SPIFFE ID in the trust domain required, h2 and HTTP/1.1.
    pub(super) fn mesh(
        m: &MeshTls,
        pairs: &mut Pairs,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let slot = pairs.slot(
            PairFiles::new("mesh_tls", &m.cert_file, &m.key_file),
            provider,
        )?;
        let inner = WebPkiClientVerifier::builder_with_provider(
            roots("mesh_tls.ca_file", &m.ca_file)?,
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::new("mesh_tls.ca_file", &m.ca_file, e.to_string()))?;
        let verifier: Arc<dyn ClientCertVerifier> =
            Arc::new(MeshClient::new(inner, &m.trust_domain));
        let resolver = BySni {
            default: Some(slot),
            ..BySni::default()
        };
        let config = config(
            provider,
            Some(verifier),
            Arc::new(resolver),
            &[Alpn::H2, Alpn::Http11],
        )
        .map_err(|e| TlsError::setup("mesh_tls", e))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            clients: Some(m.trust_domain.clone()),
        })
    }

    /// Starts the handshake on an accepted connection.
    pub fn accept(&self, tcp: TcpStream) -> tokio_rustls::Accept<TcpStream> {
        self.acceptor.accept(tcp)
    }

    /// What the request path learns from a finished handshake.
    pub fn secure(&self, conn: &ServerConnection) -> Secure {
        let peer = self.clients.as_deref().and_then(|td| {
            let der = conn.peer_certificates()?.first()?;
            let id = if td.is_empty() {
                spiffe::uri_sans(der).into_iter().next()
            } else {
                spiffe::identity_in(der, td)
            }?;
            HeaderValue::from_str(&id).ok()
        });
        Secure { peer }
    }
}

fn config(
    provider: &Arc<CryptoProvider>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    resolver: Arc<dyn ResolvesServerCert>,
    alpn: &[Alpn],
) -> Result<ServerConfig, rustls::Error> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut c = builder.with_cert_resolver(resolver);
    c.alpn_protocols = alpn.iter().map(|a| a.id().to_vec()).collect();
    Ok(c)
}

/// Picks a certificate by the server name of the client's hello: an exact name, else a wildcard
/// for its first label, else the default; none is a failed handshake.
#[derive(Debug, Default)]
struct BySni {
    exact: HashMap<String, Slot>,
    /// By the name after `*.`.
    wildcard: HashMap<String, Slot>,
    default: Option<Slot>,
}

impl BySni {
    fn pick(&self, name: Option<&str>) -> Option<&Slot> {
        let by_name = name.and_then(|n| {
            let n = n.to_ascii_lowercase();
            self.exact.get(&n).or_else(|| {
                n.split_once('.')
                    .and_then(|(_, parent)| self.wildcard.get(parent))
            })
        });
        by_name.or(self.default.as_ref())
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name())?.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::files::testing::*;

    #[test]
    fn names_pick_exact_then_wildcard_then_the_default() {
        let d = dir("sni");
        let (_, issuer) = ca();
        let p = crate::tls::provider();
        let mut pairs = Pairs::default();
        let mut slot = |name: &str| {
            let (c, k) = leaf(&issuer, &[name], None);
            let c = write(&d, &format!("{name}.pem"), &c);
            let k = write(&d, &format!("{name}.key"), &k);
            pairs.slot(PairFiles::new(name, &c, &k), &p).unwrap()
        };
        let (a, w, def) = (slot("a.example"), slot("w.example"), slot("default"));
        let sni = BySni {
            exact: HashMap::from([("a.example".to_string(), a.clone())]),
            wildcard: HashMap::from([("w.example".to_string(), w.clone())]),
            default: Some(def.clone()),
        };
        let same = |x: Option<&Slot>, y: &Slot| x.is_some_and(|x| Arc::ptr_eq(x, y));
        assert!(same(sni.pick(Some("a.example")), &a));
        assert!(same(sni.pick(Some("A.Example")), &a));
        assert!(same(sni.pick(Some("x.w.example")), &w));
        assert!(same(sni.pick(Some("w.example")), &def));
        assert!(same(sni.pick(Some("y.x.w.example")), &def));
        assert!(same(sni.pick(None), &def));
        let strict = BySni {
            default: None,
            ..sni
        };
        assert!(strict.pick(Some("other.example")).is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
