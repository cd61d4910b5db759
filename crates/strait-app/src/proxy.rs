use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Request, Response};
use strait_balance::Service;
use strait_config::Config;
use strait_core::{Body, ErrorKind, ProxyError, Side};
use strait_http::{error_response, normalize, ConnInfo, Handler};
use strait_route::RouteTable;
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
}

// === impl Proxy ===

impl Proxy {
    pub fn new(config: &Config) -> Proxy {
        Proxy {
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::new(config))),
        }
    }

    /// The live services (for tests and the admin API).
    pub fn services(&self) -> Vec<Arc<Service>> {
        self.snapshot.load().services.clone()
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
    let grpc = strait_grpc::is_grpc(request.headers());
    let Some(route) = snapshot.routes.route(conn.entrypoint_index, &request) else {
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
    fn new(config: &Config) -> Snapshot {
        Snapshot {
            routes: RouteTable::new(config),
            services: config
                .services
                .iter()
                .map(|(name, service)| Arc::new(Service::new(name, service)))
                .collect(),
        }
    }
}
