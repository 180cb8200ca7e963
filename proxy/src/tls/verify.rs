//! Peer verification between sidecars. A sidecar reaches its peers by IP address and knows them
//! by SPIFFE ID, not by DNS name, so a peer's certificate is accepted when it chains to the mesh
//! CA (webpki, as for any certificate: validity, key usage, signatures) and carries a URI SAN in
//! the trust domain ([`crate::spiffe`]), whichever address it answered on. The outbound side
//! checks servers with [`MeshServer`]; the inbound side checks clients with rustls's own client
//! verifier wrapped in [`MeshClient`], which adds the same trust-domain rule.

use std::sync::Arc;

use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        verify_server_cert_signed_by_trust_anchor,
    },
    crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature},
    server::{
        ParsedCertificate,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::spiffe;

/// Refusal of a certificate that chains to the CA but names no workload of the trust domain.
fn outside(trust_domain: &str) -> rustls::Error {
    #[derive(Debug)]
    struct Outside(String);
    impl std::fmt::Display for Outside {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "no spiffe://{}/ URI SAN in the certificate", self.0)
        }
    }
    impl std::error::Error for Outside {}
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        Outside(trust_domain.to_string()),
    ))))
}

/// The outbound side's check of the sidecar it connected to.
#[derive(Debug)]
pub struct MeshServer {
    roots: Arc<RootCertStore>,
    trust_domain: String,
    algs: WebPkiSupportedAlgorithms,
}

impl MeshServer {
    pub fn new(
        roots: Arc<RootCertStore>,
        trust_domain: &str,
        algs: WebPkiSupportedAlgorithms,
    ) -> Self {
        Self {
            roots,
            trust_domain: trust_domain.into(),
            algs,
        }
    }
}

impl ServerCertVerifier for MeshServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        // An address: the SPIFFE ID, not the name it was reached by, says who the peer is.
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        match spiffe::identity_in(end_entity, &self.trust_domain) {
            Some(_) => Ok(ServerCertVerified::assertion()),
            None => Err(outside(&self.trust_domain)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The inbound side's check of a calling sidecar: rustls's client verifier (chain to the CA,
/// client-auth usage; a certificate is mandatory) and a SPIFFE ID in the trust domain.
#[derive(Debug)]
pub struct MeshClient {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
}

impl MeshClient {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, trust_domain: &str) -> Self {
        Self {
            inner,
            trust_domain: trust_domain.into(),
        }
    }
}

impl ClientCertVerifier for MeshClient {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match spiffe::identity_in(end_entity, &self.trust_domain) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => Err(outside(&self.trust_domain)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
