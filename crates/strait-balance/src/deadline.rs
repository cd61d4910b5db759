//! Deadlines: the sooner of the client's `grpc-timeout` and the router's `timeout`. strait
//! ends the call itself when it passes, whether or not the backend answers, and the backend
//! is told how much time is left.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::Frame;
use strait_core::{Body, BoxError, ErrorKind, ProxyError, Side};
use strait_grpc::{Code, GRPC_TIMEOUT};
use tokio::time::{Instant, Sleep};

#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    at: Instant,
}

pin_project_lite::pin_project! {
    /// A response body that ends when the deadline passes: for gRPC with
    /// `grpc-status: DEADLINE_EXCEEDED` trailers, otherwise with an error that resets the
    /// client's stream. Either way the upstream stream is dropped, which resets it.
    struct DeadlineBody {
        inner: Option<Body>,
        #[pin]
        sleep: Sleep,
        grpc: bool,
    }
}

// === impl Deadline ===

impl Deadline {
    /// `None` when neither the client nor the router sets one: nothing cuts a stream by
    /// default.
    pub fn for_request(
        headers: &HeaderMap,
        route_timeout: Option<Duration>,
        started: Instant,
    ) -> Option<Deadline> {
        let client = headers
            .get(GRPC_TIMEOUT)
            .and_then(|v| strait_grpc::parse_timeout(v.as_bytes()));
        let timeout = match (client, route_timeout) {
            (Some(client), Some(route)) => client.min(route),
            (client, route) => client.or(route)?,
        };
        // A timeout too far away to represent is no deadline at all.
        started.checked_add(timeout).map(|at| Deadline { at })
    }

    pub fn at(&self) -> Instant {
        self.at
    }

    /// Tells the backend how long it has left, minus the time spent so far.
    pub fn propagate(&self, headers: &mut HeaderMap) {
        let remaining = self.at.saturating_duration_since(Instant::now());
        headers.insert(GRPC_TIMEOUT, strait_grpc::encode_timeout(remaining));
    }
}

pub(crate) fn exceeded(router: &str) -> ProxyError {
    ProxyError::new(
        ErrorKind::DeadlineExceeded,
        Side::Proxy,
        format!("deadline exceeded (router `{router}`)"),
    )
}

impl Deadline {
    /// Keeps enforcing the deadline while the response body streams.
    pub(crate) fn bound(self, response: Response<Body>, grpc: bool) -> Response<Body> {
        response.map(|inner| {
            strait_core::boxed(DeadlineBody {
                inner: Some(inner),
                sleep: tokio::time::sleep_until(self.at),
                grpc,
            })
        })
    }
}

// === impl DeadlineBody ===

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            if frame.is_none() {
                *this.inner = None;
            }
            return Poll::Ready(frame);
        }
        if this.sleep.poll(cx).is_pending() {
            return Poll::Pending;
        }
        *this.inner = None;
        if *this.grpc {
            let trailers =
                strait_grpc::status_trailers(Code::DeadlineExceeded, "deadline exceeded");
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(Some(Err(Box::new(exceeded("-")))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }
}
