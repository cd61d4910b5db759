use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::HeaderName;
use http::{Request, Response};
use strait_balance::Service;
use strait_config::{Config, UpstreamScheme};
use strait_core::{Body, ErrorKind, ProxyError, Side};
use strait_http::{error_response, normalize, ConnInfo, Handler};
use strait_route::RouteTable;
use strait_tls::UpstreamConnector;
use tokio::time::Instant;
use tracing::debug;

use crate::deadline::{self, Deadline};

/// The request handler: route, balance, send upstream, stream the answer back.
#[derive(Clone, Debug)]
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
}

/// Everything a request needs from one config, built once at load. A request holds the
/// snapshot it started with until it ends, so a swap never changes a request midway.
#[derive(Debug)]
pub(crate) struct Snapshot {
    routes: RouteTable,
    services: Vec<Arc<Service>>,
    /// Per entrypoint name: its index in the route table and the header that carries the
    /// client certificate identity.
    entrypoints: HashMap<Arc<str>, EntrypointRuntime>,
}

#[derive(Debug)]
struct EntrypointRuntime {
    index: usize,
    forward_client_cert: Option<HeaderName>,
}

// === impl Proxy ===

impl Proxy {
    /// The live services (for tests and the admin API).
    pub fn services(&self) -> Vec<Arc<Service>> {
        self.snapshot.load().services.clone()
    }

    /// A proxy with no routes; `install` gives it some.
    pub(crate) fn empty() -> Proxy {
        Proxy {
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot {
                routes: RouteTable::new(&Config {
                    admin: None,
                    entrypoints: Default::default(),
                    routers: Default::default(),
                    services: Default::default(),
                }),
                services: Vec::new(),
                entrypoints: HashMap::new(),
            })),
        }
    }

    /// Builds the snapshot for `config` without installing it.
    pub(crate) fn prepare(config: &Config) -> Result<Arc<Snapshot>, crate::StartError> {
        Ok(Arc::new(Snapshot::new(config)?))
    }

    /// New requests use `snapshot` from now on; requests in flight keep theirs.
    pub(crate) fn install(&self, snapshot: Arc<Snapshot>) {
        self.snapshot.store(snapshot);
    }
}

impl Handler for Proxy {
    fn handle(
        &self,
        request: Request<Body>,
        conn: &Arc<ConnInfo>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let snapshot = self.snapshot.load_full();
        let conn = conn.clone();
        async move { proxy(&snapshot, request, &conn).await }
    }
}

async fn proxy(snapshot: &Snapshot, mut request: Request<Body>, conn: &ConnInfo) -> Response<Body> {
    let started = Instant::now();
    if strait_http::is_grpc_over_http1(&request) {
        return strait_http::grpc_needs_http2(conn.tls.is_some());
    }
    let grpc = strait_grpc::is_grpc(request.headers());
    let client = conn.tls.as_ref().and_then(|tls| tls.client.as_deref());
    let entrypoint = snapshot.entrypoints.get(&conn.entrypoint);
    let route = entrypoint.and_then(|e| snapshot.routes.route(e.index, &request, client));
    let Some(route) = route else {
        let err = ProxyError::new(
            ErrorKind::NoRoute,
            Side::Proxy,
            format!(
                "no router on entrypoint `{}` matches {} {}",
                conn.entrypoint,
                request.method(),
                request.uri().path()
            ),
        );
        return fail(&err, grpc, conn, None);
    };
    let Some(service) = snapshot.services.get(route.service) else {
        let err = ProxyError::new(
            ErrorKind::NoEndpoint,
            Side::Proxy,
            format!("router `{}` has no service", route.name),
        );
        return fail(&err, grpc, conn, Some(&route.name));
    };
    let Some(endpoint) = service.pick() else {
        let err = ProxyError::new(
            ErrorKind::NoEndpoint,
            Side::Proxy,
            format!("service `{}` has no endpoint", service.name()),
        );
        return fail(&err, grpc, conn, Some(&route.name));
    };

    let deadline = Deadline::for_request(&request, route.timeout, started);
    normalize::to_upstream(&mut request, conn);
    if let Some(header) = entrypoint.and_then(|e| e.forward_client_cert.as_ref()) {
        // Whatever the client sent under this name is not to be trusted.
        request.headers_mut().remove(header);
        if let Some(value) = client.and_then(|c| c.header_value()) {
            request.headers_mut().insert(header.clone(), value);
        }
    }
    if let (Some(deadline), true) = (&deadline, grpc) {
        deadline.propagate(request.headers_mut());
    }

    let sent = endpoint.send(request);
    let result = match &deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline.at(), sent).await {
            Ok(result) => result,
            Err(_) => Err(deadline::exceeded(&route.name)),
        },
        None => sent.await,
    };
    match result {
        Ok(mut response) => {
            normalize::from_upstream(&mut response);
            match deadline {
                Some(deadline) => deadline::bound(response, deadline, grpc),
                None => response,
            }
        }
        Err(err) => fail(&err, grpc, conn, Some(&route.name)),
    }
}

fn fail(err: &ProxyError, grpc: bool, conn: &ConnInfo, router: Option<&str>) -> Response<Body> {
    debug!(
        entrypoint = %conn.entrypoint,
        router = router.unwrap_or("-"),
        client = %conn.remote,
        error = %err,
        "request failed"
    );
    error_response(err, grpc)
}

// === impl Snapshot ===

impl Snapshot {
    fn new(config: &Config) -> Result<Snapshot, crate::StartError> {
        let mut services = Vec::with_capacity(config.services.len());
        for (name, service) in &config.services {
            let https = service
                .servers
                .iter()
                .any(|s| s.url.scheme == UpstreamScheme::Https);
            let tls = if https {
                Some(
                    UpstreamConnector::new(name, service.tls.as_ref()).map_err(|source| {
                        crate::StartError::Tls {
                            what: format!("service `{name}`"),
                            source,
                        }
                    })?,
                )
            } else {
                None
            };
            services.push(Arc::new(Service::new(name, service, tls.as_ref())));
        }
        let entrypoints = config
            .entrypoints
            .iter()
            .enumerate()
            .map(|(index, (name, e))| {
                let forward_client_cert = e
                    .tls
                    .as_ref()
                    .and_then(|tls| tls.client_auth.as_ref())
                    .and_then(|auth| auth.forward_header.clone());
                (
                    Arc::from(name.as_str()),
                    EntrypointRuntime {
                        index,
                        forward_client_cert,
                    },
                )
            })
            .collect();
        Ok(Snapshot {
            routes: RouteTable::new(config),
            services,
            entrypoints,
        })
    }
}
