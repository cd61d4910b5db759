use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file that could not be used, with the path and a hint.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what} ({hint})")]
pub struct PemError {
    pub path: PathBuf,
    pub what: String,
    pub hint: &'static str,
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|e| PemError {
        path: path.to_owned(),
        what: format!("cannot read: {e}"),
        hint: "check the path and the file's permissions",
    })
}

/// Every certificate in a PEM file, leaf first for chains. At least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let bytes = read(path)?;
    parse_certs(&bytes).map_err(|what| PemError {
        path: path.to_owned(),
        what,
        hint:
            "a certificate file holds one or more `-----BEGIN CERTIFICATE-----` blocks, leaf first",
    })
}

pub(crate) fn parse_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate found".to_owned());
    }
    Ok(certs)
}

/// The private key in a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let bytes = read(path)?;
    parse_key(&bytes).map_err(|what| PemError {
        path: path.to_owned(),
        what,
        hint: "a key file holds one `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block",
    })
}

pub(crate) fn parse_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no private key found".to_owned(),
        e => format!("not a valid PEM private key: {e}"),
    })
}

/// A CA bundle as a root store. At least one usable certificate.
pub fn load_roots(path: &Path) -> Result<rustls::RootCertStore, PemError> {
    let certs = load_certs(path)?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(PemError {
            path: path.to_owned(),
            what: "no usable CA certificate".to_owned(),
            hint: "a CA file holds one or more PEM CA certificates",
        });
    }
    Ok(roots)
}
