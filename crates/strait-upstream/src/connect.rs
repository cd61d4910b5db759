use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strait_config::{format_duration, AlpnProtocol};
use strait_core::{ErrorKind, ProxyError, Side};
use strait_telemetry::{EndpointMetrics, Metrics, Protocol, UpstreamConnGuard};
use strait_tls::UpstreamConnector;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::backoff::Backoff;

/// A byte stream to a backend, plaintext or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub(crate) struct Connection {
    pub(crate) io: Box<dyn Io>,
    /// What TLS negotiated; `None` for plaintext or when the server chose nothing.
    pub(crate) alpn: Option<AlpnProtocol>,
    /// Counts the connection open until dropped with it.
    pub(crate) counted: UpstreamConnGuard,
}

/// What an endpoint is known to speak, learned from ALPN on the first TLS connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Learned {
    Unknown = 0,
    H2 = 1,
    Http1 = 2,
}

/// Where an endpoint's connections go, and how.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    host: String,
    port: u16,
    pub(crate) label: Arc<str>,
    pub(crate) tls: Option<UpstreamConnector>,
    /// The service's `connect_timeout`: the TCP connect and, for TLS, the handshake.
    connect_timeout: Duration,
    learned: Arc<AtomicU8>,
    pub(crate) metrics: Metrics,
    /// The endpoint's per-request series, looked up once here.
    pub(crate) endpoint_metrics: EndpointMetrics,
    backoff: Arc<Backoff>,
}

impl Target {
    pub(crate) fn new(
        host: String,
        port: u16,
        label: Arc<str>,
        tls: Option<UpstreamConnector>,
        connect_timeout: Duration,
        metrics: Metrics,
    ) -> Target {
        let endpoint_metrics = metrics.endpoint(&label);
        Target {
            endpoint_metrics,
            host,
            port,
            label,
            tls,
            connect_timeout,
            learned: Arc::new(AtomicU8::new(Learned::Unknown as u8)),
            metrics,
            backoff: Arc::new(Backoff::default()),
        }
    }

    pub(crate) fn learned(&self) -> Learned {
        match self.learned.load(Ordering::Acquire) {
            1 => Learned::H2,
            2 => Learned::Http1,
            _ => Learned::Unknown,
        }
    }

    pub(crate) fn learn(&self, alpn: Option<AlpnProtocol>) -> Learned {
        let learned = match alpn {
            Some(AlpnProtocol::H2) => Learned::H2,
            // No ALPN from a TLS server means HTTP/1.1.
            _ => Learned::Http1,
        };
        self.learned.store(learned as u8, Ordering::Release);
        learned
    }

    /// Connects; `plaintext` is the protocol a connection without TLS will speak (for the
    /// metrics), TLS connections are labelled by what ALPN negotiated.
    pub(crate) async fn connect(&self, plaintext: Protocol) -> Result<Connection, ProxyError> {
        let fail = |what: &str| {
            ProxyError::new(
                ErrorKind::Connect,
                Side::Upstream,
                format!("{what} endpoint {}", self.label),
            )
        };
        if let Err(off) = self.backoff.check() {
            let cause = off
                .cause
                .map_or_else(String::new, |cause| format!(" (the last: {cause})"));
            return Err(ProxyError::new(
                ErrorKind::Connect,
                Side::Upstream,
                format!(
                    "endpoint {} is backing off after {} failed connect(s){cause}; next attempt in {}ms",
                    self.label,
                    off.failures,
                    off.wait.as_millis()
                ),
            ));
        }
        let connect = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| fail("cannot connect to").with_source(e))?;
            // Small gRPC messages must not wait for Nagle.
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &self.tls else {
                return Ok(Connection {
                    io: Box::new(tcp),
                    alpn: None,
                    counted: self
                        .metrics
                        .upstream_connection_opened(&self.label, plaintext),
                });
            };
            // A rehearsal's `tls.fault`: a delayed handshake waits inside the connect
            // timeout; an aborted one fails where a real handshake failure would, with the
            // same error kind, so retries, backoff and outlier detection treat it alike.
            let injected = tls.injected_fault();
            if let Some(delay) = injected.delay {
                self.metrics
                    .upstream_tls_fault_injected(tls.service(), "delay");
                tokio::time::sleep(delay).await;
            }
            if injected.abort {
                self.metrics
                    .upstream_tls_fault_injected(tls.service(), "abort");
                return Err(fail("TLS handshake failed with").with_source(format!(
                    "aborted by the `tls.fault` of service `{}` (injected for a rehearsal, \
                     not a real failure)",
                    tls.service()
                )));
            }
            let connected = tls
                .connect(&self.host, tcp)
                .await
                .map_err(|e| fail("TLS handshake failed with").with_source(e))?;
            let protocol = match connected.alpn {
                Some(AlpnProtocol::H2) => Protocol::H2,
                _ => Protocol::H1,
            };
            Ok(Connection {
                io: Box::new(connected.stream),
                alpn: connected.alpn,
                counted: self
                    .metrics
                    .upstream_connection_opened(&self.label, protocol),
            })
        };
        let result = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(result) => result,
            Err(_) => Err(ProxyError::new(
                ErrorKind::Connect,
                Side::Upstream,
                format!(
                    "connecting to endpoint {} timed out after {} (the service's connect_timeout{})",
                    self.label,
                    format_duration(self.connect_timeout),
                    if self.tls.is_some() {
                        ", which includes the TLS handshake"
                    } else {
                        ""
                    }
                ),
            )),
        };
        if let Err(e) = &result {
            self.backoff.failed(Some(Arc::from(e.to_string())));
        }
        result
    }

    /// The connection is usable (its HTTP handshake worked): no more backing off.
    pub(crate) fn connected(&self) {
        self.backoff.succeeded();
    }

    /// The connection opened but its HTTP handshake failed: it counts as a failed connect.
    pub(crate) fn handshake_failed(&self) {
        self.backoff.failed(None);
    }

    pub(crate) fn address(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    /// The `Host`/`:authority` to use when the client sent none.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}
