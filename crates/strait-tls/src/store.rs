use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use strait_config::CertificateFiles;
use strait_core::DrainWatch;
use tracing::{info, warn};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{pem, provider, TlsError};

/// How often certificate and key files are re-read to pick up renewals.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// An entrypoint's certificates, chosen by SNI, swapped in place when their files change.
/// New handshakes see the new certificates; open connections keep theirs.
#[derive(Debug)]
pub struct CertStore {
    entrypoint: Arc<str>,
    files: Vec<CertificateFiles>,
    strict: bool,
    current: ArcSwap<Certs>,
    /// The file contents the current certificates were built from.
    loaded: Mutex<Contents>,
}

#[derive(Debug)]
struct Certs {
    /// Lower-case DNS name → certificate.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com` → certificate.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

/// The bytes of each (certificate, key) file pair, in config order.
type Contents = Vec<(Vec<u8>, Vec<u8>)>;

/// What a reload found.
#[derive(Debug)]
pub enum Reload {
    Unchanged,
    Swapped,
    /// The files changed but cannot be used; the old certificates stay.
    Kept(TlsError),
}

// === impl CertStore ===

impl CertStore {
    pub fn load(
        entrypoint: &str,
        files: &[CertificateFiles],
        strict: bool,
    ) -> Result<CertStore, TlsError> {
        let contents = read_all(files)?;
        let certs = build(files, &contents)?;
        Ok(CertStore {
            entrypoint: Arc::from(entrypoint),
            files: files.to_vec(),
            strict,
            current: ArcSwap::from_pointee(certs),
            loaded: Mutex::new(contents),
        })
    }

    /// The certificate for `sni`: an exact name, then a wildcard one level up, then (unless
    /// strict) the default.
    pub fn resolve_name(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let certs = self.current.load();
        if let Some(name) = sni {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(cert) = certs.exact.get(&name) {
                return Some(cert.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(cert) = certs.wildcard.get(parent) {
                    return Some(cert.clone());
                }
            }
        }
        if self.strict {
            return None;
        }
        Some(certs.default.clone())
    }

    /// Re-reads the files; swaps in new certificates if they changed and are usable.
    pub fn reload(&self) -> Reload {
        let contents = match read_all(&self.files) {
            Ok(contents) => contents,
            Err(e) => return Reload::Kept(e),
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if *loaded == contents {
            return Reload::Unchanged;
        }
        match build(&self.files, &contents) {
            Ok(certs) => {
                self.current.store(Arc::new(certs));
                *loaded = contents;
                Reload::Swapped
            }
            Err(e) => Reload::Kept(e),
        }
    }

    /// Re-reads the files every second until `drain` fires, logging each swap and each
    /// refused renewal once.
    pub async fn watch(self: Arc<Self>, mut drain: DrainWatch) {
        let mut last_error = None::<String>;
        loop {
            tokio::select! {
                _ = drain.signaled() => return,
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
            match self.reload() {
                Reload::Unchanged => {}
                Reload::Swapped => {
                    last_error = None;
                    info!(entrypoint = %self.entrypoint, "certificates reloaded");
                }
                Reload::Kept(e) => {
                    let message = e.to_string();
                    if last_error.as_ref() != Some(&message) {
                        warn!(entrypoint = %self.entrypoint, error = %message, "new certificate files are unusable; still serving the previous certificates");
                        last_error = Some(message);
                    }
                }
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.resolve_name(hello.server_name())
    }
}

fn read_all(files: &[CertificateFiles]) -> Result<Contents, TlsError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            TlsError::Pem(pem::PemError {
                path: path.to_owned(),
                what: format!("cannot read: {e}"),
                hint: "check the path and the file's permissions",
            })
        })
    };
    files
        .iter()
        .map(|f| Ok((read(&f.cert_file)?, read(&f.key_file)?)))
        .collect()
}

fn build(files: &[CertificateFiles], contents: &Contents) -> Result<Certs, TlsError> {
    let provider = provider();
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut default = None;
    for (index, (file, (cert_pem, key_pem))) in files.iter().zip(contents).enumerate() {
        let bad = |path: &std::path::Path, what: String, hint| {
            TlsError::Pem(pem::PemError {
                path: path.to_owned(),
                what,
                hint,
            })
        };
        let chain = pem::parse_certs(cert_pem).map_err(|what| {
            bad(
                &file.cert_file,
                what,
                "a certificate file holds PEM certificates, leaf first",
            )
        })?;
        let key = pem::parse_key(key_pem).map_err(|what| {
            bad(
                &file.key_file,
                what,
                "use a PKCS#8, RSA or EC private key in PEM",
            )
        })?;
        let signing = provider.key_provider.load_private_key(key).map_err(|e| {
            bad(
                &file.key_file,
                format!("unusable private key: {e}"),
                "RSA, ECDSA P-256/P-384 and Ed25519 keys work",
            )
        })?;
        let certified = CertifiedKey::new(chain, signing);
        if let Err(e) = certified.keys_match() {
            return Err(bad(
                &file.key_file,
                format!(
                    "does not belong to the certificate in {}: {e}",
                    file.cert_file.display()
                ),
                "renew the certificate and key together",
            ));
        }
        let names = dns_names(
            certified
                .end_entity_cert()
                .map(|c| c.as_ref())
                .unwrap_or(&[]),
        );
        let certified = Arc::new(certified);
        for name in names {
            match name.strip_prefix("*.") {
                Some(parent) => wildcard
                    .entry(parent.to_owned())
                    .or_insert(certified.clone()),
                None => exact.entry(name).or_insert(certified.clone()),
            };
        }
        if file.default || (index == 0 && !files.iter().any(|f| f.default)) {
            default = Some(certified);
        }
    }
    let default = default.ok_or_else(|| TlsError::Invalid("no certificates".to_owned()))?;
    Ok(Certs {
        exact,
        wildcard,
        default,
    })
}

/// The DNS names a certificate is for: its SANs, or its CN when it has none.
fn dns_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            if let GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    names
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn write_cert(dir: &Path, name: &str, sans: &[&str]) -> CertificateFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let files = CertificateFiles {
            cert_file: dir.join(format!("{name}.pem")),
            key_file: dir.join(format!("{name}.key")),
            default: false,
        };
        std::fs::write(&files.cert_file, cert.pem()).unwrap();
        std::fs::write(&files.key_file, key.serialize_pem()).unwrap();
        files
    }

