//! TLS settings: termination on a listener (`outbound.tls`), origination to a service's
//! endpoints (`services[].tls`), and mTLS between sidecars (`mesh_tls`). Only paths and names
//! live here and are checked with the rest of the config; the files are read when the proxy
//! starts (`crate::tls`: a missing file or a key that does not match its certificate refuses to
//! start, exit 64, naming the field) and again whenever they change.

use std::{collections::HashSet, path::PathBuf};

use serde::Deserialize;

use super::{ConfigError, invalid};

/// TLS termination on a listener. Connections are TLS from their first byte; after the
/// handshake they take the same path as plaintext ones (ALPN `h2`, or the HTTP/2 preface, to
/// the HTTP/2 server, anything else to the HTTP/1.1 codec).
///
/// ```yaml
/// tls:
///   cert_file: certs/default.pem        # chain, leaf first: the default certificate
///   key_file: certs/default.key
///   sni:                                # picked by the name the client asks for
///     - { server_names: [api.example.com, "*.api.example.com"], cert_file: certs/api.pem, key_file: certs/api.key }
///   client_ca_file: certs/clients.pem   # optional: require client certificates from this CA
///   alpn: [h2, http/1.1]
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// The certificate chain (PEM, leaf first) for clients whose server name matches no `sni`
    /// entry, or that send none. Default: none, and such clients are refused at the handshake;
    /// then `sni` must list at least one entry.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `cert_file`. Required with it.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Certificates picked by the client's server name (SNI). Default none.
    #[serde(default)]
    pub sni: Vec<SniCert>,
    /// With it, every client must present a certificate that chains to one in this PEM file
    /// (mTLS); the handshake fails otherwise. Read at start. Default: no client certificates.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Protocols offered through ALPN, in order of preference: `h2`, `http/1.1`. A client that
    /// offers none of them is refused at the handshake; one that offers no ALPN at all is
    /// served by what it sends. Default `[h2, http/1.1]`.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<Alpn>,
}

/// One certificate picked by server name.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    /// Names this certificate serves: exact (`api.example.com`) or a wildcard for one label
    /// (`*.example.com`), compared without regard to case.
    pub server_names: Vec<String>,
    /// The certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// Its private key, PEM.
    pub key_file: PathBuf,
}

/// An application protocol named in ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum Alpn {
    #[serde(rename = "h2")]
    H2,
    #[serde(rename = "http/1.1")]
    Http11,
}

impl Alpn {
    /// The protocol's ALPN identifier.
    pub fn id(self) -> &'static [u8] {
        match self {
            Self::H2 => b"h2",
            Self::Http11 => b"http/1.1",
        }
    }
}

fn default_alpn() -> Vec<Alpn> {
    vec![Alpn::H2, Alpn::Http11]
}

/// TLS to a service's endpoints (overrides `mesh_tls` for that service).
///
/// ```yaml
/// tls: { ca_file: certs/upstream-ca.pem, server_name: api.internal }
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// The CAs (PEM) an endpoint's certificate must chain to; no system roots are used.
    pub ca_file: PathBuf,
    /// The name sent as SNI and checked against the endpoint's certificate (its DNS SANs).
    /// Default: the endpoint's IP address, checked against its IP SANs and not sent as SNI.
    #[serde(default)]
    pub server_name: Option<String>,
    /// A client certificate chain (PEM) presented to endpoints that ask for one (mTLS).
    /// Default none.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Its private key, PEM. Required with `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// mTLS between sidecars (sidecar mode). The outbound side originates mTLS to every endpoint
