//! A certificate verifier and a client-certificate resolver that write down what the
//! handshake showed them, so the report can describe a chain that does not verify and a
//! server that asked for a client certificate.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::chain;

/// What one handshake showed.
#[derive(Clone, Debug, Default)]
pub(super) struct Seen {
    /// The certificates the server sent, leaf first.
    pub(super) chain: Vec<CertificateDer<'static>>,
    /// The verifier's verdict; `None` when it did not run or with `--insecure`.
    pub(super) verdict: Option<Result<(), rustls::Error>>,
    /// The server sent a CertificateRequest.
    pub(super) client_auth_requested: bool,
    /// The CAs the server said it accepts client certificates from.
    pub(super) client_auth_cas: Vec<String>,
    /// We answered the request with a certificate.
    pub(super) client_cert_sent: bool,
}

/// Shared between the verifier, the resolver and `run`.
#[derive(Debug, Default)]
pub(super) struct Observed(Mutex<Seen>);

/// Wraps the webpki verifier: records its verdict and lets the handshake go on, because the
/// ALPN, version and chain are worth reporting even when the chain does not verify.
#[derive(Debug)]
pub(super) struct RecordingVerifier {
    /// `None` with `--insecure`.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
    observed: Arc<Observed>,
}

/// Offers the `--cert`/`--key` identity, if any, and records that the server asked.
#[derive(Debug)]
pub(super) struct RecordingResolver {
    identity: Option<Arc<CertifiedKey>>,
    observed: Arc<Observed>,
}

// === impl Observed ===

impl Observed {
    pub(super) fn seen(&self) -> Seen {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

// === impl RecordingVerifier ===

impl RecordingVerifier {
    pub(super) fn new(
        webpki: Option<Arc<WebPkiServerVerifier>>,
        algorithms: WebPkiSupportedAlgorithms,
        observed: Arc<Observed>,
    ) -> RecordingVerifier {
        RecordingVerifier {
            webpki,
            algorithms,
            observed,
        }
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.webpki.as_ref().map(|webpki| {
            webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ())
        });
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        self.observed.update(|seen| {
            seen.chain = chain;
            seen.verdict = verdict;
        });
        Ok(ServerCertVerified::assertion())
    }

    // The handshake signatures are still checked: they prove the server holds the key of the
    // certificate it sent, whatever we make of the certificate.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

// === impl RecordingResolver ===

impl RecordingResolver {
    pub(super) fn new(
        identity: Option<Arc<CertifiedKey>>,
        observed: Arc<Observed>,
    ) -> RecordingResolver {
        RecordingResolver { identity, observed }
    }
}

impl ResolvesClientCert for RecordingResolver {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let cas = root_hint_subjects
            .iter()
            .map(|der| chain::name_from_der(der))
            .collect();
        let sent = self.identity.is_some();
        self.observed.update(|seen| {
            seen.client_auth_requested = true;
            seen.client_auth_cas = cas;
            seen.client_cert_sent = sent;
        });
        self.identity.clone()
    }

    fn has_certs(&self) -> bool {
        self.identity.is_some()
    }
}
