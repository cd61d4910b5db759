//! From what the handshake showed to what it means, in plain words.

use rustls::{AlertDescription, CertificateError};

use super::chain::{self, CertInfo};
use super::observe::Seen;
use super::{Finding, Report, Trust};

/// How the connection went wrong after TCP connected.
#[derive(Debug)]
pub(super) enum Failure {
    /// rustls refused the handshake, or the server sent an alert.
    Tls(rustls::Error),
    /// The connection broke (closed, reset) without an alert.
    Io(std::io::Error),
    /// No handshake within the time limit.
    Timeout,
    /// The server closed the connection right after a handshake that looked complete.
    ClosedAfterHandshake,
}

/// Everything wrong (and the notes worth reading), most fundamental first.
pub(super) fn findings(
    report: &Report,
    seen: &Seen,
    failure: Option<&Failure>,
    trust: &Trust,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Some(failure) = failure {
        findings.push(failed(failure, report, seen));
    }
    if let Some(Err(error)) = &seen.verdict {
        findings.push(untrusted(error, report, trust));
    }
    if report.version.is_some() {
        findings.extend(alpn(report));
        findings.extend(client_auth(seen, failure.is_some()));
    }
    if !findings.iter().any(|f| f.problem) {
        findings.push(all_good(report));
    }
    findings
}

fn failed(failure: &Failure, report: &Report, seen: &Seen) -> Finding {
    let missing_cert = seen.client_auth_requested && !seen.client_cert_sent;
    let sent_cert = seen.client_auth_requested && seen.client_cert_sent;
    let cert_required = || {
        let from = if seen.client_auth_cas.is_empty() {
            String::new()
        } else {
            format!(
                " (it accepts certificates issued by {})",
                quoted_list(&seen.client_auth_cas)
            )
        };
        Finding::problem(
            "client_certificate_required",
            format!(
                "the server requires a client certificate{from}: pass --cert FILE and --key FILE"
            ),
        )
    };
    match failure {
        Failure::Tls(rustls::Error::AlertReceived(alert)) => {
            let alert = *alert;
            if alert == AlertDescription::CertificateRequired
                || (missing_cert && rejects_client_cert(alert))
            {
                return cert_required();
            }
            if sent_cert && rejects_client_cert(alert) {
                return Finding::problem(
                    "client_certificate_rejected",
                    format!(
                        "the server rejected the client certificate from --cert: {}",
                        alert_words(alert)
                    ),
                );
            }
            if alert == AlertDescription::NoApplicationProtocol {
                return Finding::problem(
                    "alpn_rejected",
                    format!(
                        "the server supports none of the offered ALPN protocols ({}) and \
                         refused the handshake: {}",
                        list_or_none(&report.alpn_offered),
                        alert_words(alert)
                    ),
                );
            }
            Finding::problem(
                "handshake_failed",
                format!("the TLS handshake failed: {}", alert_words(alert)),
            )
        }
        Failure::Tls(
            e @ (rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. }),
        ) if seen.chain.is_empty() => Finding::problem(
            "not_tls",
            format!(
                "the server did not answer with TLS ({e}): this looks like a plaintext port \
                 (h2c or HTTP/1.1); use http:// or h2c:// for it, or check the port"
            ),
        ),
        Failure::Tls(rustls::Error::PeerIncompatible(why)) => Finding::problem(
            "handshake_failed",
            format!(
                "the TLS handshake failed: the server is not compatible with this client \
                 ({why:?}); strait speaks TLS 1.2 and 1.3 with modern cipher suites"
            ),
        ),
        Failure::Tls(e) => {
            Finding::problem("handshake_failed", format!("the TLS handshake failed: {e}"))
        }
        Failure::Io(_) | Failure::ClosedAfterHandshake if missing_cert => cert_required(),
        Failure::Io(e) => Finding::problem(
            "handshake_failed",
            format!(
                "the server closed the connection during the TLS handshake ({e}): it may not \
                 speak TLS on this port, or it refused the client hello (an unknown SNI name?)"
            ),
        ),
        Failure::Timeout => Finding::problem(
            "handshake_timeout",
            format!(
                "no TLS handshake within {} s: the server accepted the connection but did \
                 not answer the TLS client hello; it may not speak TLS on this port",
                super::HANDSHAKE_TIMEOUT.as_secs()
            ),
        ),
        Failure::ClosedAfterHandshake => Finding::problem(
            "handshake_failed",
            "the server closed the connection right after the TLS handshake",
        ),
    }
}

