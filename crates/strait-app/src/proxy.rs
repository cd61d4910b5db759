use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use http::header::HeaderName;
use http::StatusCode;
use http::{Request, Response};
use strait_balance::{
    Active, CallContext, Completion, Ending, Failure, Retries, RouteBreaker, Service, Ticket,
    Verdict,
};
use strait_config::{AbortStatus, AccessLogTarget, Config, Router, UpstreamScheme};
use strait_core::{Body, ErrorKind, ProxyError, Side};
use strait_grpc::Code;
use strait_http::{error_response, normalize, text_response, ConnInfo, Handler};
use strait_route::FaultInjector;
use strait_route::RouteTable;
use strait_telemetry::{
    AccessLog, CountingBody, End, EntrypointStreams, Metrics, ObservedBody, Outcome, Protocol,
    RequestRecord,
};
use strait_tls::UpstreamConnector;
use tokio::time::Instant;
use tracing::{debug, error};

use crate::deadline::{self, Deadline};
use crate::idle::StreamIdle;

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
    /// FNV: looked up on every request, and the names come from the config.
    entrypoints: HashMap<Arc<str>, EntrypointRuntime, fnv::FnvBuildHasher>,
    /// Per router, in config order (a route's `index`).
    routers: Vec<RouterPolicy>,
    access_log: AccessLog,
}

/// A router's resilience at run time: retries, breaker, fallback, faults, traffic class.
#[derive(Debug)]
struct RouterPolicy {
    retries: Retries,
    breaker: Option<Arc<RouteBreaker>>,
    fallback: Option<Fallback>,
    fault: Option<FaultInjector>,
    class: Option<String>,
    stream_idle_timeout: Option<std::time::Duration>,
}

/// A router's fallback, resolved.
#[derive(Debug)]
enum Fallback {
    Grpc(Code, String),
    Http(StatusCode, String),
    /// Index of the service in `services`.
    Service(usize),
}

#[derive(Debug)]
struct EntrypointRuntime {
    index: usize,
    forward_client_cert: Option<HeaderName>,
    streams: EntrypointStreams,
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
                    lifecycle: Default::default(),
                }),
                services: Vec::new(),
                entrypoints: HashMap::default(),
                routers: Vec::new(),
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
    let entrypoint = snapshot.entrypoints.get(&conn.entrypoint);
    let stream = match entrypoint {
        Some(entrypoint) => entrypoint.streams.started(),
        // A listener from before a reload that removed its entrypoint.
        None => metrics.stream_started(&conn.entrypoint),
    };
    let protocol = Protocol::of(request.version(), conn.tls.is_some());
    // The id is settled first: the record takes it from the headers.
    strait_telemetry::request_id(request.headers_mut());
    let mut record = RequestRecord::for_request(conn.entrypoint.clone(), protocol, &request);
    record.client = Some(conn.remote);
    if let Some(tls) = &conn.tls {
        record.alpn = tls.alpn.map(|p| p.as_str());
        record.tls_version = Some(tls.version);
    }
    let request_bytes = Arc::new(AtomicU64::new(0));
    let request = request.map(|body| CountingBody::wrap(body, request_bytes.clone()));

    let grpc = strait_grpc::is_grpc(request.headers());
    let mut pending = None;
    // Built inside the await: a future bound to a local first is stored twice.
    let serving = AssertUnwindSafe(proxy(
        &snapshot,
        entrypoint,
        request,
        grpc,
        &conn,
        &metrics,
        &mut record,
        &mut pending,
    ))
    .catch_unwind()
    .await;
    let response = match serving {
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
        if let Some(pending) = pending {
            pending.finish(&outcome, record.http_status);
        }
        record.set_outcome(&outcome);
        record.request_bytes = request_bytes.load(Ordering::Relaxed);
        record.duration = started.elapsed();
        metrics.record_request(&record);
        snapshot.access_log.log(&record);
        drop(stream);
    })
}

/// What is left to do when the response stream ends: feed its outcome to outlier detection
/// and the router's breaker.
pub(crate) struct Pending {
    completion: Completion,
    breaker: Option<(Arc<RouteBreaker>, Ticket)>,
    /// Counts the request as active on its router (for the retry budget) until it ends.
    _active: Active,
}

