//! Accepting clients. One plaintext listener serves HTTP/1.1, h2c with prior knowledge and h2c
//! via `Upgrade: h2c`, or what its `protocols` allow of them. This crate and `strait-upstream` are the only ones that touch the HTTP
//! engines; the [`Handler`] above sees `http::Request<Body>` and answers `Response<Body>`.

mod admit;
mod connection;
mod farewell;
mod frame_guard;
mod h1;
mod h1_guard;
mod h2;
mod h2c_upgrade;
mod limits;
pub mod normalize;
mod plaintext;
mod respond;
mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use strait_core::Body;

pub use respond::{is_grpc_over_http1, respond, text_response, Reply, ReplyFormat};
pub use server::serve;
pub use server::ListenerConfig;

/// What the proxy knows about the client connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub entrypoint: Arc<str>,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// `None` on plaintext entrypoints.
    pub tls: Option<TlsInfo>,
    /// The listener settings the connection was accepted with.
    pub listener: Arc<ListenerConfig>,
    /// The client's address as `x-forwarded-for` and `forwarded` write it, made once per
    /// connection rather than per request.
    pub(crate) forwarded: normalize::ForwardedFor,
}

impl ConnInfo {
    pub fn new(
        entrypoint: Arc<str>,
        remote: SocketAddr,
        local: SocketAddr,
        tls: Option<TlsInfo>,
        listener: Arc<ListenerConfig>,
    ) -> ConnInfo {
        let forwarded = normalize::ForwardedFor::new(remote.ip(), tls.is_some());
        ConnInfo {
            entrypoint,
            remote,
            local,
            tls,
            listener,
            forwarded,
        }
    }
}

/// What the TLS handshake of a client connection negotiated.
#[derive(Debug)]
pub struct TlsInfo {
    pub alpn: Option<strait_config::AlpnProtocol>,
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    pub sni: Option<String>,
    /// The verified client certificate, with mTLS.
    pub client: Option<Arc<strait_tls::ClientIdentity>>,
}

/// Answers requests; implemented by the proxy in `strait-app`.
pub trait Handler: Clone + Send + Sync + 'static {
    fn handle(
        &self,
        request: Request<Body>,
        conn: &Arc<ConnInfo>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static;
}