/// Alerts a server sends when it does not accept (or did not get) a client certificate.
fn rejects_client_cert(alert: AlertDescription) -> bool {
    matches!(
        alert,
        AlertDescription::HandshakeFailure
            | AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::CertificateRequired
            | AlertDescription::DecryptError
    )
}

fn untrusted(error: &rustls::Error, report: &Report, trust: &Trust) -> Finding {
    let rustls::Error::InvalidCertificate(error) = error else {
        return Finding::problem(
            "untrusted",
            format!("the certificate was not accepted: {error}"),
        );
    };
    let chain: Vec<&CertInfo> = report
        .chain
        .iter()
        .filter_map(|c| c.as_ref().ok())
        .collect();
    let now = report.now;
    match error {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            let context = match error {
                CertificateError::ExpiredContext { not_after, .. } => {
                    i64::try_from(not_after.as_secs()).ok()
                }
                _ => None,
            };
            match chain.iter().find(|c| c.expired_at(now)) {
                Some(cert) => Finding::problem(
                    "expired",
                    format!(
                        "the certificate \"{}\" expired on {} ({}): renew it",
                        cert.subject,
                        chain::rfc3339(cert.not_after),
                        chain::relative(cert.not_after, now)
                    ),
                ),
                None => Finding::problem(
                    "expired",
                    format!(
                        "a certificate in the chain has expired{}: renew it",
                        context
                            .map(|t| format!(" (on {})", chain::rfc3339(t)))
                            .unwrap_or_default()
                    ),
                ),
            }
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            match chain.iter().find(|c| c.not_yet_valid_at(now)) {
                Some(cert) => Finding::problem(
                    "not_yet_valid",
                    format!(
                        "the certificate \"{}\" is not valid yet: not before {} ({}); check \
                         the clocks of this machine and of the server",
                        cert.subject,
                        chain::rfc3339(cert.not_before),
                        chain::relative(cert.not_before, now)
                    ),
                ),
                None => Finding::problem(
                    "not_yet_valid",
                    "a certificate in the chain is not valid yet; check the clocks of this \
                     machine and of the server",
                ),
            }
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let names = match (chain.first(), error) {
                (Some(leaf), _) if !leaf.sans.is_empty() => leaf.sans.join(", "),
                (_, CertificateError::NotValidForNameContext { presented, .. })
                    if !presented.is_empty() =>
                {
                    presented.join(", ")
                }
                _ => "no name at all (it has no subject alternative names; clients ignore \
                      the common name)"
                    .to_owned(),
            };
            let name = report.verified_name.as_deref().unwrap_or("?");
            Finding::problem(
                "hostname_mismatch",
                format!(
                    "the certificate does not match \"{name}\": it is valid for {names}; \
                     connect with one of those names (or pass --sni NAME), or issue a \
                     certificate for \"{name}\""
                ),
            )
        }
        CertificateError::UnknownIssuer => unknown_issuer(&chain, trust),
        CertificateError::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
            ca_as_leaf(&chain, trust)
        }
        CertificateError::BadSignature => Finding::problem(
            "bad_signature",
            "a certificate in the chain is not correctly signed by its issuer",
        ),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            Finding::problem(
                "wrong_purpose",
                "the certificate is not meant for TLS servers (its extended key usage lacks \
                 serverAuth)",
            )
        }
        other => Finding::problem(
            "untrusted",
            format!("the certificate was not accepted: {other:?}"),
        ),
    }
}

/// webpki refuses a certificate marked as a CA (basic constraints CA:TRUE) as the server's
/// own, even when it is trusted; `openssl req -x509` makes such certificates by default.
fn ca_as_leaf(chain: &[&CertInfo], trust: &Trust) -> Finding {
    let Some(leaf) = chain.first() else {
        return Finding::problem("ca_as_leaf", "the server's certificate is a CA certificate");
    };
    let why = "TLS clients built on rustls/webpki (strait among them) refuse a CA certificate \
               (basic constraints CA:TRUE) as a server's own certificate";
    if chain.len() == 1 && leaf.self_issued && !trust.has_subject(&leaf.issuer_der) {
        return Finding::problem(
            "self_signed",
            format!(
                "the certificate is self-signed (\"{}\" issued it to itself) and not \
                 trusted; it is also marked as a CA, and {why}: use a leaf certificate \
                 (CA:FALSE) issued by a CA",
                leaf.subject
            ),
        );
    }
    Finding::problem(
        "ca_as_leaf",
        format!(
            "the server's certificate \"{}\" is a CA certificate: {why}; issue a leaf \
             certificate (CA:FALSE) for the server",
            leaf.subject
        ),
    )
}

