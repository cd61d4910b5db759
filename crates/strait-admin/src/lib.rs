//! The admin listener: `/healthz` (the process is up) and `/readyz` (it accepts traffic).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use strait_core::{Body, DrainWatch};
use tokio::net::TcpListener;
use tracing::debug;

/// Shared state the admin endpoints report on.
#[derive(Clone, Debug, Default)]
pub struct AdminState {
    ready: Arc<AtomicBool>,
}

// === impl AdminState ===

impl AdminState {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Serves the admin API on `listener` until `drain` fires.
pub async fn serve(listener: TcpListener, state: AdminState, mut drain: DrainWatch) {
    loop {
        let (stream, _) = tokio::select! {
            _ = drain.signaled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    debug!(error = %e, "admin accept failed");
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&request, &state);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(error = %e, "admin connection ended");
            }
        });
    }
}

fn respond(request: &Request<Incoming>, state: &AdminState) -> Response<Body> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") if state.is_ready() => {
            (StatusCode::OK, "ready\n")
        }
        (&Method::GET | &Method::HEAD, "/readyz") => {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
        }
        (_, "/healthz" | "/readyz") => (StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
        _ => (
            StatusCode::NOT_FOUND,
            "not found: try /healthz or /readyz\n",
        ),
    };
    let mut response = Response::new(strait_core::full(body));
    *response.status_mut() = status;
    response
}
