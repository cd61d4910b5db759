use std::sync::Arc;
use std::time::Duration;

use rustls::server::{Acceptor, WebPkiClientVerifier};
use rustls::ServerConfig;
use strait_config::{AlpnProtocol, ClientAuthMode, ServerTls, TlsVersion};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;
use tracing::warn;

use crate::fault::HandshakeFault;
use crate::{pem, CertStore, ClientIdentity, TlsError};

/// TLS termination for one entrypoint: the rustls config, its certificate store, and the
/// handshake rules (timeout, ALPN, client certificates).
#[derive(Debug)]
pub struct TlsListener {
    entrypoint: Arc<str>,
    config: Arc<ServerConfig>,
    store: Arc<CertStore>,
    alpn: Vec<AlpnProtocol>,
    handshake_timeout: Duration,
    /// The entrypoint's `tls.fault` (delays only), for rehearsals.
    fault: Option<HandshakeFault>,
}

/// A finished handshake and what it negotiated.
#[derive(Debug)]
pub struct Accepted {
    pub stream: TlsStream<TcpStream>,
    /// `None` when the client offered no ALPN.
    pub alpn: Option<AlpnProtocol>,
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    pub sni: Option<String>,
    /// The verified client certificate's identity, when one was presented.
    pub client: Option<Arc<ClientIdentity>>,
}

/// Why a handshake did not complete, in words for the log.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no TLS handshake within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Refused(String),
    #[error("connection failed during the TLS handshake: {0}")]
    Io(std::io::Error),
}

// === impl TlsListener ===

impl TlsListener {
    pub fn new(entrypoint: &str, tls: &ServerTls) -> Result<TlsListener, TlsError> {
        let store = Arc::new(CertStore::load(
            entrypoint,
            &tls.certificates,
            tls.sni_strict,
        )?);
        let provider = Arc::new(restricted_provider(&tls.cipher_suites)?);
        let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let what = || format!("TLS settings of entrypoint `{entrypoint}`");
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|source| TlsError::Rustls {
                what: what(),
                source,
            })?;
        let builder = match &tls.client_auth {
            Some(auth) if auth.mode != ClientAuthMode::None => {
                let ca_file = auth.ca_file.as_deref().ok_or_else(|| {
                    TlsError::Invalid(format!(
                        "entrypoint `{entrypoint}`: client_auth needs a ca_file"
                    ))
                })?;
                let roots = Arc::new(pem::load_roots(ca_file)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = match auth.mode {
                    ClientAuthMode::Request => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                let verifier = verifier.build().map_err(|e| {
                    TlsError::Invalid(format!(
                        "client CA {} of entrypoint `{entrypoint}`: {e}",
                        ca_file.display()
                    ))
                })?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(store.clone());
        // The server's order decides: h2 wins whenever the client offers it.
        config.alpn_protocols = tls
            .alpn
            .iter()
            .map(|p| p.as_str().as_bytes().to_vec())
            .collect();
        let fault = tls.fault.as_ref().map(HandshakeFault::downstream);
        if let Some(fault) = &fault {
            // At every load, so that a rehearsal is not left on by accident.
            warn!(
                entrypoint,
                "TLS fault injection is active for entrypoint `{entrypoint}`: {} from \
                 clients; remove `tls.fault` when the rehearsal ends",
                fault.describe()
            );
        }
        Ok(TlsListener {
            entrypoint: Arc::from(entrypoint),
            config: Arc::new(config),
            store,
            alpn: tls.alpn.clone(),
            handshake_timeout: tls.handshake_timeout,
            fault,
        })
    }

    pub fn store(&self) -> &Arc<CertStore> {
        &self.store
    }

    /// The protocols this listener allows, in preference order.
    pub fn alpn(&self) -> &[AlpnProtocol] {
        &self.alpn
    }

    /// How long the entrypoint's `tls.fault` holds the next handshake back, if at all.
    pub fn injected_delay(&self) -> Option<Duration> {
        self.fault.as_ref().and_then(|fault| fault.decide().delay)
    }

    /// Runs the handshake within the handshake timeout, after waiting `delay` (an injected
    /// fault, from [`TlsListener::injected_delay`]): the wait counts against the timeout, as
    /// a slow handshake's would.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        delay: Option<Duration>,
    ) -> Result<Accepted, HandshakeError> {
        let handshake = async {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            self.handshake(tcp).await
        };
        match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(result) => result,
            Err(_) => Err(HandshakeError::Timeout(self.handshake_timeout)),
        }
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<Accepted, HandshakeError> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), tcp)
            .await
            .map_err(|e| refused_or_io(e, "before its ClientHello"))?;
        let hello = start.client_hello();
        let sni = hello.server_name().map(str::to_owned);
        let offered: Vec<String> = hello
            .alpn()
            .map(|protocols| {
                protocols
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let stream = start.into_stream(self.config.clone()).await.map_err(|e| {
            let context = match rustls_error(&e) {
                Some(rustls::Error::NoApplicationProtocol) => format!(
                    "client offered ALPN [{}] but entrypoint `{}` allows only [{}]; sent no_application_protocol",
                    offered.join(", "),
                    self.entrypoint,
                    self.alpn.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
                ),
                Some(rustls::Error::General(m)) if m.contains("no server certificate") => format!(
                    "no certificate for SNI {} on entrypoint `{}` (sni_strict)",
                    sni.as_deref().map_or("(none)".to_owned(), |s| format!("`{s}`")),
                    self.entrypoint
                ),
                _ => String::new(),
            };
            if context.is_empty() {
                refused_or_io(e, "during the handshake")
            } else {
                HandshakeError::Refused(context)
            }
        })?;
        let connection = stream.get_ref().1;
        let alpn = match connection.alpn_protocol() {
            Some(b"h2") => Some(AlpnProtocol::H2),
            Some(b"http/1.1") => Some(AlpnProtocol::Http11),
            _ => None,
        };
        let version = match connection.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            _ => "TLSv1.2",
        };
        let client = connection
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| ClientIdentity::from_der(leaf.as_ref()))
            .map(Arc::new);
        Ok(Accepted {
            stream,
            alpn,
            version,
            sni,
            client,
        })
    }
}

fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn refused_or_io(e: std::io::Error, when: &str) -> HandshakeError {
    match rustls_error(&e) {
        Some(tls) => HandshakeError::Refused(format!("TLS handshake failed {when}: {tls}")),
        None => HandshakeError::Io(e),
    }
}

/// The aws-lc-rs provider limited to the named suites (all of them when the list is empty).
fn restricted_provider(names: &[String]) -> Result<rustls::crypto::CryptoProvider, TlsError> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if names.is_empty() {
        return Ok(provider);
    }
    let mut suites = Vec::with_capacity(names.len());
    for name in names {
        let suite = provider
            .cipher_suites
            .iter()
            .find(|s| suite_name(s) == *name)
            .ok_or_else(|| TlsError::Invalid(format!("unknown cipher suite `{name}`")))?;
        suites.push(*suite);
    }
    provider.cipher_suites = suites;
    Ok(provider)
}

pub(crate) fn suite_name(suite: &rustls::SupportedCipherSuite) -> String {
    format!("{:?}", suite.suite())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config crate validates suite names against its own list; it must be exactly the
    /// provider's, or valid names would be refused (or unknown ones accepted).
    #[test]
    fn config_cipher_suite_names_are_the_providers() {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let mut ours: Vec<_> = provider.cipher_suites.iter().map(suite_name).collect();
        let mut config: Vec<_> = strait_config::CIPHER_SUITES
            .iter()
            .map(|s| s.to_string())
            .collect();
        ours.sort();
        config.sort();
        assert_eq!(ours, config);
    }
}