    fn leaf(store: &CertStore, sni: Option<&str>) -> Option<Vec<u8>> {
        store
            .resolve_name(sni)
            .map(|c| c.end_entity_cert().unwrap().as_ref().to_vec())
    }

    #[test]
    fn exact_wildcard_and_default() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_cert(dir.path(), "a", &["a.test"]);
        let wild = write_cert(dir.path(), "wild", &["*.w.test"]);
        let store = CertStore::load("web", &[a.clone(), wild], false).unwrap();
        let a_der = leaf(&store, Some("a.test")).unwrap();
        let wild_der = leaf(&store, Some("x.w.test")).unwrap();
        assert_ne!(a_der, wild_der);
        assert_eq!(leaf(&store, Some("A.TEST.")).unwrap(), a_der);
        // A wildcard covers exactly one label.
        assert_eq!(leaf(&store, Some("y.x.w.test")).unwrap(), a_der);
        assert_eq!(leaf(&store, Some("w.test")).unwrap(), a_der);
        assert_eq!(leaf(&store, None).unwrap(), a_der);
    }

    #[test]
    fn explicit_default_and_strict() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_cert(dir.path(), "a", &["a.test"]);
        let mut b = write_cert(dir.path(), "b", &["b.test"]);
        b.default = true;
        let store = CertStore::load("web", &[a.clone(), b.clone()], false).unwrap();
        assert_eq!(leaf(&store, Some("other")), leaf(&store, Some("b.test")));
        let strict = CertStore::load("web", &[a, b], true).unwrap();
        assert!(leaf(&strict, Some("other")).is_none());
        assert!(leaf(&strict, None).is_none());
        assert!(leaf(&strict, Some("a.test")).is_some());
    }

    #[test]
    fn reload_swaps_good_files_and_keeps_the_old_on_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_cert(dir.path(), "a", &["a.test"]);
        let store = CertStore::load("web", std::slice::from_ref(&files), false).unwrap();
        let before = leaf(&store, Some("a.test"));
        assert!(matches!(store.reload(), Reload::Unchanged));

        std::fs::write(&files.cert_file, "not a certificate").unwrap();
        assert!(matches!(store.reload(), Reload::Kept(_)));
        assert_eq!(leaf(&store, Some("a.test")), before);

        let renewed = write_cert(dir.path(), "renewed", &["a.test"]);
        std::fs::copy(&renewed.cert_file, &files.cert_file).unwrap();
        // The old key does not match the new certificate: refused too.
        assert!(
            matches!(store.reload(), Reload::Kept(TlsError::Pem(ref e)) if e.what.contains("does not belong"))
        );
        std::fs::copy(&renewed.key_file, &files.key_file).unwrap();
        assert!(matches!(store.reload(), Reload::Swapped));
        assert_ne!(leaf(&store, Some("a.test")), before);
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_cert(dir.path(), "a", &["a.test"]);
        std::fs::write(
            &files.key_file,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = CertStore::load("web", std::slice::from_ref(&files), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&files.key_file.display().to_string()), "{err}");
    }
}
