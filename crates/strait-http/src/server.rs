use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use strait_config::{
    AlpnProtocol, Http2Settings, Lifecycle, Limits, PathNormalization, PlaintextProtocols,
};
use strait_core::DrainWatch;
use strait_telemetry::{HandshakeResult, Metrics, Protocol};
use strait_tls::{HandshakeError, TlsListener};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::h1::serve_h1;
use crate::h1_guard::H1Guard;
use crate::h2::{guarded, serve_h2};
use crate::limits::{Enforcer, Limit};
use crate::plaintext::{self, Refusal, Verdict};
use crate::{ConnInfo, Handler, TlsInfo};

/// An entrypoint's settings for new connections; a reload swaps them in place.
#[derive(Debug, Default)]
pub struct ListenerConfig {
    /// With TLS, each connection first completes a handshake with this.
    pub tls: Option<Arc<TlsListener>>,
    /// Without TLS: HTTP/1.1, h2c, or both.
    pub protocols: PlaintextProtocols,
    pub http2: Http2Settings,
    pub lifecycle: Lifecycle,
    pub limits: Limits,
    pub path_normalization: PathNormalization,
}

/// Accepts connections on `listener` until `drain` fires, serving each with `handler` and
/// the settings `config` holds when it is accepted; a reload may swap them (or switch between
/// TLS and plaintext) without closing the socket. Connections already open are told to
/// finish gracefully when draining starts, or when they reach their maximum age.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    entrypoint: Arc<str>,
    config: Arc<ArcSwap<ListenerConfig>>,
    handler: H,
    metrics: Metrics,
    mut drain: DrainWatch,
) {
    let enforcer = Arc::new(Enforcer::new(entrypoint.clone(), metrics.clone()));
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
        let started = Instant::now();
        let settings = config.load_full();
        let admitted = match enforcer.admit(remote.ip(), &settings.limits) {
            Ok(admitted) => admitted,
            Err(limit) => {
                // Closed at once: the cheapest answer, and the one that frees the slot.
                enforcer.fired(limit, remote);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let client = Client {
            entrypoint: entrypoint.clone(),
            remote,
            local,
            started,
            settings,
            handler: handler.clone(),
            drain: drain.clone(),
            metrics: metrics.clone(),
            enforcer: enforcer.clone(),
        };
        // The handshake is boxed and made before the task, so the task holds only two
        // pointers: the handshake, freed when it ends, then the protocol's connection, boxed
        // once known. An idle connection's memory is then that connection's state, not the
        // size of the largest protocol's (TLS included), all of which would be written when
        // the task is spawned.
        let handshake: Handshake = match client.settings.tls.clone() {
            None => Box::pin(client.plaintext(stream)),
            Some(tls) => Box::pin(client.secure(stream, tls)),
        };
        tokio::spawn(async move {
            let _admitted = admitted;
            if let Some(serving) = handshake.await {
                serving.await;
            }
        });
    }
}

/// A connection's handshake (TLS, or the plaintext preface sniff), boxed: the connection to
/// serve, if any.
type Handshake = Pin<Box<dyn Future<Output = Option<Serving>> + Send>>;

/// A connection being served, boxed.
type Serving = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An accepted client connection, before its protocol is known.
struct Client<H> {
    entrypoint: Arc<str>,
    remote: SocketAddr,
    local: SocketAddr,
    started: Instant,
    settings: Arc<ListenerConfig>,
    handler: H,
    drain: DrainWatch,
    metrics: Metrics,
    enforcer: Arc<Enforcer>,
}

impl<H: Handler> Client<H> {
    fn deadline(&self) -> Instant {
        self.started + self.settings.limits.header_read_timeout
    }

    /// Plaintext: HTTP/2 with prior knowledge when the first bytes are the preface, else
    /// HTTP/1.1 (which may still upgrade to h2c), as far as the entrypoint's `protocols`
    /// allow; a client that speaks one they leave out is told so and the connection closed.
    async fn plaintext(self, stream: TcpStream) -> Option<Serving> {
        // Counted once the first bytes say which protocol it speaks.
        let sniffed = tokio::time::timeout_at(self.deadline(), plaintext::sniff(&stream)).await;
        let Ok(sniffed) = sniffed else {
            self.enforcer.fired(Limit::HeaderReadTimeout, self.remote);
            return None;
        };
        match plaintext::verdict(sniffed, self.settings.protocols) {
            Verdict::Serve(protocol) => Some(self.serve(stream, None, protocol)),
            Verdict::Refuse(refusal) => self.refuse(stream, refusal),
            Verdict::Close => None,
        }
    }

    /// A client that spoke what the entrypoint's `protocols` leave out: counted, logged, and
    /// told why (GOAWAY or 505) before the connection closes.
    fn refuse(self, stream: TcpStream, refusal: Refusal) -> Option<Serving> {
        self.enforcer.protocol_refused(refusal);
        info!(
            entrypoint = %self.entrypoint,
            client = %self.remote,
            reason = refusal.reason(),
            "refused a client that spoke {}: entrypoint `{}` has `protocols: {}`; add it there \
             if such clients should be served",
            refusal.spoken(),
            self.entrypoint,
            self.settings.protocols.as_str(),
        );
        let answer = refusal.answer(&self.entrypoint)?;
        Some(Box::pin(plaintext::farewell(stream, answer)))
    }

    /// TLS: the handshake, bounded by the header read timeout, then HTTP/2 or HTTP/1.1 as
    /// ALPN says.
    async fn secure(self, stream: TcpStream, tls: Arc<TlsListener>) -> Option<Serving> {
        let (entrypoint, remote, metrics) = (&self.entrypoint, self.remote, &self.metrics);
        // A rehearsal's `tls.fault`: the wait happens inside both timeouts, as a slow
        // handshake's would.
        let delay = tls.injected_delay();
        if delay.is_some() {
            metrics.tls_fault_injected(entrypoint, "delay");
        }
        let handshake = Box::pin(tls.accept(stream, delay));
        let accepted = match tokio::time::timeout_at(self.deadline(), handshake).await {
            Ok(Ok(accepted)) => accepted,
            Err(_) => {
                self.enforcer.fired(Limit::HeaderReadTimeout, remote);
                metrics.tls_handshake(entrypoint, "", "", HandshakeResult::Timeout);
                return None;
            }
            Ok(Err(e)) => {
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
                metrics.tls_handshake(entrypoint, "", "", result);
                return None;
            }
        };
        let alpn = accepted.alpn.map_or("", |p| p.as_str());
        metrics.tls_handshake(entrypoint, alpn, accepted.version, HandshakeResult::Ok);
        // A client that offers no ALPN speaks HTTP/1.1, unless the listener is locked to h2.
        let protocol = if accepted.alpn == Some(AlpnProtocol::H2)
            || (accepted.alpn.is_none() && !tls.alpn().contains(&AlpnProtocol::Http11))
        {
            Protocol::H2
        } else {
            Protocol::H1
        };
        let info = TlsInfo {
            alpn: accepted.alpn,
            version: accepted.version,
            sni: accepted.sni,
            client: accepted.client,
        };
        Some(self.serve(accepted.stream, Some(info), protocol))
    }

    /// The connection, boxed, speaking `protocol` over `io`.
    fn serve<I>(self, io: I, tls: Option<TlsInfo>, protocol: Protocol) -> Serving
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let Client {
            entrypoint,
            remote,
            local,
            started,
            settings,
            handler,
            drain,
            metrics,
            enforcer,
        } = self;
        let counted = metrics.connection_opened(&entrypoint, protocol);
        let conn = Arc::new(ConnInfo::new(entrypoint, remote, local, tls, settings));
        if matches!(protocol, Protocol::H2 | Protocol::H2c) {
            let io = guarded(io, &conn, started, &enforcer);
            Box::pin(serve_h2(io, handler, conn, drain, enforcer, counted))
        } else {
            let io = H1Guard::new(io, enforcer.clone(), remote);
            Box::pin(serve_h1(io, conn, handler, drain, enforcer, counted))
        }
    }
}
