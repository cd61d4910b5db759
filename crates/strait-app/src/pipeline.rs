//! A request's path, as a list of named phases over one per-request context:
//!
//! accept → route → filters → admit → call → respond → log
//!
//! Each phase is a method here that hands its work to the crate that owns it: routing and
//! filters to strait-route, admission and the call to strait-balance (over
//! strait-upstream), the shape of every answer strait makes itself to strait-http, the
//! record of how it ended to strait-telemetry. A phase that ends the request early returns
//! a [`Reply`]; [`Pipeline::respond`] alone turns it into a response.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::FutureExt;
use http::{Request, Response};
use strait_balance::{
    Active, CallContext, Completion, Deadline, Ending, Failure, RouteBreaker, Service, StreamIdle,
    Ticket, Verdict,
};
use strait_core::{Body, ErrorKind, ProxyError, RequestHead, Side};
use strait_http::{normalize, ConnInfo, Reply, ReplyFormat};
use strait_route::{Fallback, FilterContext, Flow, Route};
use strait_telemetry::{
    CountingBody, End, Metrics, ObservedBody, Outcome, Protocol, RequestRecord, StreamGuard,
};
use tokio::time::Instant;
use tracing::{debug, error};

use crate::snapshot::{EntrypointRuntime, Snapshot};

/// What a request accumulates on its way, from accept to log.
pub(crate) struct RequestCtx {
    started: Instant,
    /// The form strait's own answers take for this client.
    format: ReplyFormat,
    /// What the access log and the metrics get when the response stream ends.
    record: RequestRecord,
    /// Request body bytes received so far.
    request_bytes: Arc<AtomicU64>,
    /// Fed the outcome when the response stream ends.
    pending: Option<Pending>,
    /// Counts the request active on its entrypoint until the response stream ends.
    _stream: StreamGuard,
}

/// What is left to do when the response stream ends: feed its outcome to outlier detection
/// and the router's breaker.
struct Pending {
    completion: Completion,
    breaker: Option<(Arc<RouteBreaker>, Ticket)>,
    /// Counts the request as active on its router (for the retry budget) until it ends.
    _active: Active,
}

/// What the phases of one request read: the snapshot it started with, its connection, and
/// the metrics.
struct Pipeline<'a> {
    snapshot: &'a Snapshot,
    entrypoint: Option<&'a EntrypointRuntime>,
    conn: &'a ConnInfo,
    metrics: &'a Metrics,
}

/// A request on its way to the service: the upstream request and what bounds its time.
struct Call<'a> {
    route: &'a Route,
    deadline: Option<Deadline>,
    idle: Option<StreamIdle>,
}

/// Serves one request through every phase. When its response stream ends however it ends,
/// the outcome (grpc-status from real trailers or trailers-only headers) feeds the metrics,
/// the access log, outlier detection and the breaker.
pub(crate) async fn serve(
    snapshot: Arc<Snapshot>,
    request: Request<Body>,
    conn: Arc<ConnInfo>,
    metrics: Metrics,
) -> Response<Body> {
    let pipeline = Pipeline {
        snapshot: &snapshot,
        entrypoint: snapshot.entrypoints.get(&conn.entrypoint),
        conn: &conn,
        metrics: &metrics,
    };
    let (mut ctx, head, body) = pipeline.accept(request);
    // Built inside the await: a future bound to a local first is stored twice.
    let response = match AssertUnwindSafe(pipeline.phases(&mut ctx, head, body))
        .catch_unwind()
        .await
    {
        Ok(Ok(response)) => response,
        Ok(Err(reply)) => pipeline.respond(&mut ctx, reply),
        // A bug must cost one request, not the process or the connection's other streams.
        Err(panic) => pipeline.panicked(&mut ctx, panic.as_ref()),
    };
    log(ctx, response, snapshot, metrics)
}

// === impl Pipeline ===

