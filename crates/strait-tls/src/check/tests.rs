#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::chain::{self, CertInfo};
use super::*;

// === certificates ===

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn new_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        der: cert.der().clone(),
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

fn params(names: &[&str], days: (i64, i64), client: bool) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    // Midnight UTC, `offset` days from today (a closure: the date type is rcgen's `time`).
    let day = |offset: i64| {
        let (year, month, day) = chain::civil_from_days(chain::now() / 86_400 + offset);
        rcgen::date_time_ymd(year as i32, month as u8, day as u8)
    };
    params.not_before = day(days.0);
    params.not_after = day(days.1);
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    params
}

fn leaf_with(ca: &Ca, names: &[&str], days: (i64, i64), client: bool) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = params(names, days, client)
        .signed_by(&key, &ca.issuer)
        .unwrap();
    Leaf {
        chain: vec![cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn leaf(ca: &Ca) -> Leaf {
    leaf_with(ca, &["localhost", "127.0.0.1"], (-1, 30), false)
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

// === an in-process rustls server ===

/// Serves TLS on a free port: each connection does its handshake, then waits for the client
/// to close.
async fn serve(config: rustls::ServerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 64];
                    while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
                }
            });
        }
    });
    addr
}

fn server_config(leaf: &Leaf, alpn: &[&str]) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config
}

