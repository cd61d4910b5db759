//! Connecting to backends. One [`Endpoint`] per backend address: HTTP/2 endpoints share
//! multiplexed connections up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS, HTTP/1.1
//! endpoints keep an idle pool. This crate and `strait-http` are the only ones that touch the
//! HTTP engines; everything above sees `http::Request`/`Response` and [`strait_core::Body`].

mod connect;
mod h1;
mod h2;

use std::sync::Arc;

use http::{Request, Response};
use strait_config::{UpstreamScheme, UpstreamUrl};
use strait_core::{Body, ProxyError};

/// One backend address and the connections to it.
#[derive(Debug)]
pub struct Endpoint {
    label: Arc<str>,
    pool: Pool,
}

#[derive(Debug)]
enum Pool {
    H2(h2::H2Pool),
    H1(h1::H1Pool),
}

// === impl Endpoint ===

impl Endpoint {
    pub fn new(url: &UpstreamUrl) -> Endpoint {
        let scheme = match url.scheme {
            UpstreamScheme::H2c => "h2c",
            UpstreamScheme::Http => "http",
        };
        let label: Arc<str> = if url.host.contains(':') {
            format!("{scheme}://[{}]:{}", url.host, url.port).into()
        } else {
            format!("{scheme}://{}:{}", url.host, url.port).into()
        };
        let target = connect::Target::new(url.host.clone(), url.port, label.clone());
        let pool = match url.scheme {
            UpstreamScheme::H2c => Pool::H2(h2::H2Pool::new(target)),
            UpstreamScheme::Http => Pool::H1(h1::H1Pool::new(target)),
        };
        Endpoint { label, pool }
    }

    /// How users see this endpoint in errors, logs and metrics: `h2c://127.0.0.1:50051`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sends one request. The request's URI must be absolute (`http://authority/path`): the
    /// authority is what the backend sees as `:authority` or `Host`. Hop-by-hop headers must
    /// already be gone.
    pub async fn send(&self, request: Request<Body>) -> Result<Response<Body>, ProxyError> {
        match &self.pool {
            Pool::H2(pool) => pool.send(request).await,
            Pool::H1(pool) => pool.send(request).await,
        }
    }

    /// Open connections to this endpoint (for tests and the admin API).
    pub fn open_connections(&self) -> usize {
        match &self.pool {
            Pool::H2(pool) => pool.open_connections(),
            Pool::H1(pool) => pool.open_connections(),
        }
    }
}
