use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use strait_config::AlpnProtocol;
use strait_core::{Body, DrainWatch};
use strait_telemetry::{HandshakeResult, Metrics, Protocol};
use strait_tls::{HandshakeError, TlsListener};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::{h2c_upgrade, ConnInfo, Handler, TlsInfo};

/// Flow-control windows we advertise to clients; see strait-upstream for the reasoning.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;
/// Streams a client may open at once on one connection (hyper's default is 200; gRPC clients
/// multiplex whole workloads over one connection).
const MAX_CONCURRENT_STREAMS: u32 = 1000;

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which HTTP versions a connection may speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocols {
    /// Plaintext: HTTP/1.1, h2c with prior knowledge (sniffed from the preface) and
    /// `Upgrade: h2c`.
    Plaintext,
    Http1,
    Http2,
}

/// Accepts connections on `listener` until `drain` fires, serving each with `handler`.
/// While `tls` holds a listener config, each connection first completes a TLS handshake with
/// it; a reload may swap it (or switch between TLS and plaintext) without closing the socket.
/// Connections already open are told to finish gracefully when draining starts.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    entrypoint: Arc<str>,
    tls: Arc<ArcSwapOption<TlsListener>>,
    handler: H,
    metrics: Metrics,
    mut drain: DrainWatch,
) {
    loop {
        let accepted = tokio::select! {
            _ = drain.signaled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: say so and give the system a moment
                // instead of spinning on the same error.
                warn!(entrypoint = %entrypoint, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let entrypoint = entrypoint.clone();
        let tls = tls.load_full();
        let handler = handler.clone();
        let drain = drain.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                // Counted once the first bytes say which protocol it speaks.
                let mut preface = [0u8; PREFACE.len()];
                let protocol = match stream.peek(&mut preface).await {
                    Ok(n) if n > 0 && preface[..n] == PREFACE[..n] => Protocol::H2c,
                    Ok(n) if n > 0 => Protocol::H1,
                    _ => return,
                };
                let _counted = metrics.connection_opened(&entrypoint, protocol);
                let conn = ConnInfo {
                    entrypoint,
                    remote,
                    local,
                    tls: None,
                };
                serve_connection(stream, Arc::new(conn), Protocols::Plaintext, handler, drain)
                    .await;
                return;
            };
            let accepted = match tls.accept(stream).await {
                Ok(accepted) => accepted,
                Err(e) => {
                    let result = match &e {
                        HandshakeError::Timeout(_) => HandshakeResult::Timeout,
                        HandshakeError::Refused(why) => {
                            info!(entrypoint = %entrypoint, client = %remote, "TLS handshake refused: {why}");
                            HandshakeResult::Refused
                        }
                        HandshakeError::Io(_) => HandshakeResult::Failed,
                    };
                    if result != HandshakeResult::Refused {
                        debug!(entrypoint = %entrypoint, client = %remote, error = %e, "TLS handshake failed");
                    }
                    metrics.tls_handshake(&entrypoint, "", "", result);
                    return;
                }
            };
            let alpn = accepted.alpn.map_or("", |p| p.as_str());
            metrics.tls_handshake(&entrypoint, alpn, accepted.version, HandshakeResult::Ok);
            let protocol = if accepted.alpn == Some(AlpnProtocol::H2)
                || (accepted.alpn.is_none() && !tls.alpn().contains(&AlpnProtocol::Http11))
            {
                Protocol::H2
            } else {
                Protocol::H1
            };
            let _counted = metrics.connection_opened(&entrypoint, protocol);
            let protocols = match accepted.alpn {
                Some(AlpnProtocol::H2) => Protocols::Http2,
                Some(AlpnProtocol::Http11) => Protocols::Http1,
                // A client that offers no ALPN speaks HTTP/1.1, unless the listener is
                // locked to h2.
                None if tls.alpn().contains(&AlpnProtocol::Http11) => Protocols::Http1,
                None => Protocols::Http2,
            };
            let conn = ConnInfo {
                entrypoint,
                remote,
                local,
                tls: Some(TlsInfo {
                    alpn: accepted.alpn,
                    version: accepted.version,
                    sni: accepted.sni,
                    client: accepted.client,
                }),
            };
            serve_connection(accepted.stream, Arc::new(conn), protocols, handler, drain).await;
        });
    }
}

async fn serve_connection<H, I>(
    io: I,
    conn: Arc<ConnInfo>,
    protocols: Protocols,
    handler: H,
    mut drain: DrainWatch,
) where
    H: Handler,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    builder = match protocols {
        Protocols::Plaintext => builder,
        Protocols::Http1 => builder.http1_only(),
        Protocols::Http2 => builder.http2_only(),
    };
    let service = service(handler, conn.clone(), drain.clone());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = drain.signaled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        debug!(entrypoint = %conn.entrypoint, client = %conn.remote, error = %e, "client connection ended");
    }
}

/// The per-connection service: hands requests to the handler, and on plaintext connections
/// takes over HTTP/1.1 requests that ask for `Upgrade: h2c`.
pub(crate) fn service<H: Handler>(
    handler: H,
    conn: Arc<ConnInfo>,
    drain: DrainWatch,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone
       + Send {
    service_fn(move |mut request: Request<Incoming>| {
        let handler = handler.clone();
        let conn = conn.clone();
        let upgrade = if conn.tls.is_none() {
            h2c_upgrade::take(&mut request, &handler, &conn, &drain)
        } else {
            None
        };
        async move {
            if let Some(switching) = upgrade {
                return Ok::<_, Infallible>(switching);
            }
            let request = request.map(strait_core::boxed);
            Ok(handler.handle(request, &conn).await)
        }
    })
}

pub(crate) fn h2_server() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    builder
}
