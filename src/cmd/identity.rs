//! `loadshift identity`: a file-based CA and workload certificates for mTLS between sidecars
//! (`mesh_tls`), the lab, the tests and the Kubernetes manifests. Certificates are made with
//! rcgen: ECDSA P-256 keys, random 159-bit serials, validity from an hour ago (clock skew) for
//! `--days`. A workload certificate carries its SPIFFE ID
//! (`spiffe://<trust domain>/ns/<namespace>/sa/<workload>`) as a URI SAN, any `--dns` / `--ip`
//! SANs, and both server and client auth, since a sidecar presents it on both sides.
//!
//! `identity ca --out DIR` writes `ca.pem` and `ca.key`; `identity issue --ca DIR --name W
//! --out DIR` writes `cert.pem` (the leaf), `chain.pem` (leaf then CA, what `cert_file` should
//! name), `key.pem` and `ca.pem` (a copy of the CA, what `ca_file` should name). Keys are
//! written with mode 0600. Existing files are kept unless `--force`. Bad input exits 64 with
//! the argument and the reason.

use std::{
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use loadshift_proxy::spiffe;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

#[derive(Args, Debug)]
pub struct IdentityArgs {
    #[command(subcommand)]
    cmd: IdentityCmd,
}

#[derive(Subcommand, Debug)]
enum IdentityCmd {
    /// Create a CA: `ca.pem` (self-signed certificate) and `ca.key` (mode 0600) in DIR.
    Ca {
        /// Directory to write to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The trust domain the CA is for; only its name.
        #[arg(long, default_value = spiffe::DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
        /// Days the CA certificate is valid.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Issue a workload certificate signed by a CA made with `identity ca`.
    Issue {
        /// The CA's directory (`ca.pem`, `ca.key`).
        #[arg(long)]
        ca: PathBuf,
        /// The workload (service account) name, the last segment of the SPIFFE ID.
        #[arg(long)]
        name: String,
        /// Directory to write to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// A DNS name to add as a SAN (repeatable), for clients that check names.
        #[arg(long)]
        dns: Vec<String>,
        /// An IP address to add as a SAN (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// The SPIFFE trust domain; peers accept only IDs in theirs (`mesh_tls.trust_domain`).
        #[arg(long, default_value = spiffe::DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
        /// The namespace segment of the SPIFFE ID.
        #[arg(long, default_value = spiffe::DEFAULT_NAMESPACE)]
        namespace: String,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

/// The longest validity accepted, in days (100 years).
const MAX_DAYS: u32 = 36_500;

pub fn main(args: IdentityArgs) -> ExitCode {
    let done = match args.cmd {
        IdentityCmd::Ca {
            out,
            trust_domain,
            days,
            force,
        } => create_ca(&out, &trust_domain, days, force).map(|()| {
            format!(
                "wrote {} and {}",
                out.join("ca.pem").display(),
                out.join("ca.key").display()
            )
        }),
        IdentityCmd::Issue {
            ca,
            name,
            out,
            dns,
            ip,
            days,
            trust_domain,
            namespace,
            force,
        } => {
            let w = Workload {
                trust_domain: &trust_domain,
                namespace: &namespace,
                name: &name,
                dns: &dns,
                ip: &ip,
                days,
            };
            issue(&ca, &w, &out, force)
                .map(|id| format!("wrote {id} to {} (cert, chain, key, ca)", out.display()))
        }
    };
    match done {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadshift identity: {e:#}");
            ExitCode::from(crate::EXIT_CONFIG)
        }
    }
}

/// What a workload certificate says.
struct Workload<'a> {
    trust_domain: &'a str,
    namespace: &'a str,
    name: &'a str,
    dns: &'a [String],
    ip: &'a [IpAddr],
    days: u32,
}

fn check_days(days: u32) -> anyhow::Result<()> {
    if days == 0 || days > MAX_DAYS {
        bail!("--days {days}: must be between 1 and {MAX_DAYS}");
    }
    Ok(())
}

/// Valid from an hour ago (clocks drift) for `days`.
fn validity(p: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(i64::from(days));
}

/// A positive serial of 159 random bits (RFC 5280 §4.1.2.2: at most 20 octets, positive).
fn serial() -> SerialNumber {
    let mut b = [0u8; 20];
    rand::rng().fill_bytes(&mut b);
    b[0] &= 0x7f;
    b[0] |= 0x01;
    SerialNumber::from_slice(&b)
}

fn create_ca(dir: &Path, trust_domain: &str, days: u32, force: bool) -> anyhow::Result<()> {
    spiffe::check_trust_domain(trust_domain)
        .map_err(|r| anyhow::anyhow!("--trust-domain {trust_domain:?}: {r}"))?;
    check_days(days)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, format!("loadshift CA ({trust_domain})"));
    p.distinguished_name
        .push(DnType::OrganizationName, "loadshift");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.serial_number = Some(serial());
    validity(&mut p, days);
    let key = KeyPair::generate().context("generating the CA key")?;
    let cert = p.self_signed(&key).context("signing the CA certificate")?;
    prepare(dir, &["ca.pem", "ca.key"], force)?;
    write(&dir.join("ca.pem"), &cert.pem(), false)?;
    write(&dir.join("ca.key"), &key.serialize_pem(), true)
}

/// Issues the certificate; returns its SPIFFE ID.
fn issue(ca_dir: &Path, w: &Workload<'_>, out: &Path, force: bool) -> anyhow::Result<String> {
    spiffe::check_trust_domain(w.trust_domain)
        .map_err(|r| anyhow::anyhow!("--trust-domain {:?}: {r}", w.trust_domain))?;
    spiffe::check_segment(w.namespace)
        .map_err(|r| anyhow::anyhow!("--namespace {:?}: {r}", w.namespace))?;
    spiffe::check_segment(w.name).map_err(|r| anyhow::anyhow!("--name {:?}: {r}", w.name))?;
    check_days(w.days)?;
    let (ca_cert, ca_key) = (ca_dir.join("ca.pem"), ca_dir.join("ca.key"));
    // Both there and the key the certificate's, read as a proxy would read them.
    loadshift_proxy::tls::check_pair("--ca", &ca_cert, &ca_key)
        .map_err(|e| anyhow::anyhow!("{e} (expected `identity ca --out` output)"))?;
    let ca_pem = std::fs::read_to_string(&ca_cert)
        .with_context(|| format!("--ca: reading {}", ca_cert.display()))?;
    let key_pem = std::fs::read_to_string(&ca_key)
        .with_context(|| format!("--ca: reading {}", ca_key.display()))?;
    let signer = KeyPair::from_pem(&key_pem)
        .map_err(|e| anyhow::anyhow!("--ca: {}: {e}", ca_key.display()))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, signer)
        .map_err(|e| anyhow::anyhow!("--ca: {}: {e}", ca_cert.display()))?;

    let id = spiffe::workload_id(w.trust_domain, w.namespace, w.name);
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, w.name);
    p.subject_alt_names.push(SanType::URI(
        id.as_str()
            .try_into()
            .map_err(|e| anyhow::anyhow!("SPIFFE ID {id:?}: {e}"))?,
    ));
    for d in w.dns {
        let name = Some(d.as_str())
            .filter(|d| loadshift_proxy::config::is_dns_name(d))
            .and_then(|d| d.try_into().ok())
            .ok_or_else(|| anyhow::anyhow!("--dns {d:?}: not a DNS name"))?;
        p.subject_alt_names.push(SanType::DnsName(name));
    }
    p.subject_alt_names
        .extend(w.ip.iter().map(|&a| SanType::IpAddress(a)));
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    p.serial_number = Some(serial());
    validity(&mut p, w.days);
    let key = KeyPair::generate().context("generating the workload key")?;
    let cert = p
        .signed_by(&key, &issuer)
        .context("signing the workload certificate")?;

    prepare(out, &["cert.pem", "chain.pem", "key.pem", "ca.pem"], force)?;
    write(&out.join("key.pem"), &key.serialize_pem(), true)?;
    write(&out.join("cert.pem"), &cert.pem(), false)?;
    write(
        &out.join("chain.pem"),
        &format!("{}{}", cert.pem(), ca_pem),
        false,
    )?;
    write(&out.join("ca.pem"), &ca_pem, false)?;
    Ok(id)
}

