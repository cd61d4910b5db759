//! `strait check tls HOST:PORT`: one handshake, and in plain words whether gRPC clients will
//! get h2 and a certificate they trust.

mod chain;
mod diagnose;
mod observe;
#[cfg(test)]
mod tests;

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use self::chain::CertInfo;
use self::diagnose::Failure;
use self::observe::{Observed, RecordingResolver, RecordingVerifier};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait, after a handshake in which the server asked for a client certificate,
/// for the server's verdict on it.
const CLIENT_AUTH_VERDICT: Duration = Duration::from_secs(2);

/// What to check, as given on the command line.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// `HOST:PORT`; `[v6]:PORT` for IPv6; the port defaults to 443.
    pub target: String,
    /// ALPN protocols to offer, in order; empty offers none.
    pub alpn: Vec<String>,
    /// The name to send as SNI and to verify; default: the host, when it is a DNS name.
    pub sni: Option<String>,
    /// CA certificates to trust instead of the public web roots.
    pub ca: Option<PathBuf>,
    /// A client certificate chain and its key, for servers that ask for one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Do not verify the server's certificate.
    pub insecure: bool,
}

/// What one check found: the facts, and a diagnosis.
#[derive(Debug)]
pub struct Report {
    target: String,
    address: Option<SocketAddr>,
    sni: Option<String>,
    /// The name the certificate is verified against.
    verified_name: Option<String>,
    alpn_offered: Vec<String>,
    alpn: Option<String>,
    version: Option<String>,
    cipher: Option<String>,
    chain: Vec<Result<CertInfo, String>>,
    verification: Verification,
    trust: String,
    client_auth: ClientAuth,
    findings: Vec<Finding>,
    /// Unix seconds when the check ran.
    now: i64,
}

#[derive(Clone, Debug, PartialEq)]
enum Verification {
    /// The handshake did not get as far as the server's certificate.
    NotReached,
    Insecure,
    Verified,
    Failed(String),
}

#[derive(Clone, Debug, Default)]
struct ClientAuth {
    requested: bool,
    sent: bool,
    cas: Vec<String>,
}

/// One line of the diagnosis: a problem (the check fails) or a note.
#[derive(Clone, Debug, PartialEq)]
struct Finding {
    /// Stable, for machines: `alpn_none`, `expired`, `incomplete_chain`, ...
    code: &'static str,
    problem: bool,
    message: String,
}

/// What the server's certificate is checked against.
#[derive(Debug)]
enum Trust {
    CaFile {
        path: PathBuf,
        roots: Arc<RootCertStore>,
    },
    PublicRoots(Arc<RootCertStore>),
    Insecure,
}

/// `HOST:PORT`, split.
#[derive(Clone, Debug, PartialEq)]
struct Target {
    host: String,
    port: u16,
}

/// Options turned into what the handshake needs.
#[derive(Debug)]
struct Setup {
    target: Target,
    server_name: ServerName<'static>,
    trust: Trust,
    identity: Option<Arc<CertifiedKey>>,
    alpn: Vec<Vec<u8>>,
}

/// Connects to `options.target`, does one TLS handshake, and reports what it saw. Never
/// fails and never hangs: problems are in the report; each step has a time limit.
pub async fn run(options: &CheckOptions) -> Report {
    let mut report = Report::new(options);
    let setup = match Setup::new(options) {
        Ok(setup) => setup,
        Err(finding) => {
            report.findings.push(finding);
            return report;
        }
    };
    report.sni = match &setup.server_name {
        ServerName::DnsName(name) => Some(name.as_ref().to_owned()),
        _ => None,
    };
    report.verified_name = Some(setup.server_name.to_str().into_owned());
    report.trust = setup.trust.to_string();

    let observed = Arc::new(Observed::default());
    let config = match setup.client_config(&observed) {
        Ok(config) => config,
        Err(finding) => {
            report.findings.push(finding);
            return report;
        }
    };
    let tcp = match connect(&setup.target).await {
        Ok(tcp) => tcp,
        Err(finding) => {
            report.findings.push(finding);
            return report;
        }
    };
    report.address = tcp.peer_addr().ok();
    let failure = handshake(
        &mut report,
        config,
        setup.server_name.clone(),
        tcp,
        &observed,
    )
    .await;

    let seen = observed.seen();
    report.chain = seen.chain.iter().map(CertInfo::parse).collect();
    report.client_auth = ClientAuth {
        requested: seen.client_auth_requested,
        sent: seen.client_cert_sent,
        cas: seen.client_auth_cas.clone(),
    };
    report.verification = match (&setup.trust, &seen.verdict) {
        (Trust::Insecure, _) => Verification::Insecure,
        (_, Some(Ok(()))) => Verification::Verified,
        (_, Some(Err(e))) => Verification::Failed(e.to_string()),
        (_, None) => Verification::NotReached,
    };
    report.findings = diagnose::findings(&report, &seen, failure.as_ref(), &setup.trust);
    report
}

