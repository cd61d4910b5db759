//! A test certificate authority (rcgen, made at test time) and TLS clients that trust it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Key algorithms a test certificate can have.
#[derive(Clone, Copy, Debug)]
pub enum KeyKind {
    EcdsaP256,
    Rsa2048,
    Ed25519,
}

/// What to put in a certificate.
#[derive(Clone, Debug)]
pub struct CertSpec {
    /// DNS names, IP literals, or `spiffe://…`/`https://…` URIs; the first DNS name (or the
    /// first entry) is also the subject CN.
    pub names: Vec<String>,
    pub key: KeyKind,
    /// Days from now; negative values put it in the past.
    pub not_before_days: i64,
    pub not_after_days: i64,
    pub client: bool,
}

impl CertSpec {
    pub fn server(names: &[&str]) -> CertSpec {
        CertSpec {
            names: names.iter().map(|n| n.to_string()).collect(),
            key: KeyKind::EcdsaP256,
            not_before_days: -1,
            not_after_days: 30,
            client: false,
        }
    }

    pub fn client(names: &[&str]) -> CertSpec {
        CertSpec {
            client: true,
            ..CertSpec::server(names)
        }
    }
}

/// A certificate and key issued by a [`TestCa`], as PEM and as files.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A CA that lives for one test, writing its files into its own temp dir.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    dir: tempfile::TempDir,
    counter: AtomicUsize,
}

impl TestCa {
    pub fn new() -> TestCa {
        Self::named("strait test CA")
    }

    pub fn named(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        let ca_pem = cert.pem();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            ca_pem,
            dir,
            counter: AtomicUsize::new(0),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for `names` (EC P-256, valid from yesterday for 30 days).
    pub fn server(&self, names: &[&str]) -> Issued {
        self.issue(&CertSpec::server(names))
    }

    /// A client certificate (clientAuth EKU) for `names`.
    pub fn client(&self, names: &[&str]) -> Issued {
        self.issue(&CertSpec::client(names))
    }

    pub fn issue(&self, spec: &CertSpec) -> Issued {
        let key = match spec.key {
            KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyKind::Rsa2048 => KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256),
            KeyKind::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        }
        .unwrap();
        let mut params = CertificateParams::default();
        let cn = spec.names.first().cloned().unwrap_or_else(|| "test".into());
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = spec.names.iter().map(|n| san(n)).collect();
        let now = time_now();
        params.not_before = now + time::Duration::days(spec.not_before_days);
        params.not_after = now + time::Duration::days(spec.not_after_days);
        params.extended_key_usages = vec![if spec.client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        self.save("", &cert, &key)
    }

    /// Writes a certificate and its key into the CA's directory under fresh names.
    fn save(&self, prefix: &str, cert: &rcgen::Certificate, key: &KeyPair) -> Issued {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let cert_file = self.dir.path().join(format!("{prefix}cert-{n}.pem"));
        let key_file = self.dir.path().join(format!("{prefix}key-{n}.pem"));
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        std::fs::write(&cert_file, &cert_pem).unwrap();
        std::fs::write(&key_file, &key_pem).unwrap();
        Issued {
            cert_pem,
            key_pem,
            cert_file,
            key_file,
        }
    }

    /// A rustls client config that trusts this CA and offers `alpn`.
    pub fn client_config(&self, alpn: &[&str]) -> rustls::ClientConfig {
        self.client_config_with_identity(alpn, None)
    }

    pub fn client_config_with_identity(
        &self,
        alpn: &[&str],
        identity: Option<&Issued>,
    ) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pem_certs(&self.ca_pem).remove(0)).unwrap();
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let mut config = match identity {
            Some(id) => builder
                .with_client_auth_cert(pem_certs(&id.cert_pem), pem_key(&id.key_pem))
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Issued {
    /// Rewrites this certificate's files with `other`'s contents (a renewal in place).
    pub fn replace_with(&self, other: &Issued) {
        std::fs::write(&self.cert_file, &other.cert_pem).unwrap();
        std::fs::write(&self.key_file, &other.key_pem).unwrap();
    }
}

fn san(name: &str) -> SanType {
    if let Ok(ip) = name.parse() {
        return SanType::IpAddress(ip);
    }
    if name.contains("://") {
        return SanType::URI(name.try_into().unwrap());
    }
    SanType::DnsName(name.try_into().unwrap())
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

pub fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap())
        .collect()
}

pub fn pem_key(pem: &str) -> PrivateKeyDer<'static> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// Connects with TLS to `addr`, sending `sni`.
pub async fn tls_connect(
    addr: std::net::SocketAddr,
    sni: &str,
    config: rustls::ClientConfig,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

// === intermediates and self-signed certificates (for `strait check tls`) ===

impl TestCa {
    /// An intermediate CA signed by this one, in its own temp dir: its `ca_file()` and
    /// `ca_pem()` hold the intermediate's certificate, and what it issues chains up to this CA.
    pub fn intermediate(&self, name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let ca_pem = cert.pem();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            ca_pem,
            dir,
            counter: AtomicUsize::new(0),
        }
    }

    /// A self-signed server certificate for `names` (a leaf, not a CA; not issued by this
    /// CA), written into this CA's dir.
    pub fn self_signed(&self, names: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("test"));
        params.subject_alt_names = names.iter().map(|n| san(n)).collect();
        let now = time_now();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(30);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.self_signed(&key).unwrap();
        self.save("self-signed-", &cert, &key)
    }
}
