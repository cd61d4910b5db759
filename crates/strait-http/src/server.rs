use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use strait_config::{
    AlpnProtocol, Http2Settings, Lifecycle, Limits, PathNormalization, PlaintextProtocols,
};
use strait_core::{Body, DrainWatch};
use strait_telemetry::{HandshakeResult, Metrics, ObservedBody, Protocol};
use strait_tls::{HandshakeError, TlsListener};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::admit::admit;
use crate::frame_guard::FrameGuard;
use crate::h1_guard::H1Guard;
use crate::limits::{Enforcer, Limit};
use crate::plaintext::{self, Refusal, Sniffed};
use crate::{h2c_upgrade, ConnInfo, Handler, TlsInfo};

/// Flow-control windows we advertise to clients; see strait-upstream for the reasoning.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;
/// Streams a client may open at once on one connection (hyper's default is 200; gRPC clients
/// multiplex whole workloads over one connection).
const MAX_CONCURRENT_STREAMS: u32 = 1000;
/// How long a keepalive PING may go unanswered, unless configured.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

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
        let protocols = self.settings.protocols;
        let (protocol, allowed, refusal) = match sniffed {
            Ok(Sniffed::H2c) => (Protocol::H2c, protocols.h2c(), Refusal::H2cPriorKnowledge),
            Ok(Sniffed::Http1) => (Protocol::H1, protocols.http11(), Refusal::Http1),
            Ok(Sniffed::Closed) => return None,
            Err(_) => {
                self.enforcer.fired(Limit::HeaderReadTimeout, self.remote);
                return None;
            }
        };
        if allowed {
            Some(self.serve(stream, None, protocol))
        } else {
            self.refuse(stream, refusal)
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

/// An HTTP/2 connection behind the flood guard of its entrypoint's limits.
pub(crate) fn guarded<I>(
    io: I,
    conn: &ConnInfo,
    started: Instant,
    enforcer: &Arc<Enforcer>,
) -> FrameGuard<I> {
    FrameGuard::new(
        io,
        &conn.listener.limits,
        &conn.listener.http2,
        started,
        enforcer.clone(),
        conn.remote,
    )
}

/// Serves an HTTP/1.1 connection (plaintext connections may switch to h2c with
/// `Upgrade: h2c`; the service takes those over).
/// `guard` is held while the connection is served (the open-connections gauge).
async fn serve_h1<H, I>(
    io: I,
    conn: Arc<ConnInfo>,
    handler: H,
    mut drain: DrainWatch,
    enforcer: Arc<Enforcer>,
    guard: impl Send + 'static,
) where
    H: Handler,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Each request's headers (and the idle time before them) must arrive within this.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(conn.listener.limits.header_read_timeout);
    let activity = Activity::new(&conn.listener.lifecycle);
    let served = Arc::new(AtomicUsize::new(0));
    let service = service(
        handler,
        conn.clone(),
        activity.clone(),
        drain.clone(),
        enforcer.clone(),
        served.clone(),
    );
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = drive(
        connection,
        &mut drain,
        &conn.listener.lifecycle,
        &activity,
        |c| c.graceful_shutdown(),
    )
    .await;
    if let Err(e) = result {
        // A connection that never completed a request head in time; one that served
        // requests and then sat idle past the timeout is just closed.
        if e.is_timeout() && served.load(Ordering::Acquire) == 0 {
            enforcer.fired(Limit::HeaderReadTimeout, conn.remote);
        }
        debug!(entrypoint = %conn.entrypoint, client = %conn.remote, error = %e, "client connection ended");
    }
    drop(guard);
}

/// Serves an HTTP/2 connection: TLS with ALPN h2, h2c with prior knowledge, or h2c after an
/// `Upgrade: h2c`. `guard` is held while the connection is served (the open-connections
/// gauge).
pub(crate) fn serve_h2<H, I>(
    io: I,
    handler: H,
    conn: Arc<ConnInfo>,
    mut drain: DrainWatch,
    enforcer: Arc<Enforcer>,
    guard: impl Send + 'static,
) -> impl Future<Output = ()> + Send
where
    H: Handler,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let activity = Activity::new(&conn.listener.lifecycle);
    let service = {
        let conn = conn.clone();
        let activity = activity.clone();
        // `handle`'s own future, with no async block around it: one would keep a second
        // copy of the request and the handles for as long as the stream lives.
        service_fn(move |request: Request<Incoming>| {
            handle(
                handler.clone(),
                request,
                conn.clone(),
                enforcer.clone(),
                activity.clone(),
            )
        })
    };
    let mut connection =
        h2_server(&conn.listener.http2).serve_connection(TokioIo::new(io), service);
    // The connection is built before the future, which then holds only what serving needs:
    // an idle connection's memory is mostly this future.
    async move {
        let lifecycle = &conn.listener.lifecycle;
        let connection = Pin::new(&mut connection);
        let result = drive(connection, &mut drain, lifecycle, &activity, |c| {
            c.graceful_shutdown()
        })
        .await;
        if let Err(e) = result {
            debug!(entrypoint = %conn.entrypoint, client = %conn.remote, error = %e, "client connection ended");
        }
        drop(guard);
    }
}