async fn connect(target: &Target) -> Result<TcpStream, Finding> {
    let cannot = |why: String| {
        Finding::problem(
            "cannot_connect",
            format!("cannot connect to {target}: {why}"),
        )
    };
    match timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    {
        Ok(Ok(tcp)) => Ok(tcp),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(cannot(format!(
            "{e} (nothing listens on that port, or a firewall refuses it)"
        ))),
        Ok(Err(e)) => Err(cannot(e.to_string())),
        Err(_) => Err(cannot(format!(
            "no answer within {} s (a firewall dropping packets, or a wrong address)",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Does the handshake, fills in what it negotiated, and returns what went wrong, if anything.
async fn handshake(
    report: &mut Report,
    config: ClientConfig,
    server_name: ServerName<'static>,
    tcp: TcpStream,
    observed: &Observed,
) -> Option<Failure> {
    let connector = TlsConnector::from(Arc::new(config));
    let mut tls = match timeout(HANDSHAKE_TIMEOUT, connector.connect(server_name, tcp)).await {
        Err(_) => return Some(Failure::Timeout),
        Ok(Err(e)) => return Some(failure_from_io(e)),
        Ok(Ok(tls)) => tls,
    };
    let (_, conn) = tls.get_ref();
    report.alpn = conn
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    report.version = conn.protocol_version().map(|v| match v {
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".to_owned(),
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".to_owned(),
        other => format!("{other:?}"),
    });
    report.cipher = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()));

    let tls13 = conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
    let mut failure = None;
    if tls13 && observed.seen().client_auth_requested {
        // In TLS 1.3 the client's handshake is complete before the server has looked at the
        // client certificate (or its absence): a refusal arrives as an alert on the first read.
        // (In TLS 1.2 it arrives during the handshake.)
        let mut buf = [0u8; 512];
        failure = match timeout(CLIENT_AUTH_VERDICT, tls.read(&mut buf)).await {
            Ok(Ok(0)) => Some(Failure::ClosedAfterHandshake),
            Ok(Err(e)) => Some(failure_from_io(e)),
            Ok(Ok(_)) | Err(_) => None,
        };
    }
    if failure.is_none() {
        let _ = timeout(Duration::from_secs(1), tls.shutdown()).await;
    }
    failure
}

fn failure_from_io(e: std::io::Error) -> Failure {
    // tokio-rustls hands rustls's error back inside the io::Error.
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Failure::Tls(tls.clone()),
        None => Failure::Io(e),
    }
}

// === impl Report ===

impl Report {
    fn new(options: &CheckOptions) -> Report {
        Report {
            target: options.target.clone(),
            address: None,
            sni: None,
            verified_name: None,
            alpn_offered: offered_alpn(&options.alpn),
            alpn: None,
            version: None,
            cipher: None,
            chain: Vec::new(),
            verification: Verification::NotReached,
            trust: String::new(),
            client_auth: ClientAuth::default(),
            findings: Vec::new(),
            now: chain::now(),
        }
    }

    /// No problem found: the handshake succeeded, h2 was negotiated (when offered) and the
    /// certificate verifies (or `--insecure`).
    pub fn is_fine(&self) -> bool {
        !self.findings.iter().any(|f| f.problem)
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_text(&mut out);
        out
    }

    fn write_text(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "target: {}", self.target)?;
        if let Some(address) = self.address {
            writeln!(out, "connected: {address}")?;
        }
        match (&self.sni, &self.verified_name) {
            (Some(sni), _) => writeln!(out, "SNI: {sni}")?,
            (None, Some(name)) => writeln!(
                out,
                "SNI: none (an IP address; the certificate is checked against {name})"
            )?,
            (None, None) => {}
        }
        let offered = if self.alpn_offered.is_empty() {
            "none offered".to_owned()
        } else {
            format!("offered: {}", self.alpn_offered.join(", "))
        };
        match &self.version {
            Some(version) => {
                writeln!(
                    out,
                    "ALPN: {} ({offered})",
                    self.alpn.as_deref().unwrap_or("none")
                )?;
                writeln!(out, "TLS version: {version}")?;
                if let Some(cipher) = &self.cipher {
                    writeln!(out, "cipher suite: {cipher}")?;
                }
            }
            None if self.address.is_some() => writeln!(
                out,
                "ALPN: unknown, the handshake did not complete ({offered})"
            )?,
            None => {}
        }
        if !self.chain.is_empty() {
            let n = self.chain.len();
            writeln!(
                out,
                "chain ({n} certificate{}, as sent by the server):",
                if n == 1 { "" } else { "s" }
            )?;
            for (i, cert) in self.chain.iter().enumerate() {
                match cert {
                    Ok(cert) => self.write_cert(out, i, cert)?,
                    Err(e) => writeln!(out, "  [{i}] {e}")?,
                }
            }
        }
        match &self.verification {
            Verification::Verified => {
                writeln!(out, "verified: yes (trusted roots: {})", self.trust)?
            }
            Verification::Insecure => writeln!(out, "verified: no, not verified (--insecure)")?,
            Verification::Failed(e) => writeln!(out, "verified: no ({e})")?,
            Verification::NotReached if self.address.is_some() => writeln!(
                out,
                "verified: no (the handshake did not get to the certificate)"
            )?,
            Verification::NotReached => {}
        }
        if self.address.is_some() {
            writeln!(out, "client certificate: {}", self.client_auth)?;
        }
        writeln!(out, "diagnosis:")?;
        for finding in &self.findings {
            let label = match (finding.problem, finding.code) {
                (true, _) => "PROBLEM",
                (false, "ok") => "OK",
                (false, _) => "note",
            };
            writeln!(out, "  {label}: {}", finding.message)?;
        }
        Ok(())
    }

    fn write_cert(&self, out: &mut String, i: usize, cert: &CertInfo) -> fmt::Result {
        let pad = " ".repeat(format!("[{i}]").len() + 2);
        writeln!(out, "  [{i}] subject: {}", cert.subject)?;
        writeln!(out, "{pad} issuer: {}", cert.issuer)?;
        if !cert.sans.is_empty() {
            writeln!(out, "{pad} SANs: {}", cert.sans.join(", "))?;
        }
        let when = |t: i64| format!("{} ({})", chain::rfc3339(t), chain::relative(t, self.now));
        writeln!(out, "{pad} not before: {}", when(cert.not_before))?;
        let expired = if cert.expired_at(self.now) {
            ", EXPIRED"
        } else {
            ""
        };
        writeln!(out, "{pad} not after: {}{expired}", when(cert.not_after))?;
        writeln!(out, "{pad} key: {}", cert.key)
    }

    /// The same facts for machines, as one JSON object.
    pub fn to_json(&self) -> Value {
        let chain: Vec<Value> = self
            .chain
            .iter()
            .map(|cert| match cert {
                Ok(cert) => json!({
                    "subject": cert.subject,
                    "issuer": cert.issuer,
                    "sans": cert.sans,
                    "not_before": chain::rfc3339(cert.not_before),
                    "not_after": chain::rfc3339(cert.not_after),
                    "expired": cert.expired_at(self.now),
                    "key": cert.key,
                    "ca": cert.is_ca,
                    "self_issued": cert.self_issued,
                }),
                Err(e) => json!({ "error": e }),
            })
            .collect();
        let verification = match &self.verification {
            Verification::NotReached => json!({ "result": "not_reached" }),
            Verification::Insecure => json!({ "result": "skipped", "why": "--insecure" }),
            Verification::Verified => json!({ "result": "verified", "roots": self.trust }),
            Verification::Failed(e) => {
                json!({ "result": "failed", "error": e, "roots": self.trust })
            }
        };
        let diagnosis: Vec<Value> = self
            .findings
            .iter()
            .map(|f| json!({ "code": f.code, "problem": f.problem, "message": f.message }))
            .collect();
        json!({
            "target": self.target,
            "address": self.address.map(|a| a.to_string()),
            "sni": self.sni,
            "verified_name": self.verified_name,
            "alpn_offered": self.alpn_offered,
            "alpn": self.alpn,
            "version": self.version,
            "cipher": self.cipher,
            "chain": chain,
            "verified": self.verification == Verification::Verified,
            "verification": verification,
            "client_certificate": {
                "requested": self.client_auth.requested,
                "sent": self.client_auth.sent,
                "accepted_issuers": self.client_auth.cas,
            },
            "diagnosis": diagnosis,
            "fine": self.is_fine(),
        })
    }
}

fn offered_alpn(alpn: &[String]) -> Vec<String> {
    alpn.iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

// === impl ClientAuth ===

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.requested, self.sent) {
            (false, _) => f.write_str("not requested by the server")?,
            (true, true) => f.write_str("requested by the server; sent the one from --cert")?,
            (true, false) => f.write_str("requested by the server; none sent (no --cert)")?,
        }
        if !self.cas.is_empty() {
            write!(f, "; accepted issuers: {}", self.cas.join("; "))?;
        }
        Ok(())
    }
}