/// (all of them are sidecars' inbound listeners) and accepts only a peer whose certificate
/// chains to `ca_file` and carries a SPIFFE URI SAN in `trust_domain`; the inbound listener
/// terminates mTLS and refuses a client without such a certificate. The caller's verified
/// identity reaches the app in `loadshift-peer-identity`. Without this section the mesh is
/// plaintext, and `/stats` (`tls: "off"`) and `loadshift_proxy_mesh_tls` (0) say so.
///
/// ```yaml
/// mesh_tls: { ca_file: id/ca.pem, cert_file: id/chain.pem, key_file: id/key.pem }
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshTls {
    /// The mesh CA (PEM), as `loadshift identity ca` writes it.
    pub ca_file: PathBuf,
    /// This workload's certificate chain (PEM, leaf first), as `loadshift identity issue`
    /// writes it; presented on both sides.
    pub cert_file: PathBuf,
    /// Its private key, PEM.
    pub key_file: PathBuf,
    /// Peers' URI SANs must be `spiffe://<trust_domain>/...`. Default `loadshift`.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
}

fn default_trust_domain() -> String {
    crate::spiffe::DEFAULT_TRUST_DOMAIN.into()
}

fn path_set(field: String, p: &std::path::Path) -> Result<(), ConfigError> {
    if p.as_os_str().is_empty() {
        return Err(invalid(field, "\"\"", "must name a file"));
    }
    Ok(())
}

