use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri};
use http_body::Frame;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use strait_config::Lifecycle;
use strait_core::{Body, ErrorKind, ProxyError, Side};
use strait_telemetry::{Protocol, UpstreamStreamGuard};
use tokio::time::Instant;
use tracing::debug;

use crate::connect::{Learned, Target};
use crate::limit::{ConnLimit, Slot};

/// Idle connections kept per endpoint; more are closed when their response ends.
const MAX_IDLE: usize = 64;

/// A connection checked out of the pool for one request.
pub(crate) struct Checkout {
    sender: SendRequest<Body>,
    born: Instant,
    /// Requests the connection carried before this one, for `max_requests_per_connection`.
    served: u32,
    reused: bool,
    slot: Option<Slot>,
}

/// The HTTP/1.1 connections to one endpoint: one request at a time each, idle ones reused.
#[derive(Debug)]
pub(crate) struct H1Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    target: Target,
    lifecycle: Lifecycle,
    idle: Mutex<Vec<Idle>>,
    /// `circuit_breakers.max_connections`: past it, requests wait for a connection.
    limit: Option<Arc<ConnLimit>>,
}

/// A pooled connection, its times and its request count, for `idle_timeout`,
/// `max_connection_age` and `max_requests_per_connection`.
#[derive(Debug)]
struct Idle {
    sender: SendRequest<Body>,
    born: Instant,
    since: Instant,
    served: u32,
    slot: Option<Slot>,
}

pin_project_lite::pin_project! {
    /// A backend's response body; gives its connection back to the pool once it has ended.
    struct PooledBody {
        #[pin]
        inner: Incoming,
        sender: Option<SendRequest<Body>>,
        born: Instant,
        // Requests the connection has carried, this one included.
        served: u32,
        // The connection's place under the connection limit, travelling with `sender`.
        slot: Option<Slot>,
        pool: Weak<Shared>,
        // Counts the request in flight to the endpoint until the body ends or is dropped.
        in_flight: UpstreamStreamGuard,
    }
}

// === impl H1Pool ===

impl H1Pool {
    pub(crate) fn new(
        target: Target,
        lifecycle: Lifecycle,
        limit: Option<Arc<ConnLimit>>,
    ) -> H1Pool {
        let shared = Arc::new(Shared {
            target,
            lifecycle,
            idle: Mutex::new(Vec::new()),
            limit,
        });
        if let (Some(timeout), Ok(runtime)) = (
            shared.lifecycle.idle_timeout,
            tokio::runtime::Handle::try_current(),
        ) {
            runtime.spawn(reap(Arc::downgrade(&shared), timeout));
        }
        H1Pool { shared }
    }

    pub(crate) fn open_connections(&self) -> usize {
        let mut idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        idle.retain(|i| !i.sender.is_closed());
        idle.len()
    }

    /// A connection ready for one request: an idle one, or a new one. Under a connection
    /// limit, past it, the request waits for one to come back or close.
    pub(crate) async fn checkout(&self) -> Result<Checkout, ProxyError> {
        let Some(limit) = &self.shared.limit else {
            return match self.take_idle() {
                Some(idle) => Ok(Checkout::reuse(idle)),
                None => Ok(Checkout {
                    sender: self.connect().await?,
                    born: Instant::now(),
                    served: 0,
                    reused: false,
                    slot: None,
                }),
            };
        };
        let mut pending = None;
        loop {
            let mut freed = std::pin::pin!(limit.freed().notified());
            freed.as_mut().enable();
            // Closed idle connections found here give their places back first.
            if let Some(idle) = self.take_idle() {
                return Ok(Checkout::reuse(idle));
            }
            if let Some(slot) = Slot::take(limit) {
                // A failed connect drops the slot, which wakes the next waiter.
                let sender = self.connect().await?;
                return Ok(Checkout {
                    sender,
                    born: Instant::now(),
                    served: 0,
                    reused: false,
                    slot: Some(slot),
                });
            }
            if pending.is_none() {
                pending = Some(limit.wait(&self.shared.target.label)?);
            }
            freed.await;
        }
    }

