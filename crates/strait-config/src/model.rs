//! The validated, immutable config model. Everything here has already been checked: names
//! resolve, URLs parse, durations are durations. The runtime builds its tables from these types
//! and never re-validates.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;

use crate::resilience::{
    Fallback, Fault, FaultDelay, HealthCheck, LoadBalancer, OutlierDetection, PanicMode,
    RetryPolicy, RouteBreaker, ServiceLimits, TlsFault,
};

mod limits;
pub use limits::*;

/// A whole config file, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// Admin listener; `None` when the file has no `admin:` section.
    pub admin: Option<Admin>,
    /// In file order.
    pub entrypoints: IndexMap<String, Entrypoint>,
    /// In file order.
    pub routers: IndexMap<String, Router>,
    /// In file order.
    pub services: IndexMap<String, Service>,
    /// `None`: no access log (the default).
    pub access_log: Option<AccessLogTarget>,
    /// How long open requests may take to finish at shutdown before they are reset.
    /// Default 30s.
    pub drain_timeout: Duration,
    /// The process's shutdown sequence (`lifecycle:` at top level).
    pub lifecycle: ProcessLifecycle,
}

/// How the process stops (`lifecycle:` at top level).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessLifecycle {
    /// After SIGTERM, how long `/readyz` answers 503 while the entrypoints keep accepting and
    /// serving, so load balancers see "not ready" before connections are refused; then the
    /// drain starts. Default zero: the drain starts at once.
    pub accept_grace: Duration,
}

/// Where the access log goes: one JSON object a line per request or stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    /// Appended to; created if missing. Resolved against the config file's directory.
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct Admin {
    pub address: SocketAddr,
    /// A file holding the bearer token every admin request must carry
    /// (`Authorization: Bearer <token>`); `None`: no token (the default, for loopback).
    pub token_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct Entrypoint {
    pub address: SocketAddr,
    /// `None`: plaintext (HTTP/1.1, h2c prior knowledge and Upgrade, as `protocols` allows).
    pub tls: Option<ServerTls>,
    /// What a plaintext entrypoint serves (`protocols:`); always the default with TLS, where
    /// `tls.alpn` decides.
    pub protocols: PlaintextProtocols,
    /// HTTP/2 settings and keepalive for client connections.
    pub http2: Http2Settings,
    /// Aging out client connections.
    pub lifecycle: Lifecycle,
    /// Limits against abusive clients (`limits:`).
    pub limits: Limits,
    /// Path rewriting before routing (`path_normalization:`).
    pub path_normalization: PathNormalization,
}

/// HTTP/2 settings of one leg (`http2:` on an entrypoint or a service). `None` fields keep
/// strait's defaults (see docs/operations.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Http2Settings {
    /// Streams the peer may open at once on a connection (entrypoint), or the most streams
    /// strait puts on one backend connection, never above the backend's own limit (service).
    pub max_concurrent_streams: Option<u32>,
    /// Bytes; 65535..=2147483647.
    pub initial_stream_window: Option<u32>,
    /// Bytes; 65535..=2147483647.
    pub initial_connection_window: Option<u32>,
    /// Size the windows by measured bandwidth-delay product instead (overrides the two above).
    pub adaptive_window: bool,
    /// Bytes; 16384..=16777215.
    pub max_frame_size: Option<u32>,
    /// Bytes.
    pub max_header_list_size: Option<u32>,
    /// Send a PING this often; `None`: no keepalive.
    pub keepalive_interval: Option<Duration>,
    /// A PING not answered within this closes the connection. Default 20s; only with an
    /// interval.
    pub keepalive_timeout: Option<Duration>,
}

/// When connections are retired on purpose.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// After this long a connection is told to go away (graceful GOAWAY for HTTP/2,
    /// `connection: close` for HTTP/1.1), idle or not, so long-lived clients re-balance.
    pub max_connection_age: Option<Duration>,
    /// How long its streams then have to finish before they are reset. Default: no limit
    /// beyond drain. Only with max_connection_age.
    pub max_connection_age_grace: Option<Duration>,
    /// A connection with no request or stream open for this long is told to go away the same
    /// way. `None`: idle connections stay.
    pub idle_timeout: Option<Duration>,
    /// Services only (entrypoints do not take the key, so it is always `None` there): a
    /// backend connection that has carried this many requests takes no new ones and closes
    /// once they have ended. `None`: unlimited.
    pub max_requests_per_connection: Option<NonZeroU32>,
}

