//! Workload identities as SPIFFE IDs (the SPIFFE ID and X.509-SVID specs,
//! github.com/spiffe/spiffe/standards): `spiffe://<trust domain>/ns/<namespace>/sa/<workload>`,
//! carried as a certificate's URI SAN. The trust domain groups workloads that trust one CA; a
//! peer is accepted only with an ID in this proxy's trust domain. The certificate is verified by
//! rustls (webpki) before its SANs are read here, so the bytes parsed come from a certificate our
//! CA signed.

use x509_parser::{extensions::GeneralName, prelude::FromDer};

/// The trust domain when none is configured.
pub const DEFAULT_TRUST_DOMAIN: &str = "loadshift";

/// The namespace `loadshift identity issue` puts in IDs by default.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A trust domain is lowercase letters, digits, `.`, `-` and `_` (SPIFFE ID §2.1), at most 255
/// characters.
pub fn check_trust_domain(td: &str) -> Result<(), &'static str> {
    if td.is_empty() || td.len() > 255 {
        return Err("must be 1 to 255 characters");
    }
    if !td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
    {
        return Err("may hold only lowercase letters, digits, '.', '-' and '_'");
    }
    Ok(())
}

/// A path segment is letters, digits, `.`, `-` and `_`, and neither `.` nor `..` (SPIFFE ID
/// §2.2).
pub fn check_segment(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s == "." || s == ".." {
        return Err("must be a non-empty name other than '.' and '..'");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        return Err("may hold only letters, digits, '.', '-' and '_'");
    }
    Ok(())
}

/// `spiffe://<trust_domain>/ns/<namespace>/sa/<workload>`, Istio's and Linkerd's shape.
pub fn workload_id(trust_domain: &str, namespace: &str, workload: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{workload}")
}

/// Whether `uri` is a SPIFFE ID with a path in `trust_domain`.
pub fn in_trust_domain(uri: &str, trust_domain: &str) -> bool {
    uri.strip_prefix("spiffe://")
        .and_then(|rest| rest.strip_prefix(trust_domain))
        .is_some_and(|path| path.len() > 1 && path.starts_with('/'))
}

/// The URI SANs of a DER certificate, in order; empty when it has none or does not parse.
pub fn uri_sans(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some((*u).to_string()),
            _ => None,
        })
        .collect()
}

/// The certificate's SPIFFE ID in `trust_domain`, if it has one.
pub fn identity_in(der: &[u8], trust_domain: &str) -> Option<String> {
    uri_sans(der)
        .into_iter()
        .find(|u| in_trust_domain(u, trust_domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_domains_and_segments_follow_the_spiffe_rules() {
        assert!(check_trust_domain("loadshift").is_ok());
        assert!(check_trust_domain("prod.example-1_x").is_ok());
        assert!(check_trust_domain("").is_err());
        assert!(check_trust_domain("Prod").is_err());
        assert!(check_trust_domain("a/b").is_err());
        assert!(check_trust_domain(&"a".repeat(256)).is_err());
        assert!(check_segment("checkout-v2").is_ok());
        assert!(check_segment("..").is_err());
        assert!(check_segment("a b").is_err());
        assert!(check_segment("").is_err());
    }

    #[test]
    fn ids_belong_to_their_trust_domain_only() {
        let id = workload_id("loadshift", "default", "api");
        assert_eq!(id, "spiffe://loadshift/ns/default/sa/api");
        assert!(in_trust_domain(&id, "loadshift"));
        assert!(!in_trust_domain(&id, "loadshif"));
        assert!(!in_trust_domain(&id, "other"));
        assert!(!in_trust_domain(
            "spiffe://loadshift.evil/ns/a",
            "loadshift"
        ));
        assert!(!in_trust_domain("spiffe://loadshift", "loadshift"));
        assert!(!in_trust_domain("spiffe://loadshift/", "loadshift"));
        assert!(!in_trust_domain("https://loadshift/ns/a", "loadshift"));
    }

    #[test]
    fn uri_sans_are_read_from_a_certificate() {
        let mut p = rcgen::CertificateParams::new(vec!["api.local".to_string()]).unwrap();
        p.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://loadshift/ns/default/sa/api").unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        assert_eq!(
            uri_sans(cert.der()),
            vec!["spiffe://loadshift/ns/default/sa/api".to_string()]
        );
        assert_eq!(
            identity_in(cert.der(), "loadshift").as_deref(),
            Some("spiffe://loadshift/ns/default/sa/api")
        );
        assert_eq!(identity_in(cert.der(), "other"), None);
        assert!(uri_sans(b"not a certificate").is_empty());
    }
}
