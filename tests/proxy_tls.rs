//! TLS end to end, on real sockets: termination on the outbound listener (SNI picks the
//! certificate, ALPN h2 and HTTP/1.1 both reach a plaintext upstream, `https` is forwarded, curl
//! agrees), client certificates on a standalone listener (required, their URI SAN forwarded),
//! TLS to upstreams (HTTP/1.1 and h2 by ALPN, a client certificate presented, a wrong
//! name refused), mTLS between two sidecars (the app sees the caller's SPIFFE ID; no
//! certificate, another CA's, another trust domain's or plaintext is refused), certificate
//! rotation without a restart, a stalled handshake cut off at `header_read_ms`, and TLS
//! configuration errors exiting 64 with the field named.

// Helpers below panic on purpose: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use common::*;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{ClientConfig, RootCertStore, crypto::CryptoProvider};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test CA made with rcgen.
struct Ca {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "tls test CA");
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = p.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    /// A leaf for `names` (DNS names or IP addresses): (cert PEM, key PEM).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        self.leaf_with_uri(names, None)
    }

    /// [`Ca::leaf`] with a URI SAN.
    fn leaf_with_uri(&self, names: &[&str], uri: Option<&str>) -> (String, String) {
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        if let Some(u) = uri {
            p.subject_alt_names
                .push(rcgen::SanType::URI(u.try_into().unwrap()));
        }
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes a certificate and key to `dir/<name>.pem` and `dir/<name>.key`.
fn files(dir: &Path, name: &str, pair: &(String, String)) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &pair.0).unwrap();
    std::fs::write(&key, &pair.1).unwrap();
    (cert, key)
}

fn roots(ca_pem: &str) -> RootCertStore {
    let mut r = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        r.add(c.unwrap()).unwrap();
    }
    r
}

/// A client config trusting `ca_pem`, offering `alpn`, presenting `client` if given. A new
/// one per call: no session is resumed, so every connection sees the certificate in force.
fn client_config(ca_pem: &str, alpn: &[&[u8]], client: Option<(&str, &str)>) -> Arc<ClientConfig> {
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca_pem));
    let mut c = match client {
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    cfg: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    TlsConnector::from(cfg).connect(name, tcp).await
}

/// The serial number of the certificate the server presented on `s`.
fn peer_serial(s: &TlsStream<TcpStream>) -> Vec<u8> {
    let der = s.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.raw_serial().to_vec()
}

fn serial_of(pem: &str) -> Vec<u8> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.raw_serial().to_vec()
}