/// TLS termination on an entrypoint.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerTls {
    /// At least one. Chosen by SNI against each certificate's names; see `default`.
    pub certificates: Vec<CertificateFiles>,
    /// ALPN protocols offered, in preference order; never empty, no duplicates.
    /// Default `[h2, http/1.1]`; one entry locks the listener to that protocol.
    pub alpn: Vec<AlpnProtocol>,
    /// Refuse handshakes whose SNI matches no certificate (and handshakes without SNI).
    /// Default false: such clients get the default certificate.
    pub sni_strict: bool,
    /// Default TLS 1.2.
    pub min_version: TlsVersion,
    /// rustls suite names (see `CIPHER_SUITES`); empty: the provider's defaults.
    pub cipher_suites: Vec<String>,
    /// Default 10s.
    pub handshake_timeout: Duration,
    pub client_auth: Option<ClientAuth>,
    /// `fault: { delay: ... }`: a share of client handshakes waits this long first, to
    /// rehearse slow TLS (still within `handshake_timeout`). Entrypoints only delay; failing
    /// handshakes is for services. `None`: no fault (the default).
    pub fault: Option<FaultDelay>,
}

/// A PEM certificate chain and its private key. Paths are resolved against the config
/// file's directory and were readable when the config was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The certificate for clients whose SNI matches none (or who send none). When no
    /// certificate says `default: true`, the first one is the default. At most one is true.
    pub default: bool,
}

/// The protocols a plaintext entrypoint serves (`protocols:`), which cannot be empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlaintextProtocols {
    /// `[http/1.1, h2c]`, the default: HTTP/1.1, h2c with prior knowledge, and
    /// `Upgrade: h2c`.
    #[default]
    Http11AndH2c,
    /// `[http/1.1]`: an h2c preface gets GOAWAY `HTTP_1_1_REQUIRED`; `Upgrade: h2c` is
    /// ignored (the request is served over HTTP/1.1).
    Http11,
    /// `[h2c]`: HTTP/2 with prior knowledge only; HTTP/1.1 (an upgrade request included)
    /// gets 505.
    H2c,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlpnProtocol {
    /// `h2`
    H2,
    /// `http/1.1`
    Http11,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `"1.2"`
    Tls12,
    /// `"1.3"`
    Tls13,
}

/// Client certificates (mTLS) on a TLS entrypoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAuth {
    pub mode: ClientAuthMode,
    /// CA bundle that client certificates must chain to; present unless `mode` is `None`.
    pub ca_file: Option<PathBuf>,
    /// Header that carries the verified client identity to the backend (like Envoy's
    /// `x-forwarded-client-cert`); any incoming header of that name is replaced.
    pub forward_header: Option<http::HeaderName>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthMode {
    /// No certificate is asked for.
    None,
    /// Asked for; a client without one is let in, one with an invalid one is refused.
    Request,
    /// A valid certificate is required to complete the handshake.
    Require,
}