#[allow(clippy::too_many_arguments)]
async fn proxy(
    snapshot: &Snapshot,
    entrypoint: Option<&EntrypointRuntime>,
    mut request: Request<Body>,
    grpc: bool,
    conn: &ConnInfo,
    metrics: &Metrics,
    record: &mut RequestRecord,
    pending: &mut Option<Pending>,
) -> Response<Body> {
    let started = Instant::now();
    if strait_http::is_grpc_over_http1(&request) {
        record.error = Some("gRPC over HTTP/1.1".to_owned());
        return strait_http::grpc_needs_http2(conn.tls.is_some());
    }
    let client = conn.tls.as_ref().and_then(|tls| tls.client.as_deref());
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
    let (Some(service), Some(policy)) = (
        snapshot.services.get(route.service),
        snapshot.routers.get(route.index),
    ) else {
        let err = ProxyError::new(
            ErrorKind::NoEndpoint,
            Side::Proxy,
            format!("router `{}` has no service", route.name),
        );
        return fail(&err, grpc, conn, record);
    };
    record.service = Some(service.name().clone());

    if let Some(fault) = &policy.fault {
        let injected = fault.decide(request.headers());
        if let Some(delay) = injected.delay {
            metrics.fault_injected(&route.name, "delay");
            tokio::time::sleep(delay).await;
        }
        if let Some(status) = injected.abort {
            metrics.fault_injected(&route.name, "abort");
            record.error = Some("fault injected: abort".to_owned());
            return fault_response(status, grpc);
        }
    }

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
    let (idle, request) = match policy.stream_idle_timeout {
        Some(timeout) => {
            let (idle, request) = StreamIdle::start(timeout, &route.name, request);
            (Some(idle), request)
        }
        None => (None, request),
    };

    let call = Call {
        snapshot,
        policy,
        router: &route.name,
        deadline,
        idle,
        grpc,
        conn,
        metrics,
    };
    let ticket = match &policy.breaker {
        None => None,
        Some(breaker) => match breaker.admit() {
            Some(ticket) => Some((breaker.clone(), ticket)),
            None => {
                metrics.rejected(service.name(), "circuit_open");
                let err = ProxyError::new(
                    ErrorKind::Overloaded,
                    Side::Proxy,
                    format!(
                        "the circuit breaker of router `{}` is open; try later",
                        route.name
                    ),
                );
                // Boxed, as in `Call::send`: a fallback may call another service, and an
                // inline future would double what every request's future weighs.
                return Box::pin(call.fallback_or_fail(
                    request,
                    err,
                    "circuit_open",
                    record,
                    pending,
                ))
                .await;
            }
        },
    };
    call.send(service, request, ticket, record, pending).await
}

/// One request's way through its router's service (or the fallback service).
struct Call<'a> {
    snapshot: &'a Snapshot,
    policy: &'a RouterPolicy,
    router: &'a Arc<str>,
    deadline: Option<Deadline>,
    idle: Option<StreamIdle>,
    grpc: bool,
    conn: &'a ConnInfo,
    metrics: &'a Metrics,
}

impl Call<'_> {
    async fn send(
        &self,
        service: &Arc<Service>,
        request: Request<Body>,
        ticket: Option<(Arc<RouteBreaker>, Ticket)>,
        record: &mut RequestRecord,
        pending: &mut Option<Pending>,
    ) -> Response<Body> {
        let cx = CallContext {
            router: self.router,
            retries: &self.policy.retries,
            class: self.policy.class.as_deref(),
            deadline: self.deadline.map(|d| d.at()),
            grpc: self.grpc,
            hash_key: service.hash_key(request.headers(), self.conn.remote.ip()),
        };
        let active = self.policy.retries.start();
        let sent_at = Instant::now();
        let result = match &self.idle {
            None => service.call(request, cx).await,
            // Boxed: only routers with the timeout carry this future.
            Some(idle) => {
                let call = service.call(request, cx);
                match Box::pin(async {
                    tokio::select! {
                        result = call => Some(result),
                        () = idle.expired(self.metrics) => None,
                    }
                })
                .await
                {
                    Some(result) => result,
                    None => return fail(&idle.error(), self.grpc, self.conn, record),
                }
            }
        };
        match result {
            Ok((mut response, completion)) => {
                let upstream = sent_at.elapsed();
                record.endpoint = Some(completion.endpoint().clone());
                record.retries = completion.tries() - 1;
                record.upstream_duration = Some(upstream);
                self.metrics.upstream_response_headers(
                    service.name(),
                    completion.endpoint(),
                    upstream,
                );
                normalize::from_upstream(&mut response);
                *pending = Some(Pending {
                    completion,
                    breaker: ticket,
                    _active: active,
                });
                let response = match self.deadline {
                    Some(deadline) => deadline::bound(response, deadline, self.grpc),
                    None => response,
                };
                match &self.idle {
                    Some(idle) => idle.clone().bound(response, self.grpc, self.metrics),
                    None => response,
                }
            }
            Err(Failure::Rejected {
                request,
                error,
                reason,
            }) => {
                if let Some((breaker, ticket)) = ticket {
                    breaker.record(ticket, Verdict::Neutral);
                }
                Box::pin(self.fallback_or_fail(*request, error, reason, record, pending)).await
            }
            Err(Failure::Failed { error, tries }) => {
                record.retries = tries.saturating_sub(1);
                if let Some((breaker, ticket)) = ticket {
                    breaker.record(ticket, strait_balance::of_error(&error));
                }
                let error = if error.kind() == ErrorKind::DeadlineExceeded {
                    deadline::exceeded(self.router)
                } else {
                    error
                };
                fail(&error, self.grpc, self.conn, record)
            }
        }
    }

    /// strait turned the request away (`reason`): the router's fallback answers, or the
    /// error does.
    async fn fallback_or_fail(
        &self,
        request: Request<Body>,
        error: ProxyError,
        reason: &'static str,
        record: &mut RequestRecord,
        pending: &mut Option<Pending>,
    ) -> Response<Body> {
        // A fallback service that itself turns requests away answers with its error.
        let fallback = match (&self.policy.fallback, &record.service) {
            (Some(Fallback::Service(index)), Some(current))
                if self.snapshot.services.get(*index).map(|s| s.name()) == Some(current) =>
            {
                None
            }
            (fallback, _) => fallback.as_ref(),
        };
        let Some(fallback) = fallback else {
            return fail(&error, self.grpc, self.conn, record);
        };
        self.metrics.fallback(self.router, reason);
        debug!(router = %self.router, error = %error, "answered by the fallback ({reason})");
        match fallback {
            Fallback::Grpc(code, message) => {
                record.error = Some(format!("{error} (fallback answered)"));
                if self.grpc {
                    strait_grpc::trailers_only(*code, message)
                } else {
                    text_response(StatusCode::SERVICE_UNAVAILABLE, message)
                }
            }
            Fallback::Http(status, body) => {
                record.error = Some(format!("{error} (fallback answered)"));
                if self.grpc {
                    strait_grpc::trailers_only(strait_grpc::code_for_http_status(*status), body)
                } else {
                    text_response(*status, body)
                }
            }
            Fallback::Service(index) => {
                let Some(service) = self.snapshot.services.get(*index) else {
                    return fail(&error, self.grpc, self.conn, record);
                };
                record.service = Some(service.name().clone());
                self.send(service, request, None, record, pending).await
            }
        }
    }
}