// === impl Finding ===

impl Finding {
    fn problem(code: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            code,
            problem: true,
            message: message.into(),
        }
    }

    fn note(code: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            code,
            problem: false,
            message: message.into(),
        }
    }
}

// === impl Trust ===

impl Trust {
    /// Whether a trusted root has this subject (DER contents, no SEQUENCE header).
    fn has_subject(&self, subject: &[u8]) -> bool {
        match self {
            Trust::CaFile { roots, .. } | Trust::PublicRoots(roots) => roots
                .roots
                .iter()
                .any(|anchor| anchor.subject.as_ref() == subject),
            Trust::Insecure => false,
        }
    }

    fn roots(&self) -> Option<&Arc<RootCertStore>> {
        match self {
            Trust::CaFile { roots, .. } | Trust::PublicRoots(roots) => Some(roots),
            Trust::Insecure => None,
        }
    }
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::CaFile { path, .. } => write!(f, "--ca {}", path.display()),
            Trust::PublicRoots(_) => f.write_str("the public web roots"),
            Trust::Insecure => f.write_str("none (--insecure)"),
        }
    }
}

// === impl Target ===

impl Target {
    fn parse(text: &str) -> Result<Target, String> {
        let text = text.trim();
        let bad = |why: &str| format!("\"{text}\" is not HOST:PORT ({why}); e.g. example.com:443");
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address needs its closing `]`"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| bad("a `:` goes between address and port"))?,
                    ),
                ),
            }
        } else {
            match text.matches(':').count() {
                0 => (text, None),
                1 => text
                    .split_once(':')
                    .map(|(h, p)| (h, Some(p)))
                    .ok_or_else(|| bad("no port"))?,
                _ => return Err(bad("write IPv6 addresses in brackets: [::1]:443")),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => 443,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is a number from 1 to 65535"))?,
        };
        Ok(Target {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

// === impl Setup ===

impl Setup {
    fn new(options: &CheckOptions) -> Result<Setup, Finding> {
        let target =
            Target::parse(&options.target).map_err(|e| Finding::problem("bad_target", e))?;
        let name = options.sni.as_deref().unwrap_or(&target.host);
        let server_name = ServerName::try_from(name.to_owned()).map_err(|_| {
            Finding::problem(
                "bad_sni",
                format!("\"{name}\" is not a valid server name (a DNS name or an IP address)"),
            )
        })?;
        let trust = if options.insecure {
            Trust::Insecure
        } else if let Some(path) = &options.ca {
            let roots = crate::load_roots(path)
                .map_err(|e| Finding::problem("bad_ca", format!("--ca {e}")))?;
            Trust::CaFile {
                path: path.clone(),
                roots: Arc::new(roots),
            }
        } else {
            Trust::PublicRoots(Arc::new(
                webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect(),
            ))
        };
        let identity = match (&options.cert, &options.key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let bad = |e: String| Finding::problem("bad_client_cert", e);
                let certs = crate::load_certs(cert).map_err(|e| bad(format!("--cert {e}")))?;
                let key = crate::load_key(key).map_err(|e| bad(format!("--key {e}")))?;
                let identity = CertifiedKey::from_der(certs, key, &crate::provider())
                    .map_err(|e| bad(format!("--cert and --key do not go together: {e}")))?;
                Some(Arc::new(identity))
            }
            _ => {
                return Err(Finding::problem(
                    "bad_client_cert",
                    "--cert and --key go together: give both or neither",
                ))
            }
        };
        Ok(Setup {
            target,
            server_name,
            trust,
            identity,
            alpn: offered_alpn(&options.alpn)
                .into_iter()
                .map(String::into_bytes)
                .collect(),
        })
    }

    fn client_config(&self, observed: &Arc<Observed>) -> Result<ClientConfig, Finding> {
        let provider = crate::provider();
        let internal = |e: String| Finding::problem("internal", e);
        let webpki = match self.trust.roots() {
            Some(roots) => Some(
                WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| internal(format!("cannot build the verifier: {e}")))?,
            ),
            None => None,
        };
        let verifier = RecordingVerifier::new(
            webpki,
            provider.signature_verification_algorithms,
            observed.clone(),
        );
        let resolver = RecordingResolver::new(self.identity.clone(), observed.clone());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| internal(format!("no TLS versions: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = self.alpn.clone();
        Ok(config)
    }
}
