//! TLS settings: an entrypoint's `tls` (termination, mTLS), a service's `tls` (https://
//! upstreams), and whether a router's `client_cert_san` can match at all.

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use super::lifecycle::Zero;
use super::{backticked, did_you_mean, get, Entries, Validator};
use crate::model::{
    AlpnProtocol, CertificateFiles, ClientAuth, ClientAuthMode, Entrypoint, ServerTls, TlsVersion,
    UpstreamTls, CIPHER_SUITES,
};
use crate::resilience::{FaultDelay, TlsFault, TlsFaultAbort};
use crate::tree::{Key, Node, NodeKind};
use crate::Problem;

const SERVER_TLS_KEYS: &[&str] = &[
    "certificates",
    "alpn",
    "sni_strict",
    "min_version",
    "cipher_suites",
    "handshake_timeout",
    "client_auth",
    "fault",
];
const CERTIFICATE_KEYS: &[&str] = &["cert_file", "key_file", "default"];
const CLIENT_AUTH_KEYS: &[&str] = &["mode", "ca_file", "forward_header"];
const UPSTREAM_TLS_KEYS: &[&str] = &[
    "alpn",
    "ca_file",
    "server_name",
    "cert_file",
    "key_file",
    "insecure_skip_verify",
    "fault",
];
/// `abort` is known on entrypoints too, so that it gets its own error rather than "unknown".
const TLS_FAULT_KEYS: &[&str] = &["abort", "delay"];
const TLS_ABORT_KEYS: &[&str] = &["percent"];
const TLS_DELAY_KEYS: &[&str] = &["duration", "percent"];
const CLIENT_AUTH_MODES: &[&str] = &["none", "request", "require"];

const DEFAULT_ALPN: [AlpnProtocol; 2] = [AlpnProtocol::H2, AlpnProtocol::Http11];
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const ALPN_HINT: &str = "the protocols are `h2` and `http/1.1`";
const NAME_HINT: &str = "write a name such as api.internal or an IP such as 10.0.0.1";
const HEADER_NAME_HINT: &str = "header names are letters, digits and !#$%&'*+-.^_`|~";

/// Headers that the proxy itself decides, or that HTTP/2 forbids; carrying the client's
/// identity in one of them would break requests rather than inform the backend.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "content-type",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Why a file cannot be used.
enum Unreadable {
    Io(io::Error),
    Directory,
    NotAFile,
}

// === impl Validator ===

impl Validator {
    pub(super) fn server_tls(
        &mut self,
        entrypoint: &str,
        tls_key: &Key,
        node: &Node,
    ) -> Option<ServerTls> {
        let context = format!("in the TLS settings of entrypoint `{entrypoint}`");
        let entries = self.mapping(node, &format!("`tls` in entrypoint `{entrypoint}`"))?;
        self.known_keys(entries, SERVER_TLS_KEYS, &context);

        let certificates = match self.required(tls_key, entries, "certificates", &context) {
            Some((_, value)) => self.certificates(entrypoint, value),
            None => None,
        };
        let alpn = match get(entries, "alpn") {
            None => Some(DEFAULT_ALPN.to_vec()),
            Some((_, value)) => self.alpn(value, &context),
        };
        let sni_strict = match get(entries, "sni_strict") {
            None => Some(false),
            Some((_, value)) => self.boolean(value, "sni_strict", &context),
        };
        let min_version = match get(entries, "min_version") {
            None => Some(TlsVersion::Tls12),
            Some((_, value)) => self.tls_version(value, &context),
        };
        let cipher_suites = match get(entries, "cipher_suites") {
            None => Some(Vec::new()),
            Some((_, value)) => self.cipher_suites(value, &context),
        };
        let handshake_timeout = match get(entries, "handshake_timeout") {
            None => Some(DEFAULT_HANDSHAKE_TIMEOUT),
            Some((_, value)) => self.handshake_timeout(value, &context),
        };
        let client_auth = match get(entries, "client_auth") {
            None => Some(None),
            Some((key, value)) => self.client_auth(entrypoint, key, value).map(Some),
        };
        let fault = self.optional(entries, "fault", |v, node| {
            v.server_tls_fault(entrypoint, node)
        });

        let mut ok = true;
        if let (Some(TlsVersion::Tls13), Some(suites), Some((_, suites_node))) =
            (min_version, &cipher_suites, get(entries, "cipher_suites"))
        {
            if !suites.is_empty() && !suites.iter().any(|suite| is_tls13(suite)) {
                self.report_hint(
                    suites_node.loc,
                    format!(
                        "`cipher_suites` {context} has no TLS 1.3 suite, but `min_version` is \
                         1.3: no handshake could succeed"
                    ),
                    "add a TLS13_ suite such as TLS13_AES_128_GCM_SHA256, or set \
                     `min_version: \"1.2\"`",
                );
                ok = false;
            }
        }
        let tls = ServerTls {
            certificates: certificates?,
            alpn: alpn?,
            sni_strict: sni_strict?,
            min_version: min_version?,
            cipher_suites: cipher_suites?,
            handshake_timeout: handshake_timeout?,
            client_auth: client_auth?,
            fault: fault?,
        };
        ok.then_some(tls)
    }

