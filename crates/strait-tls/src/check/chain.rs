//! What a certificate says, read with x509-parser, in the words the report uses.

use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS, OID_PKIX_AUTHORITY_INFO_ACCESS, OID_SIG_ED25519,
    OID_SIG_ED448,
};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

const DAY: i64 = 24 * 60 * 60;

/// One certificate of the chain the server sent.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CertInfo {
    pub(crate) subject: String,
    pub(crate) issuer: String,
    pub(crate) sans: Vec<String>,
    /// Unix seconds.
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    pub(crate) key: String,
    pub(crate) is_ca: bool,
    /// Issuer and subject are the same name: a root, or a self-signed leaf.
    pub(crate) self_issued: bool,
    /// The issuer name's DER contents (no SEQUENCE header), as trust anchors store subjects.
    pub(crate) issuer_der: Vec<u8>,
    /// It says where to fetch its issuer's certificate, as public CAs' certificates do.
    pub(crate) has_issuer_url: bool,
}

// === impl CertInfo ===

impl CertInfo {
    pub(crate) fn parse(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
        let (_, cert) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
        let validity = cert.validity();
        Ok(CertInfo {
            subject: name(cert.subject()),
            issuer: name(cert.issuer()),
            sans: sans(&cert),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            key: key_kind(&cert),
            is_ca: cert.is_ca(),
            self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
            issuer_der: der_contents(cert.issuer().as_raw()).to_vec(),
            has_issuer_url: matches!(
                cert.get_extension_unique(&OID_PKIX_AUTHORITY_INFO_ACCESS),
                Ok(Some(_))
            ),
        })
    }

    pub(crate) fn expired_at(&self, now: i64) -> bool {
        now > self.not_after
    }

    pub(crate) fn not_yet_valid_at(&self, now: i64) -> bool {
        now < self.not_before
    }
}

/// Now, in Unix seconds.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A distinguished name the way openssl prints it (`CN=example.com, O=Example`), or a
/// placeholder when it is empty.
pub(crate) fn name(name: &X509Name<'_>) -> String {
    let text = name.to_string();
    if text.is_empty() {
        "(empty name)".to_owned()
    } else {
        text
    }
}

/// A DER-encoded distinguished name (with its SEQUENCE header), as a server lists the CAs it
/// accepts client certificates from.
pub(crate) fn name_from_der(der: &[u8]) -> String {
    match X509Name::from_der(der) {
        Ok((_, parsed)) => name(&parsed),
        Err(_) => "(unreadable name)".to_owned(),
    }
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .map(|general| match general {
            GeneralName::DNSName(dns) => format!("DNS:{dns}"),
            GeneralName::IPAddress(bytes) => format!("IP:{}", ip(bytes)),
            GeneralName::URI(uri) => format!("URI:{uri}"),
            GeneralName::RFC822Name(email) => format!("email:{email}"),
            GeneralName::DirectoryName(dn) => format!("DirName:{}", name(dn)),
            other => format!("{other:?}"),
        })
        .collect()
}

fn ip(bytes: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return std::net::Ipv4Addr::from(v4).to_string();
    }
    if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        return std::net::Ipv6Addr::from(v6).to_string();
    }
    format!("(invalid, {} bytes)", bytes.len())
}

fn key_kind(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION || *algorithm == OID_PKCS1_RSASSAPSS {
        return match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                format!("RSA {}", bits(rsa.modulus))
            }
            _ => "RSA".to_owned(),
        };
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| Oid::try_from(p).ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => "EC P-256".to_owned(),
            Some(c) if c == OID_NIST_EC_P384 => "EC P-384".to_owned(),
            Some(c) if c == OID_NIST_EC_P521 => "EC P-521".to_owned(),
            Some(c) => format!("EC (curve {c})"),
            None => "EC".to_owned(),
        };
    }
    if *algorithm == OID_SIG_ED25519 {
        return "Ed25519".to_owned();
    }
    if *algorithm == OID_SIG_ED448 {
        return "Ed448".to_owned();
    }
    format!("unknown ({algorithm})")
}

/// The size in bits of a big-endian unsigned integer.
fn bits(integer: &[u8]) -> usize {
    let start = integer
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(integer.len());
    match integer.get(start) {
        Some(first) => (integer.len() - start) * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// The contents of a DER TLV (the bytes after tag and length); the input when it is not one.
pub(crate) fn der_contents(tlv: &[u8]) -> &[u8] {
    let Some(&first_len) = tlv.get(1) else {
        return tlv;
    };
    let (header, len) = if first_len < 0x80 {
        (2, usize::from(first_len))
    } else {
        let count = usize::from(first_len & 0x7f);
        let Some(len_bytes) = tlv.get(2..2 + count) else {
            return tlv;
        };
        let len = len_bytes.iter().fold(0usize, |acc, b| {
            acc.saturating_mul(256).saturating_add(usize::from(*b))
        });
        (2 + count, len)
    };
    tlv.get(header..header.saturating_add(len)).unwrap_or(tlv)
}

/// `2025-07-01T10:00:00Z`.
pub(crate) fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(DAY);
    let secs = unix.rem_euclid(DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `in 29 days`, `3 days ago`, `in 5 hours`.
pub(crate) fn relative(when: i64, now: i64) -> String {
    let delta = when - now;
    let abs = delta.unsigned_abs();
    let amount = if abs >= 2 * DAY.unsigned_abs() {
        format!("{} days", abs / DAY.unsigned_abs())
    } else if abs >= 2 * 3600 {
        format!("{} hours", abs / 3600)
    } else if abs >= 120 {
        format!("{} minutes", abs / 60)
    } else {
        format!("{abs} seconds")
    };
    if delta >= 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are small and positive by construction.
    (year, month as u32, day as u32)
}
