use std::fmt::Write as _;

use http::HeaderValue;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A verified client certificate's identity, for routing (`client_cert_san`) and for the
/// forwarded identity header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject DN as text, e.g. `CN=orders`.
    pub subject: String,
    pub sans: Vec<San>,
    /// SHA-256 of the certificate's DER, lower-case hex.
    pub hash: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Uri(String),
    Email(String),
    Ip(String),
}

// === impl ClientIdentity ===

impl ClientIdentity {
    /// `None` if the certificate cannot be parsed (rustls already verified it, so this only
    /// happens with exotic encodings).
    pub fn from_der(der: &[u8]) -> Option<ClientIdentity> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(n) => sans.push(San::Dns(n.to_string())),
                    GeneralName::URI(u) => sans.push(San::Uri(u.to_string())),
                    GeneralName::RFC822Name(e) => sans.push(San::Email(e.to_string())),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_text(bytes) {
                            sans.push(San::Ip(ip));
                        }
                    }
                    _ => {}
                }
            }
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut hash = String::with_capacity(64);
        for byte in digest.as_ref() {
            let _ = write!(hash, "{byte:02x}");
        }
        Some(ClientIdentity {
            subject: cert.subject().to_string(),
            sans,
            hash,
        })
    }

    /// True if any SAN, as text, equals `value`.
    pub fn has_san(&self, value: &str) -> bool {
        self.sans.iter().any(|san| san.as_str() == value)
    }

    /// The identity in Envoy's `x-forwarded-client-cert` format:
    /// `Hash=…;Subject="…";URI=…;DNS=…`.
    pub fn header_value(&self) -> Option<HeaderValue> {
        let mut out = format!("Hash={};Subject=\"{}\"", self.hash, escape(&self.subject));
        for san in &self.sans {
            let key = match san {
                San::Dns(_) => "DNS",
                San::Uri(_) => "URI",
                San::Email(_) => "Email",
                San::Ip(_) => "IP",
            };
            let _ = write!(out, ";{key}={}", san.as_str());
        }
        HeaderValue::from_str(&out).ok()
    }
}

// === impl San ===

impl San {
    pub fn as_str(&self) -> &str {
        match self {
            San::Dns(s) | San::Uri(s) | San::Email(s) | San::Ip(s) => s,
        }
    }
}

fn escape(subject: &str) -> String {
    subject.replace('\\', "\\\\").replace('"', "\\\"")
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => {
            let octets: [u8; 4] = bytes.try_into().ok()?;
            Some(std::net::Ipv4Addr::from(octets).to_string())
        }
        16 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            Some(std::net::Ipv6Addr::from(octets).to_string())
        }
        _ => None,
    }
}