    fn certificates(&mut self, entrypoint: &str, node: &Node) -> Option<Vec<CertificateFiles>> {
        let items = self.list(
            node,
            &format!("`certificates` in the TLS settings of entrypoint `{entrypoint}`"),
        )?;
        if items.is_empty() {
            self.report_hint(
                node.loc,
                format!("entrypoint `{entrypoint}` has no certificates"),
                "add at least one, e.g. - { cert_file: certs/api.pem, key_file: certs/api.key }",
            );
            return None;
        }
        let mut certificates = Vec::new();
        let mut first_default: Option<usize> = None;
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let number = i + 1;
            let context = format!("in certificate {number} of entrypoint `{entrypoint}`");
            let Some(entries) = self.mapping(
                item,
                &format!("certificate {number} of entrypoint `{entrypoint}`"),
            ) else {
                ok = false;
                continue;
            };
            self.known_keys(entries, CERTIFICATE_KEYS, &context);
            let owner = Key {
                name: format!("certificate {number}"),
                loc: item.loc,
            };
            let cert_file = self
                .required(&owner, entries, "cert_file", &context)
                .and_then(|(_, value)| self.file(value, "cert_file", &context));
            let key_file = self
                .required(&owner, entries, "key_file", &context)
                .and_then(|(_, value)| self.file(value, "key_file", &context));
            let default = match get(entries, "default") {
                None => Some(false),
                Some((_, value)) => self.boolean(value, "default", &context),
            };
            if let (Some(true), Some((_, value))) = (default, get(entries, "default")) {
                match first_default {
                    None => first_default = Some(number),
                    Some(first) => {
                        self.report_hint(
                            value.loc,
                            format!(
                                "certificates {first} and {number} of entrypoint `{entrypoint}` \
                                 both say `default: true`"
                            ),
                            "only one certificate can be the default; without any, the first \
                             one is",
                        );
                        ok = false;
                    }
                }
            }
            match (cert_file, key_file, default) {
                (Some(cert_file), Some(key_file), Some(default)) => {
                    certificates.push(CertificateFiles {
                        cert_file,
                        key_file,
                        default,
                    });
                }
                _ => ok = false,
            }
        }
        ok.then_some(certificates)
    }

    /// A non-empty list of `h2` and `http/1.1`, each at most once.
    fn alpn(&mut self, node: &Node, context: &str) -> Option<Vec<AlpnProtocol>> {
        let what = format!("`alpn` {context}");
        let items = self.list(node, &what)?;
        if items.is_empty() {
            self.report_hint(
                node.loc,
                format!("`alpn` {context} is empty"),
                "leave `alpn` out for [h2, http/1.1]",
            );
            return None;
        }
        let mut protocols = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(text) = self.string(item, &what) else {
                ok = false;
                continue;
            };
            let protocol = match text {
                "h2" => AlpnProtocol::H2,
                "http/1.1" => AlpnProtocol::Http11,
                _ => {
                    let hint = if text.eq_ignore_ascii_case("h2c") {
                        "h2c is HTTP/2 without TLS; with TLS it is `h2`".to_owned()
                    } else {
                        let names = [AlpnProtocol::H2, AlpnProtocol::Http11].map(|p| p.as_str());
                        with_did_you_mean(&text.to_ascii_lowercase(), &names, ALPN_HINT)
                    };
                    self.report_hint(
                        item.loc,
                        format!("unknown ALPN protocol `{text}` {context}"),
                        hint,
                    );
                    ok = false;
                    continue;
                }
            };
            if protocols.contains(&protocol) {
                self.report(
                    item.loc,
                    format!("`{text}` is listed twice in `alpn` {context}"),
                );
                ok = false;
                continue;
            }
            protocols.push(protocol);
        }
        ok.then_some(protocols)
    }

    /// `"1.2"` or `"1.3"`; unquoted, YAML and TOML read those as numbers, which is fine too.
    fn tls_version(&mut self, node: &Node, context: &str) -> Option<TlsVersion> {
        let text = match &node.kind {
            NodeKind::Str(text) => text.clone(),
            NodeKind::Float(number) => number.to_string(),
            NodeKind::Int(number) => number.to_string(),
            _ => {
                self.report_hint(
                    node.loc,
                    format!(
                        "expected a TLS version for `min_version` {context}, found {}",
                        node.describe()
                    ),
                    "write \"1.2\" or \"1.3\"",
                );
                return None;
            }
        };
        match text.as_str() {
            "1.2" => Some(TlsVersion::Tls12),
            "1.3" => Some(TlsVersion::Tls13),
            "1" | "1.0" | "1.1" => {
                self.report_hint(
                    node.loc,
                    format!("TLS {text} for `min_version` {context} is not supported"),
                    "TLS 1.2 is the oldest version strait speaks; write \"1.2\" or \"1.3\"",
                );
                None
            }
            _ => {
                self.report_hint(
                    node.loc,
                    format!("unknown TLS version `{text}` for `min_version` {context}"),
                    "write \"1.2\" or \"1.3\"",
                );
                None
            }
        }
    }

    /// Names from [`CIPHER_SUITES`], each at most once; an explicit empty list is refused
    /// since it would read as "none" but mean "the defaults".
    fn cipher_suites(&mut self, node: &Node, context: &str) -> Option<Vec<String>> {
        let what = format!("`cipher_suites` {context}");
        let items = self.list(node, &what)?;
        if items.is_empty() {
            self.report_hint(
                node.loc,
                format!("`cipher_suites` {context} is empty"),
                "leave `cipher_suites` out for the provider's defaults",
            );
            return None;
        }
        let mut suites: Vec<String> = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(text) = self.string(item, &what) else {
                ok = false;
                continue;
            };
            if !CIPHER_SUITES.contains(&text) {
                let valid = format!("cipher suites are {}", backticked(CIPHER_SUITES));
                let hint = with_did_you_mean(&text.to_ascii_uppercase(), CIPHER_SUITES, &valid);
                self.report_hint(
                    item.loc,
                    format!("unknown cipher suite `{text}` {context}"),
                    hint,
                );
                ok = false;
                continue;
            }
            if suites.iter().any(|suite| suite == text) {
                self.report(
                    item.loc,
                    format!("cipher suite `{text}` is listed twice {context}"),
                );
                ok = false;
                continue;
            }
            suites.push(text.to_owned());
        }
        ok.then_some(suites)
    }

    fn handshake_timeout(&mut self, node: &Node, context: &str) -> Option<Duration> {
        let timeout = self.duration(node, "handshake_timeout", context)?;
        if timeout.is_zero() {
            self.report_hint(
                node.loc,
                format!("`handshake_timeout` {context} is zero, which would fail every handshake"),
                "leave `handshake_timeout` out for the default, 10s",
            );
            return None;
        }
        Some(timeout)
    }

    fn client_auth(&mut self, entrypoint: &str, key: &Key, node: &Node) -> Option<ClientAuth> {
        let context = format!("in `client_auth` of entrypoint `{entrypoint}`");
        let entries = self.mapping(node, &format!("`client_auth` in entrypoint `{entrypoint}`"))?;
        self.known_keys(entries, CLIENT_AUTH_KEYS, &context);
        let mode = self
            .required(key, entries, "mode", &context)
            .and_then(|(_, value)| self.client_auth_mode(value, &context));
        let ca_file = match get(entries, "ca_file") {
            None => Some(None),
            Some((_, value)) => self.file(value, "ca_file", &context).map(Some),
        };
        let forward_header = match get(entries, "forward_header") {
            None => Some(None),
            Some((_, value)) => self
                .checked(value, &format!("`forward_header` {context}"), |text| {
                    forward_header(text, &context)
                })
                .map(Some),
        };
        let mode = mode?;
        let mut ok = true;
        if mode == ClientAuthMode::None {
            for (name, hint) in [
                (
                    "ca_file",
                    "remove `ca_file`, or set `mode: request` or `mode: require`",
                ),
                (
                    "forward_header",
                    "remove `forward_header`, or set `mode: request` or `mode: require`; \
                     without client certificates there is no identity to forward",
                ),
            ] {
                if let Some((key, _)) = get(entries, name) {
                    self.report_hint(
                        key.loc,
                        format!("`{name}` has no effect with `mode: none` {context}"),
                        hint,
                    );
                    ok = false;
                }
            }
        } else if get(entries, "ca_file").is_none() {
            let mode = mode_name(mode);
            self.report_hint(
                key.loc,
                format!(
                    "missing `ca_file` {context}: `mode: {mode}` checks client certificates \
                     against it"
                ),
                "set `ca_file` to the PEM bundle of the CA that issues client certificates",
            );
            ok = false;
        }
        let client_auth = ClientAuth {
            mode,
            ca_file: ca_file?,
            forward_header: forward_header?,
        };
        ok.then_some(client_auth)
    }

    fn client_auth_mode(&mut self, node: &Node, context: &str) -> Option<ClientAuthMode> {
        let text = self.string(node, &format!("`mode` {context}"))?;
        match text {
            "none" => Some(ClientAuthMode::None),
            "request" => Some(ClientAuthMode::Request),
            "require" => Some(ClientAuthMode::Require),
            _ => {
                let valid = format!("modes are {}", backticked(CLIENT_AUTH_MODES));
                let hint = with_did_you_mean(&text.to_ascii_lowercase(), CLIENT_AUTH_MODES, &valid);
                self.report_hint(
                    node.loc,
                    format!("unknown client_auth mode `{text}` {context}"),
                    hint,
                );
                None
            }
        }
    }

    pub(super) fn upstream_tls(&mut self, service: &str, node: &Node) -> Option<UpstreamTls> {
        let context = format!("in the TLS settings of service `{service}`");
        let entries = self.mapping(node, &format!("`tls` in service `{service}`"))?;
        self.known_keys(entries, UPSTREAM_TLS_KEYS, &context);

        let alpn = match get(entries, "alpn") {
            None => Some(DEFAULT_ALPN.to_vec()),
            Some((_, value)) => self.alpn(value, &context),
        };
        let ca_file = match get(entries, "ca_file") {
            None => Some(None),
            Some((_, value)) => self.file(value, "ca_file", &context).map(Some),
        };
        let server_name = match get(entries, "server_name") {
            None => Some(None),
            Some((_, value)) => self
                .checked(
                    value,
                    &format!("`server_name` {context}"),
                    parse_server_name,
                )
                .map(Some),
        };
        let client_cert = self.client_cert(entries, &context);
        let insecure_skip_verify = match get(entries, "insecure_skip_verify") {
            None => Some(false),
            Some((_, value)) => self.boolean(value, "insecure_skip_verify", &context),
        };
        let fault = self.optional(entries, "fault", |v, node| {
            v.upstream_tls_fault(service, node)
        });
        Some(UpstreamTls {
            alpn: alpn?,
            ca_file: ca_file?,
            server_name: server_name?,
            client_cert: client_cert?,
            insecure_skip_verify: insecure_skip_verify?,
            fault: fault?,
        })
    }

    /// An entrypoint's `tls.fault`: `delay` only, since a failed client handshake rehearses
    /// nothing a client could not see by connecting to a closed port.
    fn server_tls_fault(&mut self, entrypoint: &str, node: &Node) -> Option<FaultDelay> {
        let owner = format!("entrypoint `{entrypoint}`");
        let context = format!("in the TLS fault of {owner}");
        let entries = self.tls_fault_entries(
            node,
            &owner,
            &context,
            "add `delay: { duration: 2s, percent: 20 }`",
        )?;
        let mut ok = true;
        if let Some((key, _)) = get(entries, "abort") {
            self.report_hint(
                key.loc,
                format!(
                    "`abort` {context} is not available: entrypoints can only delay handshakes"
                ),
                "aborting TLS handshakes is for services (`tls.fault.abort` of a service with \
                 https:// servers); here use `delay: { duration: 2s, percent: 20 }`",
            );
            ok = false;
        }
        let delay = match get(entries, "delay") {
            Some((_, value)) => self.tls_fault_delay(value, &context),
            // Only `abort` was given, and it is reported above.
            None => None,
        };
        let delay = delay?;
        ok.then_some(delay)
    }

    /// A service's `tls.fault`: `abort` and/or `delay`.
    fn upstream_tls_fault(&mut self, service: &str, node: &Node) -> Option<TlsFault> {
        let owner = format!("service `{service}`");
        let context = format!("in the TLS fault of {owner}");
        let entries = self.tls_fault_entries(
            node,
            &owner,
            &context,
            "add `abort: { percent: 10 }` or `delay: { duration: 2s, percent: 20 }`",
        )?;
        let abort = self.optional(entries, "abort", |v, node| {
            let entries = v.mapping(node, &format!("`abort` {context}"))?;
            let context = format!("in `abort` {context}");
            v.known_keys(entries, TLS_ABORT_KEYS, &context);
            let percent = v.percent_or(entries, &context)?;
            Some(TlsFaultAbort { percent })
        });
        let delay = self.optional(entries, "delay", |v, node| {
            v.tls_fault_delay(node, &context)
        });
        Some(TlsFault {
            abort: abort?,
            delay: delay?,
        })
    }

    /// The mapping of a `tls.fault` of `owner`, with known keys checked; `None` (reported)
    /// when it is not a mapping or injects nothing, where `hint` says what it could hold.
    fn tls_fault_entries<'n>(
        &mut self,
        node: &'n Node,
        owner: &str,
        context: &str,
        hint: &str,
    ) -> Option<&'n Entries> {
        let what = format!("`fault` in the TLS settings of {owner}");
        let entries = self.mapping(node, &what)?;
        self.known_keys(entries, TLS_FAULT_KEYS, context);
        if get(entries, "abort").is_none() && get(entries, "delay").is_none() {
            self.report_hint(node.loc, format!("{what} injects nothing"), hint);
            return None;
        }
        Some(entries)
    }

    /// `delay: { duration: 2s, percent: 20 }`; the duration must be more than zero.
    fn tls_fault_delay(&mut self, node: &Node, context: &str) -> Option<FaultDelay> {
        let entries = self.mapping(node, &format!("`delay` {context}"))?;
        let context = format!("in `delay` {context}");
        self.known_keys(entries, TLS_DELAY_KEYS, &context);
        let owner = Key {
            name: "delay".into(),
            loc: node.loc,
        };
        let duration = self
            .required(&owner, entries, "duration", &context)
            .and_then(|(_, value)| {
                self.positive_duration(
                    value,
                    "duration",
                    &context,
                    &Zero {
                        effect: "delay nothing",
                        hint: "give the delay a duration such as 2s, or remove `delay`",
                    },
                )
            });
        let percent = self.percent_or(entries, &context);
        Some(FaultDelay {
            duration: duration?,
            percent: percent?,
        })
    }

    /// `cert_file` and `key_file` of an upstream's TLS settings: both or neither.
    fn client_cert(
        &mut self,
        entries: &Entries,
        context: &str,
    ) -> Option<Option<CertificateFiles>> {
        let cert = get(entries, "cert_file");
        let key = get(entries, "key_file");
        let cert_file = cert.and_then(|(_, value)| self.file(value, "cert_file", context));
        let key_file = key.and_then(|(_, value)| self.file(value, "key_file", context));
        match (cert, key) {
            (None, None) => Some(None),
            (Some((present, _)), None) | (None, Some((present, _))) => {
                let missing = if present.name == "cert_file" {
                    "key_file"
                } else {
                    "cert_file"
                };
                self.report_hint(
                    present.loc,
                    format!("`{}` {context} has no `{missing}`", present.name),
                    "a client certificate needs both `cert_file` and `key_file`; give both or \
                     neither",
                );
                None
            }
            (Some(_), Some(_)) => Some(Some(CertificateFiles {
                cert_file: cert_file?,
                key_file: key_file?,
                default: false,
            })),
        }
    }

    /// Reports a router whose `client_cert_san` no request could satisfy. Entrypoints that
    /// failed validation are reported where they are defined; whether they would ask for
    /// client certificates is unknown, so the check is left until they are fixed.
    pub(super) fn client_cert_san_reachable(
        &mut self,
        router: &str,
        match_node: &Node,
        entrypoints: &[String],
        defined: &IndexMap<String, Entrypoint>,
    ) -> bool {
        let mut tls_entrypoints = Vec::new();
        for name in entrypoints {
            let Some(entrypoint) = defined.get(name) else {
                return true;
            };
            let Some(tls) = &entrypoint.tls else {
                continue;
            };
            let asks = tls
                .client_auth
                .as_ref()
                .is_some_and(|auth| auth.mode != ClientAuthMode::None);
            if asks {
                return true;
            }
            tls_entrypoints.push(name.as_str());
        }
        let NodeKind::Map(entries) = &match_node.kind else {
            return true;
        };
        let Some((_, value)) = get(entries, "client_cert_san") else {
            return true;
        };
        let hint = if tls_entrypoints.is_empty() {
            "serve the router on a TLS entrypoint whose `tls` has `client_auth` with \
             `mode: request` or `mode: require`"
                .to_owned()
        } else {
            format!(
                "add `client_auth` with `mode: request` or `mode: require` to the TLS \
                 settings of entrypoint {}",
                tls_entrypoints
                    .iter()
                    .map(|name| format!("`{name}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )
        };
        self.report_hint(
            value.loc,
            format!(
                "client_cert_san in router `{router}` can never match: none of the router's \
                 entrypoints asks for client certificates"
            ),
            hint,
        );
        false
    }

    /// A path to a file that must be readable now. Relative paths start at the config file's
    /// directory; the model keeps the resolved, absolute path. The contents are not read.
    pub(super) fn file(&mut self, node: &Node, key: &str, context: &str) -> Option<PathBuf> {
        let written = self.string(node, &format!("`{key}` {context}"))?;
        if written.is_empty() {
            self.report(node.loc, format!("empty `{key}` {context}"));
            return None;
        }
        let resolved = resolve(&self.base, written);
        let Err(why) = check_readable(&resolved) else {
            return Some(resolved);
        };
        let relative = Path::new(written).is_relative();
        let shown = if relative {
            format!(" (resolved to {})", resolved.display())
        } else {
            String::new()
        };
        let hint = match &why {
            Unreadable::Io(io) if io.kind() == io::ErrorKind::NotFound && relative => {
                "relative paths start at the directory of the config file"
            }
            Unreadable::Io(io) if io.kind() == io::ErrorKind::PermissionDenied => {
                "make it readable by the user strait runs as"
            }
            Unreadable::Directory => "name the PEM file itself, not its directory",
            _ => "check the path; it names a PEM file",
        };
        self.problems.push(
            Problem::new(
                node.loc,
                format!("cannot read {key} `{written}`{shown}: {why}"),
            )
            .with_hint(hint),
        );
        None
    }
}

// === impl Unreadable ===

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // "No such file or directory (os error 2)": the number tells a reader nothing.
            Unreadable::Io(err) => {
                let text = err.to_string();
                let text = match text.rfind(" (os error ") {
                    Some(at) if text.ends_with(')') => text[..at].to_owned(),
                    _ => text,
                };
                f.write_str(&text)
            }
            Unreadable::Directory => f.write_str("it is a directory"),
            Unreadable::NotAFile => f.write_str("it is not a regular file"),
        }
    }
}