/// Runs a client connection to its end. Draining or reaching `max_connection_age` starts a
/// graceful shutdown (HTTP/2: GOAWAY with the highest stream id, then the final GOAWAY after
/// a round trip; HTTP/1.1: `connection: close` after the request in flight); after an age
/// shutdown, `max_connection_age_grace` bounds how long open streams may take.
pub(crate) async fn drive<C, E>(
    mut connection: Pin<&mut C>,
    drain: &mut DrainWatch,
    lifecycle: &Lifecycle,
    activity: &Activity,
    shutdown: impl FnOnce(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    // Boxed and only when configured: every connection's future carries these timers, and
    // by default there are none.
    let age = lifecycle
        .max_connection_age
        .map(|age| Box::pin(tokio::time::sleep(age)));
    let idle = lifecycle
        .idle_timeout
        .map(|timeout| Box::pin(activity.idle_for(timeout)));
    let aged = tokio::select! {
        result = connection.as_mut() => return result,
        _ = drain.signaled() => false,
        _ = when_set(age) => true,
        _ = when_set(idle) => false,
    };
    shutdown(connection.as_mut());
    match lifecycle.max_connection_age_grace {
        Some(grace) if aged => Box::pin(tokio::time::timeout(grace, connection))
            .await
            // Out of grace: dropping the connection resets what is left.
            .unwrap_or(Ok(())),
        _ => connection.await,
    }
}

/// Resolves with `future`, or never when there is none.
async fn when_set<F: Future>(future: Option<F>) -> F::Output {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// The per-connection service: hands requests to the handler, and on plaintext connections
/// takes over HTTP/1.1 requests that ask for `Upgrade: h2c`.
pub(crate) fn service<H: Handler>(
    handler: H,
    conn: Arc<ConnInfo>,
    activity: Arc<Activity>,
    drain: DrainWatch,
    enforcer: Arc<Enforcer>,
    served: Arc<AtomicUsize>,
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
        served.fetch_add(1, Ordering::Relaxed);
        let upgrade = if conn.tls.is_none() {
            h2c_upgrade::take(&mut request, &handler, &conn, &drain, &enforcer)
        } else {
            None
        };
        let activity = activity.clone();
        let enforcer = enforcer.clone();
        async move {
            if let Some(switching) = upgrade {
                return Ok(switching);
            }
            handle(handler, request, conn, enforcer, activity).await
        }
    })
}

/// A request through its entrypoint's checks, then to the handler. It counts as open on its
/// connection (for the idle timeout) until its response stream ends.
pub(crate) async fn handle<H: Handler>(
    handler: H,
    request: Request<Incoming>,
    conn: Arc<ConnInfo>,
    enforcer: Arc<Enforcer>,
    activity: Arc<Activity>,
) -> Result<Response<Body>, Infallible> {
    let busy = activity.begin();
    let response = match admit(request.map(strait_core::boxed), &conn, &enforcer).await {
        Ok(admitted) => {
            let response = handler.handle(admitted.request, &conn).await;
            admitted.check.finish(response, &conn, &enforcer)
        }
        Err(refused) => refused,
    };
    Ok(Activity::until_end(busy, response))
}

/// Requests open on one client connection, for the idle timeout: a connection is idle when
/// none is open, from the end of the last response stream.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Tracking costs a body wrapper per request; only an idle timeout needs it.
    enabled: bool,
    open: AtomicUsize,
    /// Bumped by every request, so an idle period that saw a request come and go is not
    /// mistaken for an unbroken one.
    started: AtomicUsize,
    quiet: Notify,
}

/// One open request; the connection counts as busy until it is dropped.
struct Busy(Arc<Activity>);

impl Activity {
    /// Tracks requests only when `lifecycle` has an idle timeout.
    pub(crate) fn new(lifecycle: &Lifecycle) -> Arc<Activity> {
        Arc::new(Activity {
            enabled: lifecycle.idle_timeout.is_some(),
            ..Activity::default()
        })
    }

    /// Counts a request open from now until [`Activity::until_end`] sees its response
    /// stream end. Two calls rather than one taking the response future: an async fn that
    /// awaits a future it was given stores that future twice, and this one is every request's.
    /// `handle` makes both.
    fn begin(self: &Arc<Self>) -> Option<Busy> {
        if !self.enabled {
            return None;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        Some(Busy(self.clone()))
    }

    /// Keeps the request counted open until `response`'s stream ends.
    fn until_end(busy: Option<Busy>, response: Response<Body>) -> Response<Body> {
        match busy {
            None => response,
            Some(busy) => ObservedBody::observe_response(response, move |_| drop(busy)),
        }
    }

    /// Resolves once no request has been open for `timeout`.
    pub(crate) async fn idle_for(&self, timeout: Duration) {
        loop {
            let quiet = self.quiet.notified();
            if self.open.load(Ordering::Acquire) > 0 {
                quiet.await;
                continue;
            }
            let seen = self.started.load(Ordering::Acquire);
            tokio::time::sleep(timeout).await;
            if self.open.load(Ordering::Acquire) == 0
                && self.started.load(Ordering::Acquire) == seen
            {
                return;
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.quiet.notify_waiters();
        }
    }
}

/// A hyper HTTP/2 server builder with an entrypoint's HTTP/2 settings.
pub(crate) fn h2_server(s: &Http2Settings) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder.max_concurrent_streams(s.max_concurrent_streams.unwrap_or(MAX_CONCURRENT_STREAMS));
    if s.adaptive_window {
        builder.adaptive_window(true);
    } else {
        builder
            .initial_stream_window_size(s.initial_stream_window.unwrap_or(STREAM_WINDOW))
            .initial_connection_window_size(
                s.initial_connection_window.unwrap_or(CONNECTION_WINDOW),
            );
    }
    if let Some(size) = s.max_frame_size {
        builder.max_frame_size(size);
    }
    // The engine decodes past the configured limit, so that admission answers
    // a request over it on its own stream, naming the limit (admit.rs).
    builder.max_header_list_size(strait_config::engine_header_list_size(
        s.max_header_list_size,
    ));
    if let Some(interval) = s.keepalive_interval {
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(interval)
            .keep_alive_timeout(s.keepalive_timeout.unwrap_or(KEEPALIVE_TIMEOUT));
    }
    builder
}