/// `cert_file` and `key_file` come together.
fn pair(
    at: &str,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> Result<(), ConfigError> {
    match (cert, key) {
        (Some(c), Some(k)) => {
            path_set(format!("{at}.cert_file"), c)?;
            path_set(format!("{at}.key_file"), k)
        }
        (None, None) => Ok(()),
        (Some(_), None) => Err(invalid(
            format!("{at}.key_file"),
            "missing",
            "cert_file needs its key_file",
        )),
        (None, Some(_)) => Err(invalid(
            format!("{at}.cert_file"),
            "missing",
            "key_file needs its cert_file",
        )),
    }
}

/// A DNS name a certificate can be issued for and checked against (no wildcard, not an
/// address).
pub fn is_dns_name(name: &str) -> bool {
    !name.contains('*')
        && name.parse::<std::net::IpAddr>().is_err()
        && rustls_pki_types::DnsName::try_from(name).is_ok()
}

/// A name a certificate may be picked by: a DNS name, or `*.` and one.
fn valid_server_name(name: &str) -> bool {
    is_dns_name(name.strip_prefix("*.").unwrap_or(name))
}

impl super::ProxyConfig {
    /// The TLS sections: each on its own, then where they may appear.
    pub(super) fn validate_tls(&self) -> Result<(), ConfigError> {
        if self.admin.tls.is_some() {
            return Err(invalid(
                "admin.tls",
                "set",
                "the admin listener is plaintext; keep it on loopback",
            ));
        }
        if let Some(t) = &self.outbound.tls {
            t.validate("outbound.tls")?;
        }
        for (i, s) in self.services.iter().enumerate() {
            if let Some(t) = &s.tls {
                t.validate(&format!("services[{i}].tls"))?;
            }
        }
        if let Some(m) = &self.mesh_tls {
            m.validate(self.mode == super::Mode::Sidecar)?;
        }
        Ok(())
    }
}

impl ListenerTls {
    /// `at`: where this section sits (`outbound.tls`).
    pub(super) fn validate(&self, at: &str) -> Result<(), ConfigError> {
        pair(at, self.cert_file.as_deref(), self.key_file.as_deref())?;
        if self.cert_file.is_none() && self.sni.is_empty() {
            return Err(invalid(
                format!("{at}.cert_file"),
                "missing",
                "a TLS listener needs a default certificate or at least one sni entry",
            ));
        }
        let mut names = HashSet::new();
        for (i, s) in self.sni.iter().enumerate() {
            let here = format!("{at}.sni[{i}]");
            pair(&here, Some(&s.cert_file), Some(&s.key_file))?;
            if s.server_names.is_empty() {
                return Err(invalid(
                    format!("{here}.server_names"),
                    "[]",
                    "an sni entry needs at least one name",
                ));
            }
            for n in &s.server_names {
                if !valid_server_name(n) {
                    return Err(invalid(
                        format!("{here}.server_names"),
                        n,
                        "not a DNS name or a *. wildcard",
                    ));
                }
                if !names.insert(n.to_ascii_lowercase()) {
                    return Err(invalid(
                        format!("{here}.server_names"),
                        n,
                        "name already picks another certificate",
                    ));
                }
            }
        }
        if let Some(ca) = &self.client_ca_file {
            path_set(format!("{at}.client_ca_file"), ca)?;
        }
        if self.alpn.is_empty() {
            return Err(invalid(
                format!("{at}.alpn"),
                "[]",
                "must offer h2, http/1.1 or both",
            ));
        }
        if self.alpn.len() != self.alpn.iter().collect::<HashSet<_>>().len() {
            return Err(invalid(
                format!("{at}.alpn"),
                format!("{:?}", self.alpn),
                "lists a protocol twice",
            ));
        }
        Ok(())
    }
}

impl UpstreamTls {
    pub(super) fn validate(&self, at: &str) -> Result<(), ConfigError> {
        path_set(format!("{at}.ca_file"), &self.ca_file)?;
        pair(at, self.cert_file.as_deref(), self.key_file.as_deref())?;
        if let Some(n) = &self.server_name
            && (n.contains('*') || rustls_pki_types::ServerName::try_from(n.as_str()).is_err())
        {
            return Err(invalid(
                format!("{at}.server_name"),
                n,
                "not a DNS name or an IP address",
            ));
        }
        Ok(())
    }
}

impl MeshTls {
    pub(super) fn validate(&self, sidecar: bool) -> Result<(), ConfigError> {
        if !sidecar {
            return Err(invalid(
                "mesh_tls",
                "set",
                "only sidecar mode has a mesh; a standalone listener takes outbound.tls",
            ));
        }
        path_set("mesh_tls.ca_file".into(), &self.ca_file)?;
        pair(
            "mesh_tls",
            Some(&self.cert_file),
            Some(self.key_file.as_path()),
        )?;
        if let Err(reason) = crate::spiffe::check_trust_domain(&self.trust_domain) {
            return Err(invalid("mesh_tls.trust_domain", &self.trust_domain, reason));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ProxyConfig;

    fn parse(extra: &str) -> Result<ProxyConfig, String> {
        ProxyConfig::parse(&format!(
            "outbound: {{ listen: '127.0.0.1:0' }}\nservices: []\n{extra}"
        ))
        .map_err(|e| e.to_string())
    }

    fn sidecar(extra: &str) -> Result<ProxyConfig, String> {
        ProxyConfig::parse(&format!(
            "mode: sidecar\noutbound: {{ listen: '127.0.0.1:0' }}\n\
             inbound: {{ listen: '127.0.0.1:0', app: '127.0.0.1:8080' }}\nservices: []\n{extra}"
        ))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_listener_section_parses_with_its_defaults() {
        let c = ProxyConfig::parse(
            "outbound:\n  listen: '127.0.0.1:0'\n  tls:\n    cert_file: a.pem\n    key_file: a.key\n    sni:\n      - { server_names: [a.example, '*.b.example'], cert_file: b.pem, key_file: b.key }\nservices: []\n",
        )
        .unwrap();
        let t = c.outbound.tls.unwrap();
        assert_eq!(t.alpn, vec![super::Alpn::H2, super::Alpn::Http11]);
        assert_eq!(t.sni[0].server_names.len(), 2);
        assert!(t.client_ca_file.is_none());
    }

    #[test]
    fn listener_mistakes_name_their_field() {
        let tls = |body: &str| {
            ProxyConfig::parse(&format!(
                "outbound:\n  listen: '127.0.0.1:0'\n  tls: {body}\nservices: []\n"
            ))
            .map(drop)
            .map_err(|e| e.to_string())
        };
        let e = tls("{ cert_file: a.pem }").unwrap_err();
        assert!(e.starts_with("outbound.tls.key_file"), "{e}");
        let e = tls("{ key_file: a.key }").unwrap_err();
        assert!(e.starts_with("outbound.tls.cert_file"), "{e}");
        let e = tls("{ client_ca_file: ca.pem }").unwrap_err();
        assert!(e.contains("default certificate or at least one sni"), "{e}");
        let e = tls("{ sni: [ { server_names: [], cert_file: a, key_file: b } ] }").unwrap_err();
        assert!(e.starts_with("outbound.tls.sni[0].server_names"), "{e}");
        let e =
            tls("{ sni: [ { server_names: ['a b'], cert_file: a, key_file: b } ] }").unwrap_err();
        assert!(e.contains("not a DNS name"), "{e}");
        let e =
            tls("{ sni: [ { server_names: ['a.*.c'], cert_file: a, key_file: b } ] }").unwrap_err();
        assert!(e.contains("not a DNS name"), "{e}");
        let e = tls(
            "{ sni: [ { server_names: [A.example], cert_file: a, key_file: b }, { server_names: [a.example], cert_file: c, key_file: d } ] }",
        )
        .unwrap_err();
        assert!(e.starts_with("outbound.tls.sni[1].server_names"), "{e}");
        let e = tls("{ cert_file: a, key_file: b, alpn: [] }").unwrap_err();
        assert!(e.starts_with("outbound.tls.alpn"), "{e}");
        let e = tls("{ cert_file: a, key_file: b, alpn: [h2, h2] }").unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = tls("{ cert_file: a, key_file: b, alpn: [h3] }").unwrap_err();
        assert!(e.contains("unknown variant"), "{e}");
        let e = tls("{ cert_file: '', key_file: b }").unwrap_err();
        assert!(e.starts_with("outbound.tls.cert_file"), "{e}");
    }

    #[test]
    fn the_admin_listener_takes_no_tls() {
        let e = parse("admin: { listen: '127.0.0.1:0', tls: { cert_file: a, key_file: b } }")
            .unwrap_err();
        assert!(e.starts_with("admin.tls"), "{e}");
    }

    #[test]
    fn upstream_sections_are_checked() {
        let svc = |tls: &str| {
            ProxyConfig::parse(&format!(
                "outbound: {{ listen: '127.0.0.1:0' }}\nservices: [ {{ name: api, endpoints: [ {{ addr: '127.0.0.1:1' }} ], tls: {tls} }} ]\n"
            ))
            .map(drop)
            .map_err(|e| e.to_string())
        };
        svc("{ ca_file: ca.pem }").unwrap();
        svc("{ ca_file: ca.pem, server_name: api.internal, cert_file: c, key_file: k }").unwrap();
        svc("{ ca_file: ca.pem, server_name: '10.0.0.1' }").unwrap();
        let e = svc("{ ca_file: ca.pem, server_name: 'not a name' }").unwrap_err();
        assert!(e.starts_with("services[0].tls.server_name"), "{e}");
        let e = svc("{ ca_file: ca.pem, cert_file: c }").unwrap_err();
        assert!(e.starts_with("services[0].tls.key_file"), "{e}");
        let e = svc("{ server_name: a }").unwrap_err();
        assert!(e.contains("ca_file"), "{e}");
    }

    #[test]
    fn mesh_tls_is_for_sidecars_in_a_valid_trust_domain() {
        let mesh = "mesh_tls: { ca_file: ca.pem, cert_file: c.pem, key_file: k.pem }";
        let c = sidecar(mesh).unwrap();
        assert_eq!(c.mesh_tls.unwrap().trust_domain, "loadshift");
        let e = parse(mesh).unwrap_err();
        assert!(e.starts_with("mesh_tls = set"), "{e}");
        let e = sidecar(
            "mesh_tls: { ca_file: ca.pem, cert_file: c.pem, key_file: k.pem, trust_domain: 'Bad/Domain' }",
        )
        .unwrap_err();
        assert!(e.starts_with("mesh_tls.trust_domain"), "{e}");
        let e = sidecar("mesh_tls: { ca_file: ca.pem, cert_file: c.pem }").unwrap_err();
        assert!(e.contains("key_file"), "{e}");
    }
}