fn unknown_issuer(chain: &[&CertInfo], trust: &Trust) -> Finding {
    let (Some(leaf), Some(last)) = (chain.first(), chain.last()) else {
        return Finding::problem("untrusted", "the certificate is not issued by a trusted CA");
    };
    let pass_ca = match trust {
        Trust::CaFile { path, .. } => format!("it is not in --ca {}", path.display()),
        Trust::PublicRoots(_) => {
            "it is not a public root; pass your private CA with --ca FILE".to_owned()
        }
        Trust::Insecure => "not checked".to_owned(),
    };
    if chain.len() == 1 && leaf.self_issued {
        return Finding::problem(
            "self_signed",
            format!(
                "the certificate is self-signed (\"{}\" issued it to itself) and not trusted \
                 ({pass_ca}); use a certificate issued by a CA, or pass this certificate \
                 with --ca FILE if you mean to trust it",
                leaf.subject
            ),
        );
    }
    if last.self_issued {
        return Finding::problem(
            "unknown_ca",
            format!(
                "the chain ends at the root \"{}\", which is not trusted ({pass_ca})",
                last.subject
            ),
        );
    }
    if trust.has_subject(&last.issuer_der) {
        return Finding::problem(
            "untrusted",
            format!(
                "the chain does not verify up to the trusted root \"{}\": a certificate is \
                 not correctly signed by its issuer, or an intermediate is the wrong one",
                last.issuer
            ),
        );
    }
    if chain.len() == 1 {
        // A leaf alone whose issuer we do not have: either the server leaves out the
        // intermediate, or the issuer is a CA we were not told to trust. With --ca the user
        // named the CA they expect, so the intermediate is what is missing; with the public
        // roots, a leaf that does not say where its issuer lives (public CAs' leaves do) is
        // most likely from a private CA.
        if matches!(trust, Trust::PublicRoots(_)) && !leaf.has_issuer_url {
            return Finding::problem(
                "unknown_ca",
                format!(
                    "the certificate is issued by \"{}\", which is not a public root: if it \
                     is your private CA, pass it with --ca FILE; if it is an intermediate, \
                     the server does not send it (incomplete chain): configure the server to \
                     send the full chain (leaf, then intermediates)",
                    leaf.issuer
                ),
            );
        }
        return Finding::problem(
            "incomplete_chain",
            format!(
                "incomplete chain: the server sent only its own certificate, issued by \
                 \"{}\", which is not a trusted root, so the intermediate certificate is \
                 missing: configure the server to send the full chain (leaf, then \
                 intermediates). If \"{}\" is itself a root CA, {pass_ca}",
                leaf.issuer, leaf.issuer
            ),
        );
    }
    Finding::problem(
        "unknown_issuer",
        format!(
            "the chain ends at \"{}\", issued by \"{}\", which is not a trusted root: either \
             the server leaves out an intermediate (incomplete chain) or \"{}\" is an unknown \
             CA ({pass_ca})",
            last.subject, last.issuer, last.issuer
        ),
    )
}

fn alpn(report: &Report) -> Option<Finding> {
    let offered_h2 = report.alpn_offered.iter().any(|p| p == "h2");
    match (&report.alpn, offered_h2) {
        (Some(p), true) if p == "h2" => None,
        (Some(p), true) => Some(Finding::problem(
            "alpn_not_h2",
            format!(
                "the server selected {p} over h2: gRPC clients will fail or fall back to \
                 HTTP/1.1; make the server offer h2 in ALPN (in strait: `alpn: [h2, \
                 http/1.1]`, the default)"
            ),
        )),
        (None, true) => Some(Finding::problem(
            "alpn_none",
            "the server selected no ALPN protocol: gRPC clients will fail or fall back to \
             HTTP/1.1 (gRPC over TLS needs h2 negotiated by ALPN); make the server offer h2 \
             in ALPN (in strait: `alpn: [h2, http/1.1]`, the default)",
        )),
        (negotiated, false) => Some(Finding::note(
            "alpn_h2_not_offered",
            format!(
                "h2 was not offered ({}), so the server selected {}; gRPC needs h2: offer it \
                 (`--alpn h2,http/1.1`) to check a gRPC endpoint",
                if report.alpn_offered.is_empty() {
                    "no ALPN offered".to_owned()
                } else {
                    format!("offered: {}", report.alpn_offered.join(", "))
                },
                negotiated.as_deref().unwrap_or("no protocol")
            ),
        )),
    }
}

