//! TLS for strait, on rustls with the aws-lc-rs provider only: listener configs with SNI
//! certificate selection and hot swap, ALPN, mTLS and client identities, upstream client
//! configs, and the `strait check tls` diagnostic.

pub mod check;
mod client;
mod fault;
mod identity;
mod pem;
mod server;
mod store;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use client::{Connected, UpstreamConnector};
pub use fault::Injected;
pub use identity::ClientIdentity;
pub use pem::{load_certs, load_key, load_roots, PemError};
pub use server::{Accepted, HandshakeError, TlsListener};
pub use store::{CertStore, Reload};

/// The one crypto provider strait uses: aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Errors building TLS configs from a validated config: they name the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("{what}: {source}")]
    Rustls { what: String, source: rustls::Error },
    #[error("{0}")]
    Invalid(String),
}