/// The answer to an injected abort.
fn fault_response(status: AbortStatus, grpc: bool) -> Response<Body> {
    match status {
        AbortStatus::Grpc(code) if grpc => strait_grpc::trailers_only(code, "fault injected"),
        AbortStatus::Grpc(_) => text_response(StatusCode::SERVICE_UNAVAILABLE, "fault injected"),
        AbortStatus::Http(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            if grpc {
                strait_grpc::trailers_only(
                    strait_grpc::code_for_http_status(status),
                    "fault injected",
                )
            } else {
                text_response(status, "fault injected")
            }
        }
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
                let name = Arc::from(name.as_str());
                let streams = metrics.entrypoint_streams(&name);
                (
                    name,
                    EntrypointRuntime {
                        index,
                        forward_client_cert,
                        streams,
                    },
                )
            })
            .collect();
        let routers = config
            .routers
            .iter()
            .map(|(name, router)| RouterPolicy::new(name, router, config, metrics))
            .collect();
        Ok(Snapshot {
            routes: RouteTable::new(config),
            services,
            entrypoints,
            routers,
            access_log,
        })
    }
}

// === impl Pending ===

impl Pending {
    /// The response stream ended with `outcome`.
    fn finish(self, outcome: &Outcome, http_status: Option<u16>) {
        let ending = Ending {
            http_status,
            grpc_status: outcome.grpc_status,
            broken: outcome.end == End::Error,
            abandoned: outcome.end == End::Dropped,
        };
        self.completion.finish(&ending);
        if let Some((breaker, ticket)) = self.breaker {
            let verdict = strait_balance::of_ending(&ending, breaker.failing_statuses());
            breaker.record(ticket, verdict);
        }
    }
}

// === impl RouterPolicy ===

impl RouterPolicy {
    fn new(name: &str, router: &Router, config: &Config, metrics: &Metrics) -> RouterPolicy {
        let name: Arc<str> = Arc::from(name);
        let fallback = router.fallback.as_ref().and_then(|f| match f {
            strait_config::Fallback::Grpc { status, message } => {
                Some(Fallback::Grpc(*status, message.clone()))
            }
            strait_config::Fallback::Http { status, body } => Some(Fallback::Http(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                body.clone(),
            )),
            strait_config::Fallback::Service(service) => {
                config.services.get_index_of(service).map(Fallback::Service)
            }
        });
        RouterPolicy {
            retries: Retries::new(router.retry.as_ref()),
            breaker: router
                .circuit_breaker
                .as_ref()
                .map(|b| Arc::new(RouteBreaker::new(name.clone(), b, metrics))),
            fallback,
            fault: router.fault.as_ref().map(FaultInjector::new),
            class: router.traffic_class.clone(),
            stream_idle_timeout: router.stream_idle_timeout,
        }
    }
}