fn client_auth(seen: &Seen, failed: bool) -> Option<Finding> {
    if failed || !seen.client_auth_requested {
        return None;
    }
    if seen.client_cert_sent {
        return Some(Finding::note(
            "client_certificate_accepted",
            "the server asked for a client certificate and accepted the one from --cert",
        ));
    }
    Some(Finding::note(
        "client_certificate_optional",
        "the server asked for a client certificate but went on without one (optional client \
         authentication); it may still refuse requests that carry none",
    ))
}

fn all_good(report: &Report) -> Finding {
    let trust = match report.verification {
        super::Verification::Insecure => "the certificate was not verified (--insecure)",
        _ => "the certificate verifies",
    };
    let message = match report.alpn.as_deref() {
        Some("h2") => format!("h2 negotiated and {trust}: gRPC clients can connect"),
        Some(p) => format!("{p} negotiated and {trust}"),
        None => format!("the handshake succeeded and {trust}"),
    };
    Finding::note("ok", message)
}

/// An alert by its RFC name, with what it usually means.
pub(super) fn alert_words(alert: AlertDescription) -> String {
    use AlertDescription as A;
    let (name, words) = match alert {
        A::CloseNotify => ("close_notify", "the server closed the connection"),
        A::UnexpectedMessage => (
            "unexpected_message",
            "the server got a message it did not expect",
        ),
        A::BadRecordMac => ("bad_record_mac", "a record failed its integrity check"),
        A::HandshakeFailure => (
            "handshake_failure",
            "the server found nothing acceptable: no common cipher suite or signature \
             algorithm, or it requires a client certificate",
        ),
        A::BadCertificate => (
            "bad_certificate",
            "the server rejected the client certificate",
        ),
        A::UnsupportedCertificate => (
            "unsupported_certificate",
            "the server does not support the client certificate's type",
        ),
        A::CertificateRevoked => (
            "certificate_revoked",
            "the server says the client certificate is revoked",
        ),
        A::CertificateExpired => (
            "certificate_expired",
            "the server says the client certificate has expired",
        ),
        A::CertificateUnknown => (
            "certificate_unknown",
            "the server could not accept the client certificate",
        ),
        A::IllegalParameter => (
            "illegal_parameter",
            "the server found a value in the handshake out of range",
        ),
        A::UnknownCA => (
            "unknown_ca",
            "the server does not trust the CA that issued the client certificate",
        ),
        A::AccessDenied => ("access_denied", "the server's policy refused this client"),
        A::DecodeError => ("decode_error", "the server could not decode a message"),
        A::DecryptError => (
            "decrypt_error",
            "a signature or key check failed on the server",
        ),
        A::ProtocolVersion => (
            "protocol_version",
            "no TLS version in common (this check offers TLS 1.2 and 1.3)",
        ),
        A::InsufficientSecurity => (
            "insufficient_security",
            "the server wants stronger cipher suites than offered",
        ),
        A::InternalError => (
            "internal_error",
            "the server failed on its side (often a certificate or key it cannot use)",
        ),
        A::UserCanceled => ("user_canceled", "the server cancelled the handshake"),
        A::MissingExtension => (
            "missing_extension",
            "the server needs a TLS extension the client did not send",
        ),
        A::UnsupportedExtension => (
            "unsupported_extension",
            "the server got an extension it does not support",
        ),
        A::UnrecognisedName => (
            "unrecognized_name",
            "the server has no certificate for the SNI name sent; check --sni",
        ),
        A::CertificateRequired => (
            "certificate_required",
            "the server requires a client certificate",
        ),
        A::NoApplicationProtocol => (
            "no_application_protocol",
            "the server supports none of the offered ALPN protocols",
        ),
        other => return format!("alert {} ({other:?})", u8::from(other)),
    };
    format!("alert {name} ({words})")
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}