pub(super) fn resolve(base: &Path, written: &str) -> PathBuf {
    let joined = base.join(written);
    // Absolute, so that the runtime finds the file whatever its working directory; this
    // does not touch the file system and keeps symlinks as written.
    std::path::absolute(&joined).unwrap_or(joined)
}

/// A regular file that can be opened for reading. The metadata is checked before opening so
/// that a FIFO or device is refused without blocking on it.
fn check_readable(path: &Path) -> Result<(), Unreadable> {
    let metadata = std::fs::metadata(path).map_err(Unreadable::Io)?;
    if metadata.is_dir() {
        return Err(Unreadable::Directory);
    }
    if !metadata.is_file() {
        return Err(Unreadable::NotAFile);
    }
    std::fs::File::open(path).map_err(Unreadable::Io)?;
    Ok(())
}

fn is_tls13(suite: &str) -> bool {
    suite.starts_with("TLS13_")
}

/// As written in configs.
pub(crate) fn mode_name(mode: ClientAuthMode) -> &'static str {
    match mode {
        ClientAuthMode::None => "none",
        ClientAuthMode::Request => "request",
        ClientAuthMode::Require => "require",
    }
}

/// "did you mean `x`? " before `valid`, when a candidate is close.
fn with_did_you_mean(text: &str, candidates: &[&str], valid: &str) -> String {
    match did_you_mean(text, candidates.iter().copied()) {
        Some(suggestion) => format!("{suggestion} {valid}"),
        None => valid.to_owned(),
    }
}

