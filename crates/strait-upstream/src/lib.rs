//! Connecting to backends. One [`Endpoint`] per backend address: HTTP/2 endpoints share
//! multiplexed connections up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS, HTTP/1.1
//! endpoints keep an idle pool, and `https://` endpoints use whichever ALPN negotiated,
//! remembered per endpoint. This crate and `strait-http` are the only ones that touch the
//! HTTP engines; everything above sees `http::Request`/`Response` and [`strait_core::Body`].

mod backoff;
mod connect;
mod h1;
mod h2;
mod limit;

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use strait_config::{
    AlpnProtocol, Http2Settings, Lifecycle, ServiceLimits, UpstreamScheme, UpstreamUrl,
};
use strait_core::{Body, ErrorKind, ProxyError, Side};
use strait_telemetry::Metrics;
use strait_tls::UpstreamConnector;
use tokio::time::Instant;

use crate::connect::{Learned, Target};
use crate::limit::ConnLimit;

/// A connection ready for one request, of the protocol the endpoint speaks, and its pool.
enum Ready<'a> {
    H2(&'a h2::H2Pool, h2::ReadyStream),
    H1(&'a h1::H1Pool, h1::Checkout),
}

/// An endpoint's response to one request.
#[derive(Debug)]
pub struct Answer {
    pub response: Response<Body>,
    /// When the request went out on a ready connection. Time to the response counts from
    /// here: opening a connection first is not the backend's latency.
    pub sent_at: Instant,
}

/// One backend address and the connections to it.
#[derive(Debug)]
pub struct Endpoint {
    label: Arc<str>,
    target: Target,
    pool: Pool,
    /// The service's `circuit_breakers.max_connections` / `max_pending`, shared by both
    /// pools of an `https://` endpoint.
    limit: Option<Arc<ConnLimit>>,
}

#[derive(Debug)]
enum Pool {
    H2(h2::H2Pool),
    H1(h1::H1Pool),
    /// `https://`: both, used as ALPN decides.
    Tls(h2::H2Pool, h1::H1Pool),
}

// === impl Endpoint ===

impl Endpoint {
    /// `tls` is the service's connector, required for `https://` URLs and unused otherwise;
    /// `http2` applies to its HTTP/2 connections; `limits` gives the connection layer of the
    /// circuit breakers (`max_connections`, `max_pending`, per endpoint); `connect_timeout`
    /// bounds each new connection (TCP connect, and the TLS handshake for `https://`).
    pub fn new(
        url: &UpstreamUrl,
        tls: Option<&UpstreamConnector>,
        http2: &Http2Settings,
        lifecycle: &Lifecycle,
        limits: &ServiceLimits,
        connect_timeout: Duration,
        metrics: &Metrics,
    ) -> Endpoint {
        let scheme = match url.scheme {
            UpstreamScheme::H2c => "h2c",
            UpstreamScheme::Http => "http",
            UpstreamScheme::Https => "https",
        };
        let label: Arc<str> = if url.host.contains(':') {
            format!("{scheme}://[{}]:{}", url.host, url.port).into()
        } else {
            format!("{scheme}://{}:{}", url.host, url.port).into()
        };
        let tls = match url.scheme {
            UpstreamScheme::Https => tls.cloned(),
            _ => None,
        };
        let target = Target::new(
            url.host.clone(),
            url.port,
            label.clone(),
            tls,
            connect_timeout,
            metrics.clone(),
        );
        let limit = ConnLimit::new(limits).map(Arc::new);
        let h2 = || {
            h2::H2Pool::new(
                target.clone(),
                http2.clone(),
                lifecycle.clone(),
                limit.clone(),
            )
        };
        let h1 = || h1::H1Pool::new(target.clone(), lifecycle.clone(), limit.clone());
        let pool = match url.scheme {
            UpstreamScheme::H2c => Pool::H2(h2()),
            UpstreamScheme::Http => Pool::H1(h1()),
            UpstreamScheme::Https => Pool::Tls(h2(), h1()),
        };
        Endpoint {
            label,
            target,
            pool,
            limit,
        }
    }

    /// How users see this endpoint in errors, logs and metrics: `h2c://127.0.0.1:50051`.
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// Sends one request. The request's URI must be absolute (`http://authority/path`): the
    /// authority is what the backend sees as `:authority` or `Host`. Hop-by-hop headers must
    /// already be gone.
    /// Each pool counts the request in flight from when it is sent until its response body
    /// ends, in the body it returns (no wrapper of its own).
    /// Under `circuit_breakers.max_connections` the request may wait for room; past
    /// `max_pending` waiting requests it fails at once with [`ErrorKind::Overloaded`].
    pub async fn send(&self, request: Request<Body>) -> Result<Answer, ProxyError> {
        let ready = self.ready(strait_grpc::is_grpc(request.headers())).await?;
        let sent_at = Instant::now();
        let response = match ready {
            Ready::H2(pool, stream) => pool.send_on(stream, request).await?,
            // HTTP/1.1 futures are boxed: they are large, and every request's future would
            // carry them otherwise.
            Ready::H1(pool, checkout) => Box::pin(pool.send_on(checkout, request)).await?,
        };
        Ok(Answer { response, sent_at })
    }

    /// A connection ready to send a request on; `grpc` requests need HTTP/2.
    async fn ready(&self, grpc: bool) -> Result<Ready<'_>, ProxyError> {
        match &self.pool {
            Pool::H2(h2) => Ok(Ready::H2(h2, h2.ready_stream().await?)),
            Pool::H1(h1) => {
                if grpc {
                    return Err(self.http2_required("is an http:// (HTTP/1.1) server"));
                }
                Ok(Ready::H1(h1, Box::pin(h1.checkout()).await?))
            }
            Pool::Tls(h2, h1) => {
                let mut retried = false;
                loop {
                    let tried = self.tls_protocol();
                    let ready = match tried {
                        Learned::Http1 if grpc => {
                            return Err(self.http2_required("negotiated http/1.1 via ALPN"));
                        }
                        Learned::Http1 => Box::pin(h1.checkout()).await.map(|c| Ready::H1(h1, c)),
                        _ => h2.ready_stream().await.map(|s| Ready::H2(h2, s)),
                    };
                    match ready {
                        Ok(ready) => return Ok(ready),
                        // The first connection taught us the backend speaks the other
                        // protocol; nothing was sent, so trying that one is safe.
                        Err(_) if !retried && self.tls_protocol() != tried => retried = true,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Which protocol to try on a TLS endpoint: what ALPN taught us, else h2 when offered.
    fn tls_protocol(&self) -> Learned {
        match (self.target.learned(), &self.target.tls) {
            (Learned::Unknown, Some(tls)) if !tls.offers(AlpnProtocol::H2) => Learned::Http1,
            (learned, _) => learned,
        }
    }

    fn http2_required(&self, why: &str) -> ProxyError {
        ProxyError::new(
            ErrorKind::Http2Required,
            Side::Upstream,
            format!(
                "endpoint {} {why}, but gRPC needs HTTP/2 (use h2c://, or https:// with a backend that accepts ALPN h2)",
                self.label
            ),
        )
    }

    /// The host and port the endpoint's connections go to.
    pub fn address(&self) -> (&str, u16) {
        self.target.address()
    }

    /// Requests waiting for a stream or connection under `circuit_breakers.max_connections`
    /// (for tests and the admin API).
    pub fn pending_requests(&self) -> usize {
        self.limit.as_ref().map_or(0, |limit| limit.pending())
    }

    /// Open connections to this endpoint (for tests and the admin API).
    pub fn open_connections(&self) -> usize {
        match &self.pool {
            Pool::H2(pool) => pool.open_connections(),
            Pool::H1(pool) => pool.open_connections(),
            Pool::Tls(h2, h1) => h2.open_connections() + h1.open_connections(),
        }
    }
}
