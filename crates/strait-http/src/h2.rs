//! Serving a client over HTTP/2: TLS with ALPN h2, h2c with prior knowledge, or h2c after an
//! `Upgrade: h2c`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use strait_config::Http2Settings;
use strait_core::DrainWatch;
use tokio::time::Instant;
use tracing::debug;

use crate::connection::{drive, handle, Activity};
use crate::frame_guard::FrameGuard;
use crate::limits::Enforcer;
use crate::{ConnInfo, Handler};

/// Flow-control windows we advertise to clients; see strait-upstream for the reasoning.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;
/// Streams a client may open at once on one connection (hyper's default is 200; gRPC clients
/// multiplex whole workloads over one connection).
const MAX_CONCURRENT_STREAMS: u32 = 1000;
/// How long a keepalive PING may go unanswered, unless configured.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

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
