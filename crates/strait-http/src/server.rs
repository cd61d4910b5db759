use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use strait_core::{Body, DrainWatch};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::{h2c_upgrade, ConnInfo, Handler};

/// Flow-control windows we advertise to clients; see strait-upstream for the reasoning.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;
/// Streams a client may open at once on one connection (hyper's default is 200; gRPC clients
/// multiplex whole workloads over one connection).
const MAX_CONCURRENT_STREAMS: u32 = 1000;

/// Accepts connections on `listener` until `drain` fires, serving each with `handler`.
/// Connections already open are told to finish gracefully when draining starts.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    entrypoint: Arc<str>,
    entrypoint_index: usize,
    handler: H,
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
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(ConnInfo {
            entrypoint: entrypoint.clone(),
            entrypoint_index,
            remote,
            local,
        });
        tokio::spawn(serve_connection(
            stream,
            conn,
            handler.clone(),
            drain.clone(),
        ));
    }
}

async fn serve_connection<H: Handler>(
    stream: TcpStream,
    conn: Arc<ConnInfo>,
    handler: H,
    mut drain: DrainWatch,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    let service = service(handler, conn.clone(), drain.clone());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
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

/// The per-connection service: hands requests to the handler, and takes over HTTP/1.1
/// requests that ask for `Upgrade: h2c`.
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
        let upgrade = h2c_upgrade::take(&mut request, &handler, &conn, &drain);
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
