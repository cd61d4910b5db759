//! A router's `stream_idle_timeout`: a stream that carries no DATA frame in either direction
//! for that long is ended. Both bodies note when a DATA frame passes; one timer re-arms from
//! the latest. Before the response head, the request gets DEADLINE_EXCEEDED (HTTP: 504);
//! after it, a gRPC response ends with `grpc-status: DEADLINE_EXCEEDED` trailers and any
//! other is reset. Either way the upstream stream is dropped, which resets it. Only routers
//! that set the timeout pay for any of this.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::Frame;
use strait_core::{Body, BoxError, ErrorKind, ProxyError, Side};
use strait_grpc::Code;
use strait_telemetry::Metrics;
use tokio::time::{Instant, Sleep};

/// One stream's idle timer.
#[derive(Clone, Debug)]
pub struct StreamIdle {
    timeout: Duration,
    activity: Arc<Activity>,
    router: Arc<str>,
}

/// When the stream last carried DATA, in nanoseconds since `epoch`.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    last: AtomicU64,
}

pin_project_lite::pin_project! {
    /// A body whose DATA frames count as the stream's activity.
    struct Noted {
        #[pin]
        inner: Body,
        activity: Arc<Activity>,
    }
}

pin_project_lite::pin_project! {
    /// The response body: notes DATA and ends the stream once it has been quiet too long.
    struct IdleBody {
        inner: Option<Body>,
        #[pin]
        sleep: Sleep,
        idle: StreamIdle,
        grpc: bool,
        metrics: Metrics,
    }
}

// === impl StreamIdle ===

impl StreamIdle {
    /// Starts the timer now; the request's DATA frames count from here on.
    pub fn start(timeout: Duration, router: &Arc<str>, body: Body) -> (StreamIdle, Body) {
        let activity = Arc::new(Activity {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        });
        let body = strait_core::boxed(Noted {
            inner: body,
            activity: activity.clone(),
        });
        let idle = StreamIdle {
            timeout,
            activity,
            router: router.clone(),
        };
        (idle, body)
    }

    /// When the stream goes idle unless DATA passes first.
    fn due(&self) -> Instant {
        self.activity.last_at() + self.timeout
    }

    /// Resolves once the stream has carried no DATA for the timeout (for the wait before the
    /// response head).
    pub(crate) async fn expired(&self, metrics: &Metrics) {
        loop {
            let due = self.due();
            tokio::time::sleep_until(due).await;
            if self.due() <= Instant::now() {
                metrics.stream_idle_timeout(&self.router);
                return;
            }
        }
    }

    /// What a request whose stream went idle before its response head gets.
    pub(crate) fn error(&self) -> ProxyError {
        ProxyError::new(ErrorKind::DeadlineExceeded, Side::Proxy, self.message())
    }

    fn message(&self) -> String {
        format!(
            "no data either way for {:?} on router `{}` (stream_idle_timeout)",
            self.timeout, self.router
        )
    }

    /// Keeps the timer running while the response body streams.
    pub(crate) fn bound(
        self,
        response: Response<Body>,
        grpc: bool,
        metrics: &Metrics,
    ) -> Response<Body> {
        let sleep = tokio::time::sleep_until(self.due());
        let metrics = metrics.clone();
        response.map(|inner| {
            strait_core::boxed(IdleBody {
                inner: Some(inner),
                sleep,
                idle: self,
                grpc,
                metrics,
            })
        })
    }
}

// === impl Activity ===

impl Activity {
    fn note(&self) {
        let nanos = self.epoch.elapsed().as_nanos();
        self.last
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn last_at(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }
}

// === impl Noted ===

impl http_body::Body for Noted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame {
            if frame.is_data() {
                this.activity.note();
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

// === impl IdleBody ===

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            match &frame {
                None => *this.inner = None,
                Some(Ok(frame)) if frame.is_data() => this.idle.activity.note(),
                Some(_) => {}
            }
            return Poll::Ready(frame);
        }
        // Re-armed from the latest DATA either way until it fires with nothing newer.
        loop {
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = this.idle.due();
            if due > Instant::now() {
                this.sleep.as_mut().reset(due);
                continue;
            }
            break;
        }
        *this.inner = None;
        this.metrics.stream_idle_timeout(&this.idle.router);
        if *this.grpc {
            let trailers =
                strait_grpc::status_trailers(Code::DeadlineExceeded, &this.idle.message());
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(Some(Err(Box::new(this.idle.error()))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }
}