    /// Sends `request` on the checked-out connection; a pooled connection the backend had
    /// closed is replaced by a new one.
    pub(crate) async fn send_on(
        &self,
        checkout: Checkout,
        request: Request<Body>,
    ) -> Result<Response<Body>, ProxyError> {
        let mut request = to_origin_form(request, &self.shared.target);
        let target = &self.shared.target;
        let in_flight = target.endpoint_metrics.stream_started();
        let mut next = Some(checkout);
        loop {
            // A connection that turns out unusable is dropped with its slot at the end of the
            // iteration, before the next checkout waits for one.
            let Checkout {
                mut sender,
                born,
                served,
                reused,
                slot,
            } = match next.take() {
                Some(checkout) => checkout,
                None => self.checkout().await?,
            };
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    if !reused {
                        self.shared.target.connected();
                    }
                    let (parts, inner) = response.into_parts();
                    let body = PooledBody {
                        inner,
                        sender: Some(sender),
                        born,
                        served: served.saturating_add(1),
                        slot,
                        pool: Arc::downgrade(&self.shared),
                        in_flight,
                    };
                    return Ok(Response::from_parts(parts, strait_core::boxed(body)));
                }
                Err(e) if !reused => {
                    // A new connection that could not carry one request: a failed connect.
                    self.shared.target.handshake_failed();
                    return Err(self.error(e.into_error()));
                }
                Err(mut e) => match e.take_message() {
                    // An idle connection the backend had closed: the request never left, so
                    // a fresh connection is safe.
                    Some(unsent) => request = unsent,
                    None => return Err(self.error(e.into_error())),
                },
            }
        }
    }

    fn take_idle(&self) -> Option<Idle> {
        let mut idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while let Some(connection) = idle.pop() {
            if self.shared.usable(&connection) {
                return Some(connection);
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<Body>, ProxyError> {
        let target = &self.shared.target;
        let connection = target.connect(Protocol::H1).await?;
        let counted = connection.counted;
        if target.tls.is_some() && target.learn(connection.alpn) != Learned::Http1 {
            return Err(ProxyError::new(
                ErrorKind::Refused,
                Side::Upstream,
                format!("endpoint {} negotiated h2 via ALPN", target.label),
            ));
        }
        let handshake = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(connection.io))
            .await;
        if handshake.is_err() {
            target.handshake_failed();
        }
        let (sender, connection) = handshake.map_err(|e| {
            ProxyError::new(
                ErrorKind::Connect,
                Side::Upstream,
                format!("HTTP/1.1 handshake with endpoint {} failed", target.label),
            )
            .with_source(e)
        })?;
        let label = target.label.clone();
        tokio::spawn(async move {
            let _counted = counted;
            if let Err(e) = connection.await {
                debug!(endpoint = %label, error = %e, "upstream HTTP/1.1 connection ended");
            }
        });
        Ok(sender)
    }

    fn error(&self, e: hyper::Error) -> ProxyError {
        let label = &self.shared.target.label;
        let kind = if e.is_parse() {
            ErrorKind::UpstreamProtocol
        } else {
            ErrorKind::UpstreamReset
        };
        ProxyError::new(
            kind,
            Side::Upstream,
            format!("HTTP/1.1 exchange with endpoint {label} failed"),
        )
        .with_source(e)
    }
}

/// HTTP/1.1 wants `GET /path HTTP/1.1` with the authority in `Host`.
fn to_origin_form(request: Request<Body>, target: &Target) -> Request<Body> {
    let (mut parts, body) = request.into_parts();
    let host = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| HeaderValue::from_str(&target.authority()).ok());
    if let Some(host) = host {
        parts.headers.insert(HOST, host);
    }
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = Uri::from(path);
    parts.version = http::Version::HTTP_11;
    Request::from_parts(parts, body)
}

// === impl Checkout ===

impl Checkout {
    fn reuse(idle: Idle) -> Checkout {
        Checkout {
            sender: idle.sender,
            born: idle.born,
            served: idle.served,
            reused: true,
            slot: idle.slot,
        }
    }
}

// === impl Shared ===

impl Shared {
    fn give_back(&self, sender: SendRequest<Body>, born: Instant, served: u32, slot: Option<Slot>) {
        let connection = Idle {
            sender,
            born,
            since: Instant::now(),
            served,
            slot,
        };
        // A connection past its age or its request count is closed (dropped) rather than
        // reused; its slot goes with it, which wakes a request waiting under the limit.
        if !self.usable(&connection) {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(connection);
        }
        drop(idle);
        // A request waiting under the connection limit can take it now.
        if let Some(limit) = &self.limit {
            limit.release();
        }
    }

    /// Open, not idle too long, not too old, not done with its requests.
    fn usable(&self, connection: &Idle) -> bool {
        let lifecycle = &self.lifecycle;
        !connection.sender.is_closed()
            && lifecycle
                .max_requests_per_connection
                .is_none_or(|max| connection.served < max.get())
            && lifecycle
                .idle_timeout
                .is_none_or(|t| connection.since.elapsed() < t)
            && lifecycle
                .max_connection_age
                .is_none_or(|a| connection.born.elapsed() < a)
    }
}

/// Closes pooled connections that have been idle for `timeout`, until the pool is gone.
async fn reap(pool: Weak<Shared>, timeout: Duration) {
    let period = (timeout / 2).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = pool.upgrade() else {
            return;
        };
        let mut idle = shared.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let kept: Vec<Idle> = idle.drain(..).filter(|c| shared.usable(c)).collect();
        *idle = kept;
    }
}

// === impl PooledBody ===

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let ended = match &frame {
            None => true,
            Some(Ok(_)) => http_body::Body::is_end_stream(&*this.inner),
            Some(Err(_)) => {
                // A broken response leaves the connection in an unknown state.
                this.sender.take();
                this.slot.take();
                false
            }
        };
        if ended {
            if let (Some(sender), Some(pool)) = (this.sender.take(), this.pool.upgrade()) {
                pool.give_back(sender, *this.born, *this.served, this.slot.take());
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