/// Creates `dir` and refuses to overwrite any of `names` in it unless `force`.
fn prepare(dir: &Path, names: &[&str], force: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("--out: creating {}", dir.display()))?;
    if !force {
        for n in names {
            let p = dir.join(n);
            if p.exists() {
                bail!("--out: {} exists; pass --force to replace it", p.display());
            }
        }
    }
    Ok(())
}

/// Writes a file whole; a key is readable by its owner only from the start.
fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // A file that existed (with --force) keeps its mode through open: set it again.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject;

    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("loadshift-identity-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn workload<'a>(name: &'a str, dns: &'a [String]) -> Workload<'a> {
        Workload {
            trust_domain: "loadshift",
            namespace: "default",
            name,
            dns,
            ip: &[],
            days: 30,
        }
    }

    #[test]
    fn a_ca_issues_a_workload_certificate_with_its_spiffe_id() {
        let d = dir("issue");
        create_ca(&d.join("ca"), "loadshift", 10, false).unwrap();
        let dns = vec!["api.local".to_string()];
        let id = issue(&d.join("ca"), &workload("api", &dns), &d.join("api"), false).unwrap();
        assert_eq!(id, "spiffe://loadshift/ns/default/sa/api");
        let api = d.join("api");
        loadshift_proxy::tls::check_pair("t", &api.join("chain.pem"), &api.join("key.pem"))
            .unwrap();
        loadshift_proxy::tls::check_pair("t", &api.join("cert.pem"), &api.join("key.pem")).unwrap();
        let chain = std::fs::read_to_string(api.join("chain.pem")).unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        assert_eq!(
            std::fs::read_to_string(api.join("ca.pem")).unwrap(),
            std::fs::read_to_string(d.join("ca/ca.pem")).unwrap()
        );
        #[cfg(unix)]
        for key in [d.join("ca/ca.key"), api.join("key.pem")] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        }
        // The leaf's SANs, as the proxy reads them.
        let der = rustls_pki_types::CertificateDer::from_pem_file(api.join("cert.pem")).unwrap();
        assert_eq!(
            loadshift_proxy::spiffe::uri_sans(&der),
            vec!["spiffe://loadshift/ns/default/sa/api".to_string()]
        );
        // Two issues, two serials.
        issue(&d.join("ca"), &workload("api", &[]), &d.join("api2"), false).unwrap();
        let other =
            rustls_pki_types::CertificateDer::from_pem_file(d.join("api2/cert.pem")).unwrap();
        assert_ne!(der, other);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_input_is_refused_with_the_argument_named() {
        let d = dir("bad");
        let err = |r: anyhow::Result<()>| format!("{:#}", r.unwrap_err());
        let e = err(create_ca(&d.join("ca"), "Bad Domain", 10, false));
        assert!(e.starts_with("--trust-domain"), "{e}");
        let e = err(create_ca(&d.join("ca"), "loadshift", 0, false));
        assert!(e.starts_with("--days 0"), "{e}");
        create_ca(&d.join("ca"), "loadshift", 10, false).unwrap();
        let e = err(create_ca(&d.join("ca"), "loadshift", 10, false));
        assert!(e.contains("exists; pass --force"), "{e}");
        create_ca(&d.join("ca"), "loadshift", 10, true).unwrap();

        let issued = |name: &str, dns: &[String], ca: &Path| {
            issue(ca, &workload(name, dns), &d.join("w"), true).map(drop)
        };
        let e = err(issued("a/b", &[], &d.join("ca")));
        assert!(e.starts_with("--name"), "{e}");
        let e = err(issued("..", &[], &d.join("ca")));
        assert!(e.starts_with("--name"), "{e}");
        let e = err(issued("api", &["not a name".into()], &d.join("ca")));
        assert!(e.starts_with("--dns"), "{e}");
        let e = err(issued("api", &[], &d.join("nowhere")));
        assert!(e.starts_with("--ca"), "{e}");
        // A CA key that is not the CA certificate's.
        create_ca(&d.join("other"), "loadshift", 10, false).unwrap();
        std::fs::copy(d.join("other/ca.key"), d.join("ca/ca.key")).unwrap();
        let e = err(issued("api", &[], &d.join("ca")));
        assert!(e.starts_with("--ca.key_file"), "{e}");
        assert!(e.contains("does not match"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
