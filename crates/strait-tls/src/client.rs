use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use strait_config::{AlpnProtocol, UpstreamTls};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tracing::warn;

use crate::fault::{HandshakeFault, Injected};
use crate::{pem, provider, TlsError};

/// How a service's `https://` servers are reached: one rustls client config per service,
/// shared by its endpoints.
#[derive(Clone, Debug)]
pub struct UpstreamConnector {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
    alpn: Vec<AlpnProtocol>,
    service: Arc<str>,
    /// The service's `tls.fault`, for rehearsals.
    fault: Option<HandshakeFault>,
}

/// A finished upstream handshake.
#[derive(Debug)]
pub struct Connected {
    pub stream: TlsStream<TcpStream>,
    /// `None` when the server chose no protocol (treated as HTTP/1.1).
    pub alpn: Option<AlpnProtocol>,
}

/// Accepts any certificate but still checks handshake signatures, so the connection is at
/// least encrypted to whoever holds the presented key. `insecure_skip_verify` only.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

// === impl UpstreamConnector ===

impl UpstreamConnector {
    pub fn new(service: &str, tls: Option<&UpstreamTls>) -> Result<UpstreamConnector, TlsError> {
        let defaults = UpstreamTls {
            alpn: vec![AlpnProtocol::H2, AlpnProtocol::Http11],
            ca_file: None,
            server_name: None,
            client_cert: None,
            insecure_skip_verify: false,
            fault: None,
        };
        let tls = tls.unwrap_or(&defaults);
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Rustls {
                what: format!("TLS settings of service `{service}`"),
                source,
            })?;
        let builder = if tls.insecure_skip_verify {
            warn!(service, "insecure_skip_verify is on: backend certificates are NOT verified; use this only in development");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        } else {
            let roots = match &tls.ca_file {
                Some(ca) => pem::load_roots(ca)?,
                None => {
                    rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned())
                }
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match &tls.client_cert {
            Some(files) => {
                let chain = pem::load_certs(&files.cert_file)?;
                let key = pem::load_key(&files.key_file)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|source| TlsError::Rustls {
                        what: format!(
                            "client certificate {} of service `{service}`",
                            files.cert_file.display()
                        ),
                        source,
                    })?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = tls
            .alpn
            .iter()
            .map(|p| p.as_str().as_bytes().to_vec())
            .collect();
        let server_name = match &tls.server_name {
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|e| {
                TlsError::Invalid(format!("server_name `{name}` of service `{service}`: {e}"))
            })?),
            None => None,
        };
        let fault = tls.fault.as_ref().map(HandshakeFault::upstream);
        if let Some(fault) = &fault {
            // At every load, so that a rehearsal is not left on by accident.
            warn!(
                service,
                "TLS fault injection is active for service `{service}`: {} to its https:// \
                 servers; remove `tls.fault` when the rehearsal ends",
                fault.describe()
            );
        }
        Ok(UpstreamConnector {
            config: Arc::new(config),
            server_name,
            alpn: tls.alpn.clone(),
            service: Arc::from(service),
            fault,
        })
    }

    /// The service these settings belong to.
    pub fn service(&self) -> &Arc<str> {
        &self.service
    }

    /// What the service's `tls.fault` does to the next handshake (nothing without one).
    pub fn injected_fault(&self) -> Injected {
        self.fault
            .as_ref()
            .map_or_else(Injected::default, HandshakeFault::decide)
    }

    /// True if `protocol` is among the protocols offered to the backend.
    pub fn offers(&self, protocol: AlpnProtocol) -> bool {
        self.alpn.contains(&protocol)
    }

    /// TLS over `tcp`, verifying the certificate against `server_name` or else `host`.
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> std::io::Result<Connected> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        };
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let stream = connector.connect(name, tcp).await?;
        let alpn = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Some(AlpnProtocol::H2),
            Some(b"http/1.1") => Some(AlpnProtocol::Http11),
            _ => None,
        };
        Ok(Connected { stream, alpn })
    }
}

// === impl NoVerification ===

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
