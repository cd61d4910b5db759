//! Serving a client over HTTP/1.1; on plaintext entrypoints a request may switch the
//! connection to h2c with `Upgrade: h2c`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use strait_core::{Body, DrainWatch};
use tracing::debug;

use crate::connection::{drive, handle, Activity};
use crate::h2c_upgrade;
use crate::limits::{Enforcer, Limit};
use crate::{ConnInfo, Handler};

/// Serves an HTTP/1.1 connection (plaintext connections may switch to h2c with
/// `Upgrade: h2c`; the service takes those over).
/// `guard` is held while the connection is served (the open-connections gauge).
pub(crate) async fn serve_h1<H, I>(
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