/// Cipher suite names as rustls (aws-lc-rs provider) spells them.
pub const CIPHER_SUITES: &[&str] = &[
    "TLS13_AES_256_GCM_SHA384",
    "TLS13_AES_128_GCM_SHA256",
    "TLS13_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

#[derive(Clone, Debug)]
pub struct Router {
    /// Entrypoint names this router serves; every name exists. Empty in the file (key absent)
    /// means all entrypoints, and is expanded here to the full list in file order.
    pub entrypoints: Vec<String>,
    pub matcher: Match,
    /// Name of a service that exists.
    pub service: String,
    /// Explicit priority; higher wins. `None`: ordered by specificity.
    pub priority: Option<i64>,
    /// Caps the deadline of every request on this router (and is the deadline for requests
    /// that carry none). `None`: no timeout.
    pub timeout: Option<Duration>,
    /// A stream with no DATA frame in either direction for this long is ended (gRPC:
    /// `DEADLINE_EXCEEDED`; otherwise 504 before the response head, a reset after it).
    /// `None` (the default): nothing cuts a quiet stream.
    pub stream_idle_timeout: Option<Duration>,
    /// The traffic class of every request on this router (over the class header); one of
    /// the service's classes.
    pub traffic_class: Option<String>,
    pub retry: Option<RetryPolicy>,
    pub circuit_breaker: Option<RouteBreaker>,
    pub fallback: Option<Fallback>,
    pub fault: Option<Fault>,
}

/// All present conditions must hold. An empty match matches every request.
#[derive(Clone, Debug, Default)]
pub struct Match {
    pub host: Option<HostMatch>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    /// Fully qualified service, e.g. `shop.OrderService` (matches path `/shop.OrderService/*`).
    pub grpc_service: Option<String>,
    /// Method name, e.g. `PlaceOrder` (matches path `/*/PlaceOrder`).
    pub grpc_method: Option<String>,
    /// Any of these methods; empty means any method.
    pub methods: Vec<http::Method>,
    pub headers: Vec<(http::HeaderName, ValueMatch)>,
    pub query: Vec<(String, ValueMatch)>,
    /// A SAN (DNS name, URI, email or IP, as text) of the verified client certificate must
    /// equal this. Only requests on TLS entrypoints with client certificates can match.
    pub client_cert_san: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    /// Lower-cased, without port.
    Exact(String),
    /// `*.example.com` stored as the suffix `.example.com` (lower-cased); matches any name
    /// that ends with it and has at least one more label in front.
    Wildcard(String),
}

#[derive(Clone, Debug)]
pub enum ValueMatch {
    Exact(String),
    Regex(regex::Regex),
    Present,
}

#[derive(Clone, Debug)]
pub struct Service {
    /// At least one.
    pub servers: Vec<Server>,
    /// How long opening a connection to a server may take: the TCP connect, and for
    /// `https://` servers the TLS handshake too. Default 5s; never zero.
    pub connect_timeout: Duration,
    /// TLS settings for the service's `https://` servers (defaults when absent). Only
    /// allowed when the service has an `https://` server.
    pub tls: Option<UpstreamTls>,
    /// HTTP/2 settings and keepalive for connections to the servers (h2c://, and https://
    /// that negotiated h2).
    pub http2: Http2Settings,
    /// Retiring connections to the servers: after `max_connection_age` a connection takes no
    /// new requests and closes once its streams finish (or its grace ends), so new backend
    /// instances behind a name get traffic; after `idle_timeout` with nothing open it closes;
    /// after `max_requests_per_connection` requests it takes no new ones and closes once they
    /// end.
    pub lifecycle: Lifecycle,
    pub load_balancer: LoadBalancer,
    pub health_check: Option<HealthCheck>,
    pub panic_mode: PanicMode,
    pub outlier_detection: OutlierDetection,
    /// `circuit_breakers:` in the file: the connection and request layers.
    pub limits: ServiceLimits,
}

/// How strait connects to `https://` servers.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamTls {
    /// Offered in this order; default `[h2, http/1.1]`. `[h2]` for gRPC backends that must
    /// never fall back to HTTP/1.1.
    pub alpn: Vec<AlpnProtocol>,
    /// CA bundle to verify servers with instead of the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// Name to send as SNI and verify the certificate against, instead of the URL's host.
    pub server_name: Option<String>,
    /// Client certificate for upstream mTLS: both or neither.
    pub client_cert: Option<CertificateFiles>,
    /// Accept any server certificate. For development only; logged at every load.
    pub insecure_skip_verify: bool,
    /// Injected handshake failures and delays, for rehearsals; logged at every load.
    /// `None`: no fault (the default).
    pub fault: Option<TlsFault>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub url: UpstreamUrl,
    /// 1 when not given; never 0.
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub scheme: UpstreamScheme,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamScheme {
    /// `h2c://`: HTTP/2 with prior knowledge, plaintext.
    H2c,
    /// `http://`: HTTP/1.1, plaintext.
    Http,
    /// `https://`: TLS; ALPN decides HTTP/2 or HTTP/1.1. Default port 443.
    Https,
}

// === impl AlpnProtocol ===

impl AlpnProtocol {
    /// The protocol id as it goes on the wire and in configs: `h2`, `http/1.1`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlpnProtocol::H2 => "h2",
            AlpnProtocol::Http11 => "http/1.1",
        }
    }
}

// === impl PlaintextProtocols ===

impl PlaintextProtocols {
    /// The protocol names as configs write them, in the order the default lists them.
    pub const NAMES: [&'static str; 2] = ["http/1.1", "h2c"];

    /// Whether HTTP/1.1 requests are served.
    pub fn http11(self) -> bool {
        self != PlaintextProtocols::H2c
    }

    /// Whether HTTP/2 without TLS (prior knowledge, and `Upgrade: h2c`) is served.
    pub fn h2c(self) -> bool {
        self != PlaintextProtocols::Http11
    }

    /// As a config writes it: `[http/1.1, h2c]`, `[http/1.1]` or `[h2c]`.
    pub fn as_str(self) -> &'static str {
        match self {
            PlaintextProtocols::Http11AndH2c => "[http/1.1, h2c]",
            PlaintextProtocols::Http11 => "[http/1.1]",
            PlaintextProtocols::H2c => "[h2c]",
        }
    }
}

// === impl TlsVersion ===

impl TlsVersion {
    /// As written in configs: `1.2`, `1.3`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}