fn mtls_config(
    leaf: &Leaf,
    client_ca: &Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ServerConfig {
    let mut roots = RootCertStore::empty();
    roots.add(client_ca.der.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crate::provider())
        .build()
        .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(crate::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

struct Check {
    dir: tempfile::TempDir,
    options: CheckOptions,
}

impl Check {
    fn new(addr: SocketAddr, ca: &Ca) -> Check {
        let dir = tempfile::tempdir().unwrap();
        let ca = write(&dir, "ca.pem", &ca.pem);
        Check {
            options: CheckOptions {
                target: addr.to_string(),
                alpn: vec!["h2".into(), "http/1.1".into()],
                ca: Some(ca),
                ..CheckOptions::default()
            },
            dir,
        }
    }

    fn identity(mut self, leaf: &Leaf) -> Check {
        self.options.cert = Some(write(&self.dir, "client.pem", &leaf.cert_pem));
        self.options.key = Some(write(&self.dir, "client.key", &leaf.key_pem));
        self
    }

    async fn run(&self) -> Report {
        run(&self.options).await
    }
}

fn codes(report: &Report) -> Vec<&'static str> {
    report.findings.iter().map(|f| f.code).collect()
}

fn problems(report: &Report) -> Vec<&'static str> {
    report
        .findings
        .iter()
        .filter(|f| f.problem)
        .map(|f| f.code)
        .collect()
}

// === run against a rustls server ===

#[tokio::test]
async fn h2_and_a_verified_chain_is_fine() {
    let ca = new_ca("unit CA");
    let addr = serve(server_config(&leaf(&ca), &["h2", "http/1.1"])).await;
    let report = Check::new(addr, &ca).run().await;

    assert!(report.is_fine(), "{}", report.to_text());
    assert_eq!(report.alpn.as_deref(), Some("h2"));
    assert_eq!(report.version.as_deref(), Some("TLS 1.3"));
    assert_eq!(report.verification, Verification::Verified);
    assert_eq!(report.sni, None, "no SNI for an IP literal");
    assert_eq!(report.verified_name.as_deref(), Some("127.0.0.1"));
    assert_eq!(codes(&report), ["ok"]);
    let leaf = report.chain[0].as_ref().unwrap();
    assert_eq!(leaf.subject, "CN=localhost");
    assert_eq!(leaf.issuer, "CN=unit CA");
    assert_eq!(leaf.sans, ["DNS:localhost", "IP:127.0.0.1"]);
    assert_eq!(leaf.key, "EC P-256");
    let text = report.to_text();
    assert!(text.contains("ALPN: h2 (offered: h2, http/1.1)"), "{text}");
    assert!(text.contains("verified: yes"), "{text}");
}

#[tokio::test]
async fn a_server_without_h2_is_a_problem_unless_h2_was_not_offered() {
    let ca = new_ca("unit CA");
    let addr = serve(server_config(&leaf(&ca), &["http/1.1"])).await;
    let mut check = Check::new(addr, &ca);
    let report = check.run().await;
    assert_eq!(problems(&report), ["alpn_not_h2"]);
    assert!(report
        .to_text()
        .contains("gRPC clients will fail or fall back to HTTP/1.1"));

    check.options.alpn = vec!["http/1.1".into()];
    let report = check.run().await;
    assert!(report.is_fine(), "{}", report.to_text());
    assert_eq!(codes(&report), ["alpn_h2_not_offered", "ok"]);
}

#[tokio::test]
async fn no_alpn_at_all_is_a_problem() {
    let ca = new_ca("unit CA");
    let addr = serve(server_config(&leaf(&ca), &[])).await;
    let report = Check::new(addr, &ca).run().await;
    assert_eq!(report.alpn, None);
    assert_eq!(problems(&report), ["alpn_none"]);
}

#[tokio::test]
async fn a_server_refusing_every_offered_protocol() {
    let ca = new_ca("unit CA");
    let addr = serve(server_config(&leaf(&ca), &["h2"])).await;
    let mut check = Check::new(addr, &ca);
    check.options.alpn = vec!["http/1.1".into()];
    let report = check.run().await;
    assert_eq!(problems(&report), ["alpn_rejected"]);
    assert!(report.to_text().contains("no_application_protocol"));
}

#[tokio::test]
async fn certificate_problems_are_named() {
    let ca = new_ca("unit CA");
    let expired = leaf_with(&ca, &["localhost", "127.0.0.1"], (-30, -2), false);
    let addr = serve(server_config(&expired, &["h2"])).await;
    let report = Check::new(addr, &ca).run().await;
    assert_eq!(problems(&report), ["expired"]);
    assert!(report.to_text().contains("days ago"));

    let future = leaf_with(&ca, &["localhost", "127.0.0.1"], (3, 30), false);
    let addr = serve(server_config(&future, &["h2"])).await;
    assert_eq!(
        problems(&Check::new(addr, &ca).run().await),
        ["not_yet_valid"]
    );

    let addr = serve(server_config(&leaf(&ca), &["h2"])).await;
    let mut check = Check::new(addr, &ca);
    check.options.sni = Some("other.test".into());
    let report = check.run().await;
    assert_eq!(report.sni.as_deref(), Some("other.test"));
    assert_eq!(problems(&report), ["hostname_mismatch"]);
    assert!(report.to_text().contains("DNS:localhost, IP:127.0.0.1"));

    // The leaf verifies against its own CA only: any other CA makes it an unknown issuer.
    let other = new_ca("someone else");
    let report = Check::new(addr, &other).run().await;
    assert_eq!(problems(&report), ["incomplete_chain"]);
}

#[tokio::test]
async fn a_self_signed_leaf_is_called_that() {
    let key = KeyPair::generate().unwrap();
    let cert = params(&["localhost"], (-1, 30), false)
        .self_signed(&key)
        .unwrap();
    let leaf = Leaf {
        chain: vec![cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    let addr = serve(server_config(&leaf, &["h2"])).await;
    let report = Check::new(addr, &new_ca("unit CA")).run().await;
    assert_eq!(problems(&report), ["self_signed"]);

    let mut check = Check::new(addr, &new_ca("unit CA"));
    check.options.ca = None;
    check.options.insecure = true;
    let report = check.run().await;
    assert!(report.is_fine(), "{}", report.to_text());
    assert_eq!(report.verification, Verification::Insecure);
    assert!(report.to_text().contains("not verified (--insecure)"));
}

#[tokio::test]
async fn client_certificates_over_tls13_and_tls12() {
    let ca = new_ca("unit CA");
    let client = leaf_with(&ca, &["client.test"], (-1, 30), true);
    let other_ca = new_ca("stranger");
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let addr = serve(mtls_config(&leaf(&ca), &ca, versions)).await;
        let report = Check::new(addr, &ca).run().await;
        assert_eq!(
            problems(&report),
            ["client_certificate_required"],
            "{versions:?}"
        );
        assert!(report.client_auth.requested);
        assert_eq!(report.client_auth.cas, ["CN=unit CA"]);
        assert!(report.to_text().contains("pass --cert FILE and --key FILE"));

        let report = Check::new(addr, &ca).identity(&client).run().await;
        assert!(report.is_fine(), "{versions:?}: {}", report.to_text());
        assert_eq!(codes(&report), ["client_certificate_accepted", "ok"]);

        let stranger = leaf_with(&other_ca, &["client.test"], (-1, 30), true);
        let report = Check::new(addr, &ca).identity(&stranger).run().await;
        assert_eq!(
            problems(&report),
            ["client_certificate_rejected"],
            "{versions:?}"
        );
    }
}

#[tokio::test]
async fn nothing_listening_and_bad_options() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let ca = new_ca("unit CA");
    let report = Check::new(closed, &ca).run().await;
    assert_eq!(problems(&report), ["cannot_connect"]);
    assert!(report.to_text().contains("cannot connect"));

    let mut check = Check::new(closed, &ca);
    check.options.ca = Some(check.dir.path().join("missing.pem"));
    assert_eq!(problems(&check.run().await), ["bad_ca"]);

    let mut check = Check::new(closed, &ca);
    check.options.cert = check.options.ca.clone();
    assert_eq!(problems(&check.run().await), ["bad_client_cert"]);

    let mut check = Check::new(closed, &ca);
    check.options.target = "localhost:http".into();
    assert_eq!(problems(&check.run().await), ["bad_target"]);
}

#[tokio::test]
async fn json_has_the_same_facts() {
    let ca = new_ca("unit CA");
    let addr = serve(server_config(&leaf(&ca), &["h2"])).await;
    let json = Check::new(addr, &ca).run().await.to_json();
    assert_eq!(json["alpn"], "h2");
    assert_eq!(json["version"], "TLS 1.3");
    assert!(json["cipher"].as_str().unwrap().starts_with("TLS13_"));
    assert_eq!(json["verified"], true);
    assert_eq!(json["fine"], true);
    assert_eq!(json["chain"][0]["subject"], "CN=localhost");
    assert_eq!(json["chain"][0]["key"], "EC P-256");
    assert_eq!(json["diagnosis"][0]["code"], "ok");
    assert_eq!(json["diagnosis"][0]["problem"], false);
}

// === pieces ===

#[test]
fn targets() {
    let t = |s: &str| Target::parse(s).map(|t| (t.host, t.port));
    assert_eq!(t("example.com:8443"), Ok(("example.com".into(), 8443)));
    assert_eq!(t("example.com"), Ok(("example.com".into(), 443)));
    assert_eq!(t("127.0.0.1:1"), Ok(("127.0.0.1".into(), 1)));
    assert_eq!(t("[::1]:8443"), Ok(("::1".into(), 8443)));
    assert_eq!(t("[::1]"), Ok(("::1".into(), 443)));
    for bad in [
        "",
        ":443",
        "host:0",
        "host:70000",
        "host:x",
        "::1",
        "[::1",
        "[::1]8443",
    ] {
        assert!(t(bad).is_err(), "{bad:?}");
    }
    assert!(t("::1").unwrap_err().contains("[::1]:443"));
    let v6 = Target::parse("[::1]:8443").unwrap();
    assert_eq!(v6.to_string(), "[::1]:8443");
}

#[test]
fn dates() {
    assert_eq!(chain::rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(chain::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(chain::rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    assert_eq!(chain::rfc3339(-1), "1969-12-31T23:59:59Z");
    assert_eq!(chain::relative(100 + 3 * 86_400, 100), "in 3 days");
    assert_eq!(chain::relative(100, 100 + 5 * 3600), "5 hours ago");
    assert_eq!(chain::relative(160, 100), "in 60 seconds");
}

#[test]
fn der_lengths() {
    assert_eq!(chain::der_contents(&[0x30, 2, 7, 8, 9]), [7, 8]);
    let mut long = vec![0x30, 0x81, 200];
    long.extend(std::iter::repeat_n(1u8, 200));
    assert_eq!(chain::der_contents(&long).len(), 200);
    assert_eq!(chain::der_contents(&[0x30]), [0x30]);
    assert_eq!(chain::der_contents(&[0x30, 0x82, 1]), [0x30, 0x82, 1]);
}

#[test]
fn key_kinds() {
    let describe = |alg: &'static rcgen::SignatureAlgorithm| {
        let key = KeyPair::generate_for(alg).unwrap();
        let cert = params(&["k.test"], (-1, 1), false)
            .self_signed(&key)
            .unwrap();
        CertInfo::parse(cert.der()).unwrap()
    };
    assert_eq!(describe(&rcgen::PKCS_ECDSA_P256_SHA256).key, "EC P-256");
    assert_eq!(describe(&rcgen::PKCS_ECDSA_P384_SHA384).key, "EC P-384");
    assert_eq!(describe(&rcgen::PKCS_RSA_SHA256).key, "RSA 2048");
    let ed = describe(&rcgen::PKCS_ED25519);
    assert_eq!(ed.key, "Ed25519");
    assert!(ed.self_issued);
    assert!(!ed.is_ca);
    assert!(CertInfo::parse(&CertificateDer::from(vec![1, 2, 3])).is_err());
}

#[test]
fn alerts_in_words() {
    let words = diagnose::alert_words(rustls::AlertDescription::CertificateRequired);
    assert_eq!(
        words,
        "alert certificate_required (the server requires a client certificate)"
    );
    assert!(diagnose::alert_words(rustls::AlertDescription::Unknown(200)).contains("200"));
}