impl Pipeline<'_> {
    /// accept: the request's id and record, counted on its entrypoint, its body counted.
    fn accept(&self, mut request: Request<Body>) -> (RequestCtx, RequestHead, Body) {
        let started = Instant::now();
        let stream = match self.entrypoint {
            Some(entrypoint) => entrypoint.streams.started(),
            // A listener from before a reload that removed its entrypoint.
            None => self.metrics.stream_started(&self.conn.entrypoint),
        };
        // The id is settled first: the record takes it from the headers.
        strait_telemetry::request_id(request.headers_mut());
        let request_bytes = Arc::new(AtomicU64::new(0));
        let (head, body) = RequestHead::from_request(
            request.map(|b| CountingBody::wrap(b, request_bytes.clone())),
        );
        let protocol = Protocol::of(head.version(), self.conn.tls.is_some());
        let mut record = RequestRecord::for_request(self.conn.entrypoint.clone(), protocol, &head);
        record.client = Some(self.conn.remote);
        if let Some(tls) = &self.conn.tls {
            record.alpn = tls.alpn.map(|p| p.as_str());
            record.tls_version = Some(tls.version);
        }
        let ctx = RequestCtx {
            started,
            format: ReplyFormat::of(&head),
            record,
            request_bytes,
            pending: None,
            _stream: stream,
        };
        (ctx, head, body)
    }

    /// The phases between accept and log; `respond` shapes what ends them early.
    async fn phases(
        &self,
        ctx: &mut RequestCtx,
        mut head: RequestHead,
        body: Body,
    ) -> Result<Response<Body>, Reply> {
        if strait_http::is_grpc_over_http1(&head) {
            return Err(Reply::NeedsHttp2 {
                tls: self.conn.tls.is_some(),
            });
        }
        let route = self.route(ctx, &head)?;
        self.filters(route, &mut head).await?;
        let (call, request) = self.admit(ctx, route, head, body);
        match route
            .breaker
            .as_ref()
            .map(|breaker| (breaker, breaker.admit()))
        {
            None => call.send(self, ctx, &route.service, request, None).await,
            Some((breaker, Some(ticket))) => {
                let ticket = Some((breaker.clone(), ticket));
                call.send(self, ctx, &route.service, request, ticket).await
            }
            Some((_, None)) => {
                self.metrics.rejected(route.service.name(), "circuit_open");
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
                let service = &route.service;
                Box::pin(call.fallback(self, ctx, service, request, err, "circuit_open")).await
            }
        }
    }

    /// route: the router whose conditions the request meets, with its runtime.
    fn route<'s>(&'s self, ctx: &mut RequestCtx, head: &RequestHead) -> Result<&'s Route, Reply> {
        let client = self.conn.tls.as_ref().and_then(|tls| tls.client.as_deref());
        let route = self
            .entrypoint
            .and_then(|e| self.snapshot.routes.route(e.index, head, client));
        let Some(route) = route else {
            return Err(Reply::Error(ProxyError::new(
                ErrorKind::NoRoute,
                Side::Proxy,
                format!(
                    "no router on entrypoint `{}` matches {} {}",
                    self.conn.entrypoint,
                    head.method(),
                    head.uri().path()
                ),
            )));
        };
        ctx.record.router = Some(route.name.clone());
        ctx.record.service = Some(route.service.name().clone());
        #[cfg(feature = "fault-hooks")]
        if head.headers().contains_key("x-strait-fault-panic") {
            panic!("fault hook: x-strait-fault-panic");
        }
        Ok(route)
    }

    /// filters: the router's, in order; one may answer the request itself.
    async fn filters(&self, route: &Route, head: &mut RequestHead) -> Result<(), Reply> {
        if route.filters.is_empty() {
            return Ok(());
        }
        let cx = FilterContext {
            router: &route.name,
            metrics: self.metrics,
        };
        match route.filters.run(head, &cx).await {
            Flow::Next => Ok(()),
            Flow::Answer(reply) => Err(reply),
        }
    }

    /// admit: the request's deadline, its head made for the upstream, and the router's
    /// idle timer started. (The breaker admits it next; the service's limits when it is
    /// sent.)
    fn admit<'r>(
        &self,
        ctx: &RequestCtx,
        route: &'r Route,
        mut head: RequestHead,
        body: Body,
    ) -> (Call<'r>, Request<Body>) {
        let deadline = Deadline::for_request(head.headers(), route.timeout, ctx.started);
        normalize::to_upstream(&mut head, self.conn);
        if let Some(header) = self.entrypoint.and_then(|e| e.forward_client_cert.as_ref()) {
            // Whatever the client sent under this name is not to be trusted.
            head.headers_mut().remove(header);
            let client = self.conn.tls.as_ref().and_then(|tls| tls.client.as_deref());
            if let Some(value) = client.and_then(|c| c.header_value()) {
                head.headers_mut().insert(header.clone(), value);
            }
        }
        if let (Some(deadline), true) = (&deadline, ctx.format.is_grpc()) {
            deadline.propagate(head.headers_mut());
        }
        let (idle, body) = match route.stream_idle_timeout {
            Some(timeout) => {
                let (idle, body) = StreamIdle::start(timeout, &route.name, body);
                (Some(idle), body)
            }
            None => (None, body),
        };
        let call = Call {
            route,
            deadline,
            idle,
        };
        (call, head.into_request(body))
    }

    /// respond: what the client gets when strait answers itself.
    fn respond(&self, ctx: &mut RequestCtx, reply: Reply) -> Response<Body> {
        if ctx.record.error.is_none() {
            ctx.record.error = Some(reply.to_string());
        }
        debug!(
            entrypoint = %self.conn.entrypoint,
            router = ctx.record.router.as_deref().unwrap_or("-"),
            client = %self.conn.remote,
            error = %reply,
            "request answered by strait"
        );
        strait_http::respond(&reply, ctx.format)
    }

    /// A panic while serving the request: INTERNAL / 500, logged with what it said.
    fn panicked(&self, ctx: &mut RequestCtx, panic: &(dyn Any + Send)) -> Response<Body> {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        self.metrics.panicked(ctx.record.router.as_ref());
        error!(
            entrypoint = %self.conn.entrypoint,
            router = ctx.record.router.as_deref().unwrap_or("-"),
            "panic while serving a request: {what}; answered INTERNAL / 500"
        );
        ctx.record.error = Some(format!("panic: {what}"));
        let err = ProxyError::new(ErrorKind::Internal, Side::Proxy, "internal error in strait");
        self.respond(ctx, Reply::Error(err))
    }
}

