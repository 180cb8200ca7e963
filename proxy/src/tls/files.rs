//! Certificates, keys and CAs read from PEM files, each failure worded for the field that named
//! the file.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use rustls::{RootCertStore, crypto::CryptoProvider, sign::CertifiedKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::TlsError;

/// A certificate chain and its key, as configured: the files and the field that names them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PairFiles {
    /// Where the pair is configured, e.g. `outbound.tls.sni[0]`.
    pub field: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl PairFiles {
    pub fn new(field: impl Into<String>, cert: &Path, key: &Path) -> Self {
        Self {
            field: field.into(),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }
    }

    /// Reads both files and checks that the key is the certificate's.
    pub fn load(&self, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
        let chain = certs(&format!("{}.cert_file", self.field), &self.cert)?;
        let key_field = format!("{}.key_file", self.field);
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| TlsError::new(&key_field, &self.key, pem_reason(&e, "private key")))?;
        let key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::new(&key_field, &self.key, format!("unusable key: {e}")))?;
        let ck = CertifiedKey::new(chain, key);
        match ck.keys_match() {
            Ok(()) => Ok(Arc::new(ck)),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(Arc::new(ck))
            }
            Err(_) => Err(TlsError::new(
                &key_field,
                &self.key,
                format!(
                    "the key does not match the certificate in {}",
                    self.cert.display()
                ),
            )),
        }
    }

    /// What the two files look like on disk now, to notice a change.
    pub fn stamp(&self) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        // The inode too: a file replaced by a rename within the clock's resolution, at the same
        // length, is still noticed.
        let of = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().ok(), m.len(), m.ino()))
        };
        Stamp {
            cert: of(&self.cert),
            key: of(&self.key),
        }
    }
}

/// Modification time, length and inode of a pair's files (`None`: missing or unreadable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    cert: Option<(Option<SystemTime>, u64, u64)>,
    key: Option<(Option<SystemTime>, u64, u64)>,
}

/// Every certificate of a PEM file, in order; an empty file is an error.
pub fn certs(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let all = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::new(field, path, pem_reason(&e, "certificate")))?;
    if all.is_empty() {
        return Err(TlsError::new(field, path, "holds no PEM certificate"));
    }
    Ok(all)
}

/// The CAs of a PEM file as trust anchors.
pub fn roots(field: &str, path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(field, path)? {
        store
            .add(c)
            .map_err(|e| TlsError::new(field, path, format!("not a usable CA: {e}")))?;
    }
    Ok(Arc::new(store))
}

fn pem_reason(e: &rustls_pki_types::pem::Error, what: &str) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => format!("holds no PEM {what}"),
        other => format!("not a PEM {what}: {other:?}"),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Certificates made in unit tests.
    use std::path::Path;

    /// A CA and its issuer.
    pub fn ca() -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        (cert, rcgen::Issuer::new(p, key))
    }

    /// A leaf for `dns` (and `uri`, a URI SAN) signed by `issuer`: (cert PEM, key PEM).
    pub fn leaf(
        issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
        dns: &[&str],
        uri: Option<&str>,
    ) -> (String, String) {
        let mut p =
            rcgen::CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        if let Some(u) = uri {
            p.subject_alt_names.push(rcgen::SanType::URI(
                rcgen::string::Ia5String::try_from(u).unwrap(),
            ));
        }
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `text` to `dir/name` and returns the path.
    pub fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A fresh directory under the system's temporary one.
    pub fn dir(tag: &str) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "loadshift-tls-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

#[cfg(test)]
mod tests {
    use super::{testing::*, *};

    #[test]
    fn a_pair_loads_and_a_mismatched_or_missing_one_names_its_field() {
        let d = dir("files");
        let (_, issuer) = ca();
        let (c1, k1) = leaf(&issuer, &["a.example"], None);
        let (_, k2) = leaf(&issuer, &["b.example"], None);
        let cert = write(&d, "a.pem", &c1);
        let key = write(&d, "a.key", &k1);
        let other = write(&d, "b.key", &k2);
        let p = super::super::provider();
        PairFiles::new("outbound.tls", &cert, &key)
            .load(&p)
            .unwrap();
        let e = PairFiles::new("outbound.tls", &cert, &other)
            .load(&p)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("outbound.tls.key_file = "), "{e}");
        assert!(e.contains("does not match"), "{e}");
        let e = PairFiles::new("outbound.tls", &d.join("none.pem"), &key)
            .load(&p)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("outbound.tls.cert_file = "), "{e}");
        let e = PairFiles::new("outbound.tls", &key, &key)
            .load(&p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let e = PairFiles::new("outbound.tls", &cert, &cert)
            .load(&p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds no PEM private key"), "{e}");
        let e = roots("mesh_tls.ca_file", &key).unwrap_err().to_string();
        assert!(e.starts_with("mesh_tls.ca_file"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_stamp_changes_with_either_file() {
        let d = dir("stamp");
        let cert = write(&d, "c", "one");
        let key = write(&d, "k", "one");
        let p = PairFiles::new("x", &cert, &key);
        let s1 = p.stamp();
        assert_eq!(s1, p.stamp());
        write(&d, "k", "longer");
        assert_ne!(s1, p.stamp());
        std::fs::remove_file(&cert).unwrap();
        assert_ne!(s1, p.stamp());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
