use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use http::header::HeaderName;
use http::{Request, Response};
use strait_balance::Service;
use strait_config::{AccessLogTarget, Config, UpstreamScheme};
use strait_core::{Body, ErrorKind, ProxyError, Side};
use strait_http::{error_response, normalize, ConnInfo, Handler};
use strait_route::RouteTable;
use strait_telemetry::{
    AccessLog, CountingBody, Metrics, ObservedBody, Protocol, RequestRecord, X_REQUEST_ID,
};
use strait_tls::UpstreamConnector;
use tokio::time::Instant;
use tracing::{debug, error};

use crate::deadline::{self, Deadline};

/// The request handler: route, balance, send upstream, stream the answer back, and record
/// how it ended.
#[derive(Clone, Debug)]
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    /// The access log of the live config and where it writes, reused by a reload that keeps
    /// the same target.
    access_log: Arc<Mutex<(Option<AccessLogTarget>, AccessLog)>>,
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
    access_log: AccessLog,
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
    pub(crate) fn empty(metrics: Metrics) -> Proxy {
        Proxy {
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot {
                routes: RouteTable::new(&Config {
                    admin: None,
                    entrypoints: Default::default(),
                    routers: Default::default(),
                    services: Default::default(),
                    access_log: None,
                    drain_timeout: std::time::Duration::ZERO,
                }),
                services: Vec::new(),
                entrypoints: HashMap::new(),
                access_log: AccessLog::disabled(),
            })),
            metrics,
            access_log: Arc::new(Mutex::new((None, AccessLog::disabled()))),
        }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Builds the snapshot for `config` without installing it.
    pub(crate) fn prepare(&self, config: &Config) -> Result<Arc<Snapshot>, crate::StartError> {
        let access_log = self.access_log_for(config.access_log.as_ref())?;
        Ok(Arc::new(Snapshot::new(config, access_log, &self.metrics)?))
    }

    /// The access log writing to `target`: the current one if the target is unchanged.
    fn access_log_for(
        &self,
        target: Option<&AccessLogTarget>,
    ) -> Result<AccessLog, crate::StartError> {
        let mut current = self
            .access_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if current.0.as_ref() == target {
            return Ok(current.1.clone());
        }
        let log = match target {
            None => Ok(AccessLog::disabled()),
            Some(AccessLogTarget::Stdout) => AccessLog::stdout(&self.metrics),
            Some(AccessLogTarget::File(path)) => AccessLog::file(path, &self.metrics),
        }
        .map_err(|source| crate::StartError::AccessLog { source })?;
        *current = (target.cloned(), log.clone());
        Ok(log)
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
        let metrics = self.metrics.clone();
        async move { observed(snapshot, request, conn, metrics).await }
    }
}

/// Proxies one request and, when its response stream ends however it ends, feeds the
/// outcome (grpc-status from real trailers or trailers-only headers) to the metrics and the
/// access log.
async fn observed(
    snapshot: Arc<Snapshot>,
    mut request: Request<Body>,
    conn: Arc<ConnInfo>,
    metrics: Metrics,
) -> Response<Body> {
    let started = Instant::now();
    let stream = metrics.stream_started(&conn.entrypoint);
    let protocol = Protocol::of(request.version(), conn.tls.is_some());
    let mut record = RequestRecord::for_request(conn.entrypoint.clone(), protocol, &request);
    record.client = Some(conn.remote);
    if let Some(tls) = &conn.tls {
        record.alpn = tls.alpn.map(|p| p.as_str());
        record.tls_version = Some(tls.version);
    }
    let (id, generated) = strait_telemetry::request_id(request.headers());
    if generated {
        request.headers_mut().insert(X_REQUEST_ID, id.clone());
    }
    record.request_id = Some(id);
    let request_bytes = Arc::new(AtomicU64::new(0));
    let request = request.map(|body| CountingBody::wrap(body, request_bytes.clone()));

    let grpc = strait_grpc::is_grpc(request.headers());
    let serving = AssertUnwindSafe(proxy(
        &snapshot,
        request,
        grpc,
        &conn,
        &metrics,
        &mut record,
    ));
    let response = match serving.catch_unwind().await {
        Ok(response) => response,
        // A bug must cost one request, not the process or the connection's other streams.
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            metrics.panicked(record.router.as_ref());
            error!(
                entrypoint = %conn.entrypoint,
                router = record.router.as_deref().unwrap_or("-"),
                "panic while serving a request: {what}; answered INTERNAL / 500"
            );
            let err = ProxyError::new(ErrorKind::Internal, Side::Proxy, "internal error in strait");
            record.error = Some(format!("panic: {what}"));
            error_response(&err, grpc)
        }
    };
    record.http_status = Some(response.status().as_u16());
    ObservedBody::observe_response(response, move |outcome| {
        record.set_outcome(&outcome);
        record.request_bytes = request_bytes.load(Ordering::Relaxed);
        record.duration = started.elapsed();
        metrics.record_request(&record);
        snapshot.access_log.log(&record);
        drop(stream);
    })
}

async fn proxy(
    snapshot: &Snapshot,
    mut request: Request<Body>,
    grpc: bool,
    conn: &ConnInfo,
    metrics: &Metrics,
    record: &mut RequestRecord,
) -> Response<Body> {
    let started = Instant::now();
    if strait_http::is_grpc_over_http1(&request) {
        record.error = Some("gRPC over HTTP/1.1".to_owned());
        return strait_http::grpc_needs_http2(conn.tls.is_some());
    }
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
        return fail(&err, grpc, conn, record);
    };
    record.router = Some(route.name.clone());
    #[cfg(feature = "fault-hooks")]
    if request.headers().contains_key("x-strait-fault-panic") {
        panic!("fault hook: x-strait-fault-panic");
    }
    let Some(service) = snapshot.services.get(route.service) else {
        let err = ProxyError::new(
            ErrorKind::NoEndpoint,
            Side::Proxy,
            format!("router `{}` has no service", route.name),
        );
        return fail(&err, grpc, conn, record);
    };
    record.service = Some(service.name().clone());
    let Some(endpoint) = service.pick() else {
        let err = ProxyError::new(
            ErrorKind::NoEndpoint,
            Side::Proxy,
            format!("service `{}` has no endpoint", service.name()),
        );
        return fail(&err, grpc, conn, record);
    };
    record.endpoint = Some(endpoint.label().clone());

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

    let sent_at = Instant::now();
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
            let upstream = sent_at.elapsed();
            record.upstream_duration = Some(upstream);
            metrics.upstream_response_headers(service.name(), endpoint.label(), upstream);
            normalize::from_upstream(&mut response);
            match deadline {
                Some(deadline) => deadline::bound(response, deadline, grpc),
                None => response,
            }
        }
        Err(err) => fail(&err, grpc, conn, record),
    }
}

fn fail(
    err: &ProxyError,
    grpc: bool,
    conn: &ConnInfo,
    record: &mut RequestRecord,
) -> Response<Body> {
    record.error = Some(err.to_string());
    debug!(
        entrypoint = %conn.entrypoint,
        router = record.router.as_deref().unwrap_or("-"),
        client = %conn.remote,
        error = %err,
        "request failed"
    );
    error_response(err, grpc)
}

// === impl Snapshot ===

impl Snapshot {
    fn new(
        config: &Config,
        access_log: AccessLog,
        metrics: &Metrics,
    ) -> Result<Snapshot, crate::StartError> {
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
            services.push(Arc::new(Service::new(name, service, tls.as_ref(), metrics)));
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
            access_log,
        })
    }
}
