//! The admin listener: `/healthz` (the process is up), `/readyz` (it accepts traffic),
//! `/metrics`, and the `/api/*` endpoints, optionally behind a bearer token.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use strait_core::{Body, DrainWatch};
use tokio::net::TcpListener;
use tracing::debug;

/// What the admin endpoints report on and act on; implemented by `strait-app`.
pub trait AdminApi: Send + Sync + 'static {
    /// `/api/config`: the live config, its generation and source, secrets left out.
    fn config(&self) -> serde_json::Value;
    /// `/api/routers`.
    fn routers(&self) -> serde_json::Value;
    /// `/api/services`: endpoints and their connection state.
    fn services(&self) -> serde_json::Value;
    /// `/metrics`, OpenMetrics text.
    fn metrics(&self) -> String;
    /// `POST /api/reload`: reload the config file; the new generation, or why not.
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send>>;
}

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

/// Serves the admin API on `listener` until `stop` fires; `strait-app` fires it once the
/// shutdown drain has ended, so probes see `/readyz` 503 (not a refused connection) the whole
/// time. With `token`, everything but `/healthz` and `/readyz` (which probes must reach
/// without secrets) needs `Authorization: Bearer <token>`.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    api: Arc<dyn AdminApi>,
    token: Option<Arc<str>>,
    mut stop: DrainWatch,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.signaled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    debug!(error = %e, "admin accept failed");
                    continue;
                }
            },
        };
        let (state, api, token) = (state.clone(), api.clone(), token.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (state, api, token) = (state.clone(), api.clone(), token.clone());
                async move {
                    Ok::<_, Infallible>(respond(request, &state, &*api, token.as_deref()).await)
                }
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

async fn respond(
    request: Request<Incoming>,
    state: &AdminState,
    api: &dyn AdminApi,
    token: Option<&str>,
) -> Response<Body> {
    let path = request.uri().path();
    let method = request.method();
    let probe = matches!(path, "/healthz" | "/readyz");
    if !probe && !authorized(&request, token) {
        let mut response = text(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required: send `Authorization: Bearer <token>`\n",
        );
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let read = method == Method::GET || method == Method::HEAD;
    match (path, read) {
        ("/healthz", true) => text(StatusCode::OK, "ok\n"),
        ("/readyz", true) if state.is_ready() => text(StatusCode::OK, "ready\n"),
        ("/readyz", true) => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        ("/metrics", true) => {
            let mut response = text(StatusCode::OK, api.metrics());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            response
        }
        ("/api/config", true) => json(StatusCode::OK, &api.config()),
        ("/api/routers", true) => json(StatusCode::OK, &api.routers()),
        ("/api/services", true) => json(StatusCode::OK, &api.services()),
        ("/api/reload", _) if method == Method::POST => match api.reload().await {
            Ok(generation) => json(StatusCode::OK, &serde_json::json!({ "generation": generation })),
            Err(error) => json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": error })),
        },
        ("/api/reload", _) => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        ("/healthz" | "/readyz" | "/metrics" | "/api/config" | "/api/routers" | "/api/services", false) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz, /metrics, /api/config, /api/routers, /api/services, POST /api/reload\n",
        ),
    }
}

fn authorized(request: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(given) = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    // Compare every byte so the time taken does not tell how much of the token matched.
    given.len() == token.len()
        && given
            .iter()
            .zip(token.as_bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(strait_core::full(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = value.to_string();
    body.push('\n');
    let mut response = text(status, body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