/// The header that carries the verified client identity to the backend.
fn forward_header(text: &str, context: &str) -> Result<http::HeaderName, (String, Option<String>)> {
    if text.is_empty() {
        return Err((
            format!("empty `forward_header` {context}"),
            Some("e.g. x-forwarded-client-cert".to_owned()),
        ));
    }
    if text.starts_with(':') {
        return Err((
            format!("`{text}` for `forward_header` {context} is a pseudo-header"),
            Some("use an ordinary header name such as x-forwarded-client-cert".to_owned()),
        ));
    }
    let name = http::HeaderName::from_bytes(text.as_bytes()).map_err(|_| {
        (
            format!("`{text}` for `forward_header` {context} is not a valid header name"),
            Some(HEADER_NAME_HINT.to_owned()),
        )
    })?;
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err((
            format!("`{name}` for `forward_header` {context} is a header strait manages itself"),
            Some("use a header of its own, such as x-forwarded-client-cert".to_owned()),
        ));
    }
    Ok(name)
}

/// The name an upstream's certificate is checked against: a DNS name (lower-cased) or an IP
/// literal (IPv6 with or without brackets, stored without).
fn parse_server_name(text: &str) -> Result<String, (String, Option<String>)> {
    let invalid = |why: &str, hint: &str| {
        Err((
            format!("`server_name` `{text}` is not a DNS name or IP address: {why}"),
            Some(hint.to_owned()),
        ))
    };
    if text.is_empty() {
        return Err((
            "empty `server_name`".to_owned(),
            Some("leave `server_name` out to use each server URL's host".to_owned()),
        ));
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return match inner.parse::<Ipv6Addr>() {
            Ok(ip) => Ok(ip.to_string()),
            Err(_) => invalid(
                "the part in brackets is not an IPv6 address",
                "e.g. [2001:db8::1]",
            ),
        };
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if text.contains("://") {
        return invalid(
            "it is a URL",
            "write the host name alone, e.g. api.internal",
        );
    }
    if text.contains(':') {
        return invalid("it has a port", "remove the `:port`");
    }
    if text.contains('*') {
        return invalid(
            "wildcards name certificates, not servers",
            "write the full name, e.g. api.internal",
        );
    }
    let name = text.to_ascii_lowercase();
    if name.len() > 253 {
        return invalid("it is longer than 253 characters", NAME_HINT);
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        if !valid {
            return invalid(
                "names are labels of up to 63 letters, digits and `-`, joined by `.`",
                NAME_HINT,
            );
        }
    }
    // `10.0.0.300` is neither: a name's last label is never all digits.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.chars().all(|c| c.is_ascii_digit()))
    {
        return invalid("it looks like an IP address but is not one", NAME_HINT);
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert_eq!(parse_server_name("API.Internal").unwrap(), "api.internal");
        assert_eq!(parse_server_name("10.0.0.1").unwrap(), "10.0.0.1");
        assert_eq!(parse_server_name("::1").unwrap(), "::1");
        assert_eq!(parse_server_name("[2001:DB8::1]").unwrap(), "2001:db8::1");
        assert_eq!(
            parse_server_name("_srv.x-y.local").unwrap(),
            "_srv.x-y.local"
        );
        for (bad, want) in [
            ("", "empty"),
            ("https://a", "it is a URL"),
            ("a.b:443", "it has a port"),
            ("*.a.b", "wildcards"),
            ("a..b", "labels"),
            ("-a.b", "labels"),
            ("a b", "labels"),
            ("a.b.", "labels"),
            ("10.0.0.300", "looks like an IP address"),
            ("[zz]", "not an IPv6 address"),
        ] {
            let (message, _) = parse_server_name(bad).unwrap_err();
            assert!(message.contains(want), "{bad}: {message}");
        }
        let long = ["a".repeat(63).as_str(); 5].join(".");
        assert!(parse_server_name(&long).is_err());
        let label = "a".repeat(64);
        assert!(parse_server_name(&label).is_err());
    }

    #[test]
    fn forward_headers() {
        assert_eq!(
            forward_header("X-Forwarded-Client-Cert", "").unwrap(),
            "x-forwarded-client-cert"
        );
        for (bad, want) in [
            ("", "empty"),
            (":path", "pseudo-header"),
            ("x y", "not a valid header name"),
            ("Host", "manages itself"),
            ("te", "manages itself"),
        ] {
            let (message, _) = forward_header(bad, "in x").unwrap_err();
            assert!(message.contains(want), "{bad}: {message}");
        }
    }

    #[test]
    fn io_errors_lose_their_os_error_number() {
        let err = check_readable(Path::new("/nonexistent/strait/x.pem"))
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "No such file or directory");
        let dir = check_readable(Path::new("/")).err().unwrap();
        assert_eq!(dir.to_string(), "it is a directory");
    }
}