// === impl Call ===

impl Call<'_> {
    /// call: the request through `service` (the router's, or its fallback service).
    async fn send(
        &self,
        pipeline: &Pipeline<'_>,
        ctx: &mut RequestCtx,
        service: &Arc<Service>,
        request: Request<Body>,
        ticket: Option<(Arc<RouteBreaker>, Ticket)>,
    ) -> Result<Response<Body>, Reply> {
        let route = self.route;
        let cx = CallContext {
            router: &route.name,
            retries: &route.retries,
            class: route.class.as_deref(),
            deadline: self.deadline,
            idle: self.idle.as_ref(),
            grpc: ctx.format.is_grpc(),
            hash_key: service.hash_key(request.headers(), pipeline.conn.remote.ip()),
        };
        let active = route.retries.start();
        let sent_at = Instant::now();
        match service.call(request, &cx).await {
            Ok((mut response, completion)) => {
                let upstream = sent_at.elapsed();
                ctx.record.endpoint = Some(completion.endpoint().clone());
                ctx.record.retries = completion.tries() - 1;
                ctx.record.upstream_duration = Some(upstream);
                pipeline.metrics.upstream_response_headers(
                    service.name(),
                    completion.endpoint(),
                    upstream,
                );
                normalize::from_upstream(&mut response);
                ctx.pending = Some(Pending {
                    completion,
                    breaker: ticket,
                    _active: active,
                });
                Ok(response)
            }
            Err(Failure::Rejected {
                request,
                error,
                reason,
            }) => {
                if let Some((breaker, ticket)) = ticket {
                    breaker.record(ticket, Verdict::Neutral);
                }
                Box::pin(self.fallback(pipeline, ctx, service, *request, error, reason)).await
            }
            Err(Failure::Failed { error, tries }) => {
                ctx.record.retries = tries.saturating_sub(1);
                if let Some((breaker, ticket)) = ticket {
                    breaker.record(ticket, strait_balance::of_error(&error));
                }
                Err(Reply::Error(error))
            }
            Err(Failure::Idle { error }) => Err(Reply::Error(error)),
        }
    }

    /// `service` turned the request away (`reason`): the router's fallback answers, or the
    /// error does.
    async fn fallback(
        &self,
        pipeline: &Pipeline<'_>,
        ctx: &mut RequestCtx,
        service: &Arc<Service>,
        request: Request<Body>,
        error: ProxyError,
        reason: &'static str,
    ) -> Result<Response<Body>, Reply> {
        let route = self.route;
        let Some(fallback) = route.fallback_for(service) else {
            return Err(Reply::Error(error));
        };
        pipeline.metrics.fallback(&route.name, reason);
        debug!(router = %route.name, error = %error, "answered by the fallback ({reason})");
        match fallback {
            Fallback::Service(service) => {
                ctx.record.service = Some(service.name().clone());
                self.send(pipeline, ctx, service, request, None).await
            }
            status => {
                ctx.record.error = Some(format!("{error} (fallback answered)"));
                Err(status.reply().unwrap_or(Reply::Error(error)))
            }
        }
    }
}

/// log: once the response stream ends, however it ends, its outcome goes to the metrics,
/// the access log, outlier detection and the breaker.
fn log(
    ctx: RequestCtx,
    response: Response<Body>,
    snapshot: Arc<Snapshot>,
    metrics: Metrics,
) -> Response<Body> {
    let RequestCtx {
        started,
        mut record,
        request_bytes,
        pending,
        _stream: stream,
        ..
    } = ctx;
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

#[cfg(test)]
mod tests;