/// One request over a TLS connection, HTTP/2 if ALPN chose it, else HTTP/1.1; keeps the
/// connection for more.
enum Session {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Session {
    async fn open(s: TlsStream<TcpStream>) -> Result<Self, hyper::Error> {
        let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(s);
        Ok(if h2 {
            let (tx, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Self::H2(tx)
        } else {
            let (tx, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Self::H1(tx)
        })
    }

    async fn get(
        &mut self,
        authority: &str,
        headers: &[(&str, &str)],
    ) -> Result<Got, hyper::Error> {
        let mut b = Request::get(format!("https://{authority}/tls?x=1"));
        if let Self::H1(_) = self {
            b = Request::get("/tls?x=1").header("host", authority);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::new())).unwrap();
        let resp = match self {
            Self::H1(tx) => {
                tx.ready().await?;
                tx.send_request(req).await?
            }
            Self::H2(tx) => tx.send_request(req).await?,
        };
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Got {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Connects, opens a session and sends one GET.
async fn get_once(
    addr: SocketAddr,
    sni: &str,
    cfg: Arc<ClientConfig>,
    authority: &str,
    headers: &[(&str, &str)],
) -> Result<Got, String> {
    let s = tls_connect(addr, sni, cfg)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut session = Session::open(s)
        .await
        .map_err(|e| format!("session: {e}"))?;
    session
        .get(authority, headers)
        .await
        .map_err(|e| format!("request: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_h2_and_http1_reach_a_plain_upstream() {
    let dir = temp_dir("tls-sni");
    let ca = Ca::new();
    let (a, b, def) = (
        ca.leaf(&["a.test"]),
        ca.leaf(&["x.b.test"]),
        ca.leaf(&["default.test"]),
    );
    let (a_cert, a_key) = files(&dir, "a", &a);
    let (b_cert, b_key) = files(&dir, "b", &b);
    let (d_cert, d_key) = files(&dir, "default", &def);
    let up = Upstream::start("web").await;
    let yaml = format!(
        "outbound:\n  listen: 127.0.0.1:0\n  tls:\n    cert_file: {}\n    key_file: {}\n    sni:\n\
         \x20     - {{ server_names: [a.test], cert_file: {}, key_file: {} }}\n\
         \x20     - {{ server_names: ['*.b.test'], cert_file: {}, key_file: {} }}\n\
         admin: {{ listen: 127.0.0.1:0 }}\nservices:\n  - name: web\n\
         \x20   authorities: [a.test, x.b.test, default.test]\n\
         \x20   endpoints: [{{ addr: \"{}\" }}]\n",
        d_cert.display(),
        d_key.display(),
        a_cert.display(),
        a_key.display(),
        b_cert.display(),
        b_key.display(),
        up.addr
    );
    let proxy = start_proxy(&yaml);
    let addr = proxy.outbound;

    // Each name gets its own certificate; ALPN picks the protocol both ways.
    for (sni, pem, alpn) in [
        ("a.test", &a.0, b"h2".as_slice()),
        ("a.test", &a.0, b"http/1.1".as_slice()),
        ("x.b.test", &b.0, b"h2".as_slice()),
        ("default.test", &def.0, b"http/1.1".as_slice()),
    ] {
        let s = tls_connect(addr, sni, client_config(&ca.pem, &[alpn], None))
            .await
            .unwrap();
        assert_eq!(peer_serial(&s), serial_of(pem), "{sni}");
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(alpn));
        let mut session = Session::open(s).await.unwrap();
        let forged = [(
            "loadshift-peer-identity",
            "spiffe://loadshift/ns/default/sa/admin",
        )];
        let got = session.get(sni, &forged).await.unwrap();
        assert_eq!(got.status, 200, "{sni} {alpn:?}");
        assert_eq!(got.header("x-upstream"), Some("web"));
        let seen = up.last_headers.lock().unwrap().clone();
        assert_eq!(seen["x-forwarded-proto"], "https");
        assert!(
            seen["forwarded"].to_str().unwrap().ends_with("proto=https"),
            "{seen:?}"
        );
        assert!(!seen.contains_key("loadshift-peer-identity"), "{seen:?}");
        // HTTP/1.1 to the upstream for an HTTP/1.1 client; `auto` follows an h2 one.
        let version = if alpn == b"h2" {
            "HTTP/2.0"
        } else {
            "HTTP/1.1"
        };
        assert_eq!(got.header("x-upstream-version"), Some(version));
        // Keep-alive works over TLS.
        assert_eq!(session.get(sni, &[]).await.unwrap().status, 200);
    }
    // A client that offers no ALPN is served by what it sends (HTTP/1.1 here).
    let got = get_once(
        addr,
        "a.test",
        client_config(&ca.pem, &[], None),
        "a.test",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200);
    // Telemetry and routing behind TLS: the endpoint's window counted every request.
    let stats = admin_json(proxy.admin, "/stats").await;
    let count = stats["services"][0]["endpoints"][0]["window"]["count"]
        .as_u64()
        .unwrap();
    assert!(count >= 9, "{count}");
    assert_eq!(stats["tls"], "off");

    // An independent client: curl over both protocols, trusting the CA only.
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok()
    {
        std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
        for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
            let out = tokio::process::Command::new("curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{http_version}",
                ])
                .arg("--cacert")
                .arg(dir.join("ca.pem"))
                .arg("--resolve")
                .arg(format!("x.b.test:{}:127.0.0.1", addr.port()))
                .arg(flag)
                .arg(format!("https://x.b.test:{}/curl", addr.port()))
                .output()
                .await
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("200 {version}"),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    } else {
        eprintln!("curl not installed: the independent-client check is skipped");
    }
    proxy.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_with_a_client_ca_requires_certificates_and_names_the_caller() {
    let dir = temp_dir("tls-client-ca");
    let ca = Ca::new();
    let clients = Ca::new();
    let (cert, key) = files(&dir, "server", &ca.leaf(&["edge.test"]));
    std::fs::write(dir.join("clients.pem"), &clients.pem).unwrap();
    let up = Upstream::start("web").await;
    let yaml = format!(
        "outbound:\n  listen: 127.0.0.1:0\n\
         \x20 tls: {{ cert_file: {}, key_file: {}, client_ca_file: {} }}\n\
         admin: {{ listen: 127.0.0.1:0 }}\nservices:\n  - name: web\n\
         \x20   authorities: [edge.test]\n    endpoints: [{{ addr: \"{}\" }}]\n",
        cert.display(),
        key.display(),
        dir.join("clients.pem").display(),
        up.addr
    );
    let proxy = start_proxy(&yaml);
    let named = clients.leaf_with_uri(&["c.test"], Some("spiffe://partners/ns/a/sa/billing"));
    let anonymous = clients.leaf(&["d.test"]);
    let stranger = ca.leaf(&["e.test"]);
    let forged = [("loadshift-peer-identity", "spiffe://partners/ns/a/sa/admin")];
    for (alpn, what) in [
        (b"h2".as_slice(), "h2"),
        (b"http/1.1".as_slice(), "http/1.1"),
    ] {
        // A certificate from the client CA: in, and its URI SAN reaches the upstream.
        let cfg = client_config(&ca.pem, &[alpn], Some((&named.0, &named.1)));
        let got = get_once(proxy.outbound, "edge.test", cfg, "edge.test", &forged)
            .await
            .unwrap();
        assert_eq!(got.status, 200, "{what}");
        let seen = up.last_headers.lock().unwrap().clone();
        let ids: Vec<_> = seen.get_all("loadshift-peer-identity").iter().collect();
        assert_eq!(ids, ["spiffe://partners/ns/a/sa/billing"], "{what}");
        // One without a URI SAN: in, and no identity (the forged one is dropped).
        let cfg = client_config(&ca.pem, &[alpn], Some((&anonymous.0, &anonymous.1)));
        let got = get_once(proxy.outbound, "edge.test", cfg, "edge.test", &forged)
            .await
            .unwrap();
        assert_eq!(got.status, 200);
        assert!(
            !up.last_headers
                .lock()
                .unwrap()
                .contains_key("loadshift-peer-identity")
        );
    }
    // No certificate, or one from another CA: refused.
    let before = up.count();
    for client in [None, Some((stranger.0.as_str(), stranger.1.as_str()))] {
        let cfg = client_config(&ca.pem, &[b"http/1.1"], client);
        let r = get_once(proxy.outbound, "edge.test", cfg, "edge.test", &[]).await;
        assert!(r.is_err(), "{:?}", r.map(|g| g.status));
    }
    assert_eq!(up.count(), before);
    proxy.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

/// An upstream that speaks TLS (ALPN h2 and HTTP/1.1) and records each request's version and
/// whether the client presented a certificate.
async fn tls_upstream(
    pair: &(String, String),
    client_ca: Option<&str>,
) -> (SocketAddr, Arc<Mutex<Vec<(Version, bool)>>>) {
    let certs = CertificateDer::pem_slice_iter(pair.0.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(pair.1.as_bytes()).unwrap();
    let b = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let b = match client_ca {
        Some(ca) => b.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)),
                provider(),
            )
            .allow_unauthenticated()
            .build()
            .unwrap(),
        ),
        None => b.with_no_client_auth(),
    };
    let mut cfg = b.with_single_cert(certs, key).unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(s) = acceptor.accept(tcp).await else {
                    return;
                };
                let client_cert = s.get_ref().1.peer_certificates().is_some();
                let svc = service_fn(move |req: Request<Incoming>| {
                    log.lock().unwrap().push((req.version(), client_cert));
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"secure upstream"),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_upstreams_speaks_http1_and_h2_by_alpn_and_checks_the_name() {
    let dir = temp_dir("tls-upstream");
    let ca = Ca::new();
    let (up_addr, seen) = tls_upstream(&ca.leaf(&["up.test"]), Some(&ca.pem)).await;
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let (cert, key) = files(&dir, "client", &ca.leaf(&["proxy.test"]));
    let (ca_file, cert, key) = (dir.join("ca.pem"), cert.display(), key.display());
    let ca_file = ca_file.display();
    let service = |name: &str, extra: &str| {
        format!("  - name: {name}\n    endpoints: [{{ addr: \"{up_addr}\" }}]\n{extra}")
    };
    let yaml = [
        "outbound: { listen: 127.0.0.1:0 }\nadmin: { listen: 127.0.0.1:0 }\nservices:\n".to_string(),
        service(
            "h1",
            &format!("    protocol: http1\n    tls: {{ ca_file: {ca_file}, server_name: up.test, cert_file: {cert}, key_file: {key} }}\n"),
        ),
        service("auto", &format!("    tls: {{ ca_file: {ca_file}, server_name: up.test }}\n")),
        service("wrongname", &format!("    tls: {{ ca_file: {ca_file}, server_name: other.test }}\n")),
        service("plain", ""),
    ]
    .concat();
    let proxy = start_proxy(&yaml);
    let c = h1_client();

    // HTTP/1.1 over TLS with a client certificate, several requests on pooled connections.
    for _ in 0..3 {
        let got = send(&c, proxy.outbound, "h1", &[], b"").await;
        assert_eq!(got.status, 200);
        assert_eq!(&got.body[..], b"secure upstream");
    }
    // An h2 client to a `protocol: auto` service: the upstream chose h2 by ALPN.
    for _ in 0..2 {
        let got = send_h2(proxy.outbound, "auto", b"").await;
        assert_eq!(got.status, 200);
    }
    // An HTTP/1.1 client to the same service: HTTP/1.1 over TLS.
    assert_eq!(send(&c, proxy.outbound, "auto", &[], b"").await.status, 200);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 6, "{seen:?}");
        assert!(
            seen[..3]
                .iter()
                .all(|&(v, cert)| v == Version::HTTP_11 && cert),
            "{seen:?}"
        );
        assert!(
            seen[3..5]
                .iter()
                .all(|&(v, cert)| v == Version::HTTP_2 && !cert),
            "{seen:?}"
        );
        assert_eq!(seen[5], (Version::HTTP_11, false));
    }
    // A certificate for another name is refused: nothing reaches the upstream.
    let got = send(&c, proxy.outbound, "wrongname", &[], b"").await;
    assert!(
        got.status.is_server_error(),
        "{} {:?}",
        got.status,
        got.body
    );
    // Plaintext to a TLS upstream is the upstream's failure, not a leak.
    let got = send(&c, proxy.outbound, "plain", &[], b"").await;
    assert!(got.status.is_server_error(), "{}", got.status);
    assert_eq!(seen.lock().unwrap().len(), 6);
    proxy.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `loadshift identity` with `args`; panics unless it succeeds.
async fn identity(args: &[&str]) {
    let out = tokio::process::Command::new(bin())
        .arg("identity")
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "identity {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mesh_yaml(id: &Path) -> String {
    format!(
        "mesh_tls: {{ ca_file: {}, cert_file: {}, key_file: {} }}\n",
        id.join("ca.pem").display(),
        id.join("chain.pem").display(),
        id.join("key.pem").display()
    )
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_between_sidecars_carries_the_callers_identity_and_refuses_strangers() {
    let dir = temp_dir("tls-mesh");
    let d = |p: &str| dir.join(p).display().to_string();
    identity(&["ca", "--out", &d("ca")]).await;
    identity(&[
        "issue",
        "--ca",
        &d("ca"),
        "--name",
        "caller",
        "--out",
        &d("caller"),
    ])
    .await;
    // A DNS name as well, so a plain TLS client (below) can check the callee by name.
    identity(&[
        "issue",
        "--ca",
        &d("ca"),
        "--name",
        "callee",
        "--dns",
        "callee",
        "--out",
        &d("callee"),
    ])
    .await;
    // Strangers: another CA, and this CA's certificate in another trust domain.
    identity(&["ca", "--out", &d("other-ca")]).await;
    identity(&[
        "issue",
        "--ca",
        &d("other-ca"),
        "--name",
        "caller",
        "--out",
        &d("forged"),
    ])
    .await;
    identity(&[
        "issue",
        "--ca",
        &d("ca"),
        "--name",
        "caller",
        "--trust-domain",
        "elsewhere",
        "--out",
        &d("foreign"),
    ])
    .await;

    let app = Upstream::start("callee-app").await;
    let callee = start_proxy(&format!(
        "mode: sidecar\noutbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         inbound: {{ listen: 127.0.0.1:0, app: \"{}\", service: callee }}\nservices: []\n{}",
        app.addr,
        mesh_yaml(&dir.join("callee"))
    ));
    let inbound = callee.inbound.unwrap();
    let caller_app = Upstream::start("caller-app").await;
    let caller = start_proxy(&format!(
        "mode: sidecar\noutbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         inbound: {{ listen: 127.0.0.1:0, app: \"{}\" }}\n\
         services:\n  - name: callee\n    endpoints: [{{ addr: \"{inbound}\" }}]\n{}",
        caller_app.addr,
        mesh_yaml(&dir.join("caller"))
    ));

    // The caller's app -> its sidecar (plaintext, loopback) -> mTLS -> the callee's sidecar ->
    // the callee's app, which learns who called; a forged identity never gets through.
    let c = h1_client();
    let forged = [(
        "loadshift-peer-identity",
        "spiffe://loadshift/ns/default/sa/admin",
    )];
    for _ in 0..3 {
        let got = send(&c, caller.outbound, "callee", &forged, b"hi").await;
        assert_eq!(got.status, 200);
        assert_eq!(&got.body[..], b"hi");
        let seen = app.last_headers.lock().unwrap().clone();
        let ids: Vec<_> = seen.get_all("loadshift-peer-identity").iter().collect();
        assert_eq!(ids, ["spiffe://loadshift/ns/default/sa/caller"], "{seen:?}");
        // The app's own hop was plaintext: the protocol it called with is kept.
        assert_eq!(seen["x-forwarded-proto"], "http");
    }
    // HTTP/2 over the mesh too (`protocol: auto`: ALPN settles it).
    let got = send_h2(caller.outbound, "callee", b"h2").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-upstream-version"), Some("HTTP/2.0"));
    assert_eq!(
        app.last_headers.lock().unwrap()["loadshift-peer-identity"],
        "spiffe://loadshift/ns/default/sa/caller"
    );
    for admin in [caller.admin, callee.admin] {
        assert_eq!(admin_json(admin, "/stats").await["tls"], "mesh");
    }

    // Straight to the callee's inbound listener: a real certificate gets in...
    let ca_pem = read(dir.join("ca/ca.pem"));
    let caller_cert = (
        read(dir.join("caller/chain.pem")),
        read(dir.join("caller/key.pem")),
    );
    let cfg = client_config(
        &ca_pem,
        &[b"http/1.1"],
        Some((&caller_cert.0, &caller_cert.1)),
    );
    let got = get_once(inbound, "callee", cfg, "callee", &[])
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    let before = app.count();
    // ...no certificate, another CA's, or another trust domain's is refused at the handshake
    // (TLS 1.3 reports a client's refusal on its first read), and the app sees nothing.
    let forged_cert = (
        read(dir.join("forged/chain.pem")),
        read(dir.join("forged/key.pem")),
    );
    let foreign_cert = (
        read(dir.join("foreign/chain.pem")),
        read(dir.join("foreign/key.pem")),
    );
    for (what, client) in [
        ("no certificate", None),
        (
            "another CA",
            Some((forged_cert.0.as_str(), forged_cert.1.as_str())),
        ),
        (
            "another trust domain",
            Some((foreign_cert.0.as_str(), foreign_cert.1.as_str())),
        ),
    ] {
        let cfg = client_config(&ca_pem, &[b"http/1.1"], client);
        let r = get_once(inbound, "callee", cfg, "callee", &[]).await;
        assert!(r.is_err(), "{what}: {:?}", r.map(|g| g.status));
    }
    // Plaintext to an mTLS listener: no HTTP answer, just a closed connection.
    let mut s = TcpStream::connect(inbound).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: callee\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        !buf.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(app.count(), before);

    // A sidecar whose peer is outside the mesh refuses it: the caller's outbound side to a
    // server with another CA's certificate gets no connection (a 5xx), nothing is sent.
    let (stranger, stranger_seen) = tls_upstream(
        &(
            read(dir.join("forged/chain.pem")),
            read(dir.join("forged/key.pem")),
        ),
        None,
    )
    .await;
    let lost = start_proxy(&format!(
        "mode: sidecar\noutbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         inbound: {{ listen: 127.0.0.1:0, app: \"{}\" }}\n\
         services:\n  - name: stranger\n    endpoints: [{{ addr: \"{stranger}\" }}]\n{}",
        caller_app.addr,
        mesh_yaml(&dir.join("caller"))
    ));
    let got = send(&c, lost.outbound, "stranger", &[], b"").await;
    assert!(got.status.is_server_error(), "{}", got.status);
    assert!(stranger_seen.lock().unwrap().is_empty());
    lost.shutdown();
    caller.shutdown();
    callee.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_serves_new_connections_while_open_ones_finish() {
    let dir = temp_dir("tls-rotate");
    let ca = Ca::new();
    let first = ca.leaf(&["rotate.test"]);
    let (cert, key) = files(&dir, "server", &first);
    let up = Upstream::start("web").await;
    let yaml = format!(
        "outbound:\n  listen: 127.0.0.1:0\n  tls: {{ cert_file: {}, key_file: {} }}\n\
         admin: {{ listen: 127.0.0.1:0 }}\nservices:\n  - name: web\n    authorities: [rotate.test]\n    endpoints: [{{ addr: \"{}\" }}]\n",
        cert.display(),
        key.display(),
        up.addr
    );
    let proxy = start_proxy(&yaml);
    let addr = proxy.outbound;
    let cfg = || client_config(&ca.pem, &[b"http/1.1"], None);

    let s = tls_connect(addr, "rotate.test", cfg()).await.unwrap();
    assert_eq!(peer_serial(&s), serial_of(&first.0));
    let mut open = Session::open(s).await.unwrap();
    assert_eq!(open.get("rotate.test", &[]).await.unwrap().status, 200);

    /// The serial a new connection is served, once it is `want` (bounded wait).
    async fn new_serial_becomes(addr: SocketAddr, cfg: Arc<ClientConfig>, want: &[u8]) -> bool {
        for _ in 0..50 {
            let s = tls_connect(addr, "rotate.test", cfg.clone()).await.unwrap();
            if peer_serial(&s) == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    // Replace both files (each by a rename, as a certificate manager would).
    let second = ca.leaf(&["rotate.test"]);
    for (path, text) in [(&key, &second.1), (&cert, &second.0)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    assert!(new_serial_becomes(addr, cfg(), &serial_of(&second.0)).await);
    // The connection opened before the rotation carries on.
    assert_eq!(open.get("rotate.test", &[]).await.unwrap().status, 200);
    let fresh = get_once(addr, "rotate.test", cfg(), "rotate.test", &[]).await;
    assert_eq!(fresh.unwrap().status, 200);

    // A broken replacement (a certificate whose key did not come with it) is refused: new
    // connections keep the second certificate.
    let third = ca.leaf(&["rotate.test"]);
    std::fs::write(&cert, &third.0).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let s = tls_connect(addr, "rotate.test", cfg()).await.unwrap();
    assert_eq!(peer_serial(&s), serial_of(&second.0));
    std::fs::write(&cert, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let s = tls_connect(addr, "rotate.test", cfg()).await.unwrap();
    assert_eq!(peer_serial(&s), serial_of(&second.0));
    // Its key arrives: the third certificate is taken.
    std::fs::write(&cert, &third.0).unwrap();
    std::fs::write(&key, &third.1).unwrap();
    assert!(new_serial_becomes(addr, cfg(), &serial_of(&third.0)).await);
    proxy.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_in_the_handshake_is_cut_off_after_header_read_ms() {
    let dir = temp_dir("tls-stall");
    let ca = Ca::new();
    let (cert, key) = files(&dir, "server", &ca.leaf(&["stall.test"]));
    let up = Upstream::start("web").await;
    let yaml = format!(
        "outbound:\n  listen: 127.0.0.1:0\n  tls: {{ cert_file: {}, key_file: {} }}\n\
         admin: {{ listen: 127.0.0.1:0 }}\ntimeouts: {{ header_read_ms: 500 }}\n\
         services:\n  - name: web\n    authorities: [stall.test]\n    endpoints: [{{ addr: \"{}\" }}]\n",
        cert.display(),
        key.display(),
        up.addr
    );
    let proxy = start_proxy(&yaml);
    /// How long until the proxy closed `s` (bounded).
    async fn closed_after(mut s: TcpStream) -> Option<Duration> {
        let t = std::time::Instant::now();
        let mut b = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(t.elapsed()),
                Ok(Ok(_)) => {}
                Err(_) => return None,
            }
        }
    }
    // Silent after the connect.
    let s = TcpStream::connect(proxy.outbound).await.unwrap();
    let took = closed_after(s).await.expect("closed");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // Half a ClientHello record, then silence.
    let mut s = TcpStream::connect(proxy.outbound).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    let took = closed_after(s).await.expect("closed");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // Counted as header timeouts (the count follows the close by a moment).
    let mut counted = 0;
    for _ in 0..40 {
        let stats = admin_json(proxy.admin, "/stats").await;
        counted = stats["admission"]["header_timeouts"].as_u64().unwrap();
        if counted >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counted, 2);
    // A client that finishes its handshake and then sends no head is cut off the same way, at
    // the same limit counted from the accept.
    let s = tls_connect(
        proxy.outbound,
        "stall.test",
        client_config(&ca.pem, &[b"http/1.1"], None),
    )
    .await
    .unwrap();
    let t = std::time::Instant::now();
    let mut s = s;
    let mut b = [0u8; 1024];
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await;
    assert!(r.is_ok(), "not closed");
    assert!(t.elapsed() < Duration::from_secs(3));
    // And the listener still serves.
    let got = get_once(
        proxy.outbound,
        "stall.test",
        client_config(&ca.pem, &[b"h2"], None),
        "stall.test",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200);
    proxy.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `loadshift proxy` (or `--check` first) on `yaml`: exit code and standard error.
async fn run_proxy(yaml: &str, check: bool) -> (Option<i32>, String) {
    let dir = temp_dir("tls-exit");
    let cfg = dir.join("proxy.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("proxy");
    if check {
        cmd.arg("--check");
    }
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        cmd.arg("--config").arg(&cfg).kill_on_drop(true).output(),
    )
    .await
    .expect("the proxy exits by itself")
    .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_configuration_exits_64_naming_the_field() {
    let dir = temp_dir("tls-bad");
    let ca = Ca::new();
    let (cert, key) = files(&dir, "a", &ca.leaf(&["a.test"]));
    let (_, other_key) = files(&dir, "b", &ca.leaf(&["b.test"]));
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let head = "outbound:\n  listen: 127.0.0.1:0\n";
    let tail = "admin: { listen: 127.0.0.1:0 }\nservices: []\n";
    let listener = |c: &Path, k: &Path| {
        format!(
            "{head}  tls: {{ cert_file: {}, key_file: {} }}\n{tail}",
            c.display(),
            k.display()
        )
    };
    let cases = [
        (
            listener(&dir.join("missing.pem"), &key),
            "outbound.tls.cert_file",
            "No such file",
        ),
        (listener(&cert, &other_key), "outbound.tls.key_file", "does not match"),
        (listener(&key, &key), "outbound.tls.cert_file", "no PEM certificate"),
        (
            format!(
                "{head}  tls: {{ cert_file: {}, key_file: {}, client_ca_file: {} }}\n{tail}",
                cert.display(),
                key.display(),
                key.display()
            ),
            "outbound.tls.client_ca_file",
            "no PEM certificate",
        ),
        (
            format!(
                "{head}{tail}  - name: api\n    endpoints: [{{ addr: \"127.0.0.1:9\" }}]\n    tls: {{ ca_file: {} }}\n",
                dir.join("nowhere.pem").display()
            )
            .replace("services: []\n", "services:\n"),
            "services[0].tls.ca_file",
            "No such file",
        ),
        (
            format!(
                "mode: sidecar\n{head}inbound: {{ listen: 127.0.0.1:0, app: \"127.0.0.1:9\" }}\n{tail}mesh_tls: {{ ca_file: {}, cert_file: {}, key_file: {} }}\n",
                dir.join("ca.pem").display(),
                cert.display(),
                other_key.display()
            ),
            "mesh_tls.key_file",
            "does not match",
        ),
        (
            format!("{head}  tls: {{ cert_file: {} }}\n{tail}", cert.display()),
            "outbound.tls.key_file",
            "cert_file needs its key_file",
        ),
    ];
    for (yaml, field, reason) in cases {
        for check in [false, true] {
            let (code, err) = run_proxy(&yaml, check).await;
            assert_eq!(code, Some(64), "check={check} {yaml}\n{err}");
            assert!(err.contains(field), "check={check}: {field} not in {err}");
            assert!(err.contains(reason), "check={check}: {reason} not in {err}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Starts `loadshift proxy` on `yaml` and returns the child and its bound addresses.
async fn spawn_proxy(dir: &Path, yaml: &str) -> (tokio::process::Child, serde_json::Value) {
    let cfg = dir.join("proxy.yaml");
    let addrs = dir.join("addrs.json");
    let _ = std::fs::remove_file(&addrs);
    std::fs::write(&cfg, yaml).unwrap();
    let child = tokio::process::Command::new(bin())
        .args(["proxy", "--config"])
        .arg(&cfg)
        .arg("--addr-file")
        .arg(&addrs)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if let Ok(s) = std::fs::read_to_string(&addrs) {
            return (child, serde_json::from_str(&s).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the proxy did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_between_sidecars_is_visible_in_stats_and_metrics() {
    let dir = temp_dir("tls-visible");
    let d = |p: &str| dir.join(p).display().to_string();
    identity(&["ca", "--out", &d("ca")]).await;
    identity(&[
        "issue",
        "--ca",
        &d("ca"),
        "--name",
        "app",
        "--out",
        &d("app"),
    ])
    .await;
    let sidecar = "mode: sidecar\noutbound: { listen: 127.0.0.1:0 }\nadmin: { listen: 127.0.0.1:0 }\ninbound: { listen: 127.0.0.1:0, app: \"127.0.0.1:9\" }\nservices: []\n";
    for (extra, mode, gauge) in [
        (String::new(), "off", "0"),
        (mesh_yaml(&dir.join("app")), "mesh", "1"),
    ] {
        let (child, addrs) = spawn_proxy(&dir, &format!("{sidecar}{extra}")).await;
        let admin: SocketAddr = addrs["admin"].as_str().unwrap().parse().unwrap();
        assert_eq!(admin_json(admin, "/stats").await["tls"], mode);
        let c = h1_client();
        let metrics = c
            .get(format!("http://{admin}/metrics").parse().unwrap())
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let text = String::from_utf8_lossy(&metrics);
        assert!(
            text.lines()
                .any(|l| l == format!("loadshift_proxy_mesh_tls {gauge}")),
            "{text}"
        );
        assert!(text.contains("# HELP loadshift_proxy_mesh_tls"), "{text}");
        drop(child);
    }
    let _ = std::fs::remove_dir_all(dir);
}
