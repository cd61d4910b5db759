//! What serving a client connection takes, whatever its protocol: a request's trip through
//! the entrypoint's checks to the handler, the count of open requests behind the idle
//! timeout, and the loop that runs a connection to its end.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use strait_config::Lifecycle;
use strait_core::{Body, DrainWatch};
use strait_telemetry::ObservedBody;
use tokio::sync::Notify;

use crate::admit::admit;
use crate::limits::Enforcer;
use crate::{ConnInfo, Handler};

/// Requests open on one client connection, for the idle timeout: a connection is idle when
/// none is open, from the end of the last response stream.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Tracking costs a body wrapper per request; only an idle timeout needs it.
    enabled: bool,
    open: AtomicUsize,
    /// Bumped by every request, so an idle period that saw a request come and go is not
    /// mistaken for an unbroken one.
    started: AtomicUsize,
    quiet: Notify,
}

/// One open request; the connection counts as busy until it is dropped.
struct Busy(Arc<Activity>);

impl Activity {
    /// Tracks requests only when `lifecycle` has an idle timeout.
    pub(crate) fn new(lifecycle: &Lifecycle) -> Arc<Activity> {
        Arc::new(Activity {
            enabled: lifecycle.idle_timeout.is_some(),
            ..Activity::default()
        })
    }

    /// Counts a request open from now until [`Activity::until_end`] sees its response
    /// stream end. Two calls rather than one taking the response future: an async fn that
    /// awaits a future it was given stores that future twice, and this one is every request's.
    /// `handle` makes both.
    fn begin(self: &Arc<Self>) -> Option<Busy> {
        if !self.enabled {
            return None;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        Some(Busy(self.clone()))
    }

    /// Keeps the request counted open until `response`'s stream ends.
    fn until_end(busy: Option<Busy>, response: Response<Body>) -> Response<Body> {
        match busy {
            None => response,
            Some(busy) => ObservedBody::observe_response(response, move |_| drop(busy)),
        }
    }

    /// Resolves once no request has been open for `timeout`.
    pub(crate) async fn idle_for(&self, timeout: Duration) {
        loop {
            let quiet = self.quiet.notified();
            if self.open.load(Ordering::Acquire) > 0 {
                quiet.await;
                continue;
            }
            let seen = self.started.load(Ordering::Acquire);
            tokio::time::sleep(timeout).await;
            if self.open.load(Ordering::Acquire) == 0
                && self.started.load(Ordering::Acquire) == seen
            {
                return;
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.quiet.notify_waiters();
        }
    }
}

/// Runs a client connection to its end. Draining or reaching `max_connection_age` starts a
/// graceful shutdown (HTTP/2: GOAWAY with the highest stream id, then the final GOAWAY after
/// a round trip; HTTP/1.1: `connection: close` after the request in flight); after an age
/// shutdown, `max_connection_age_grace` bounds how long open streams may take.
pub(crate) async fn drive<C, E>(
    mut connection: Pin<&mut C>,
    drain: &mut DrainWatch,
    lifecycle: &Lifecycle,
    activity: &Activity,
    shutdown: impl FnOnce(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    // Boxed and only when configured: every connection's future carries these timers, and
    // by default there are none.
    let age = lifecycle
        .max_connection_age
        .map(|age| Box::pin(tokio::time::sleep(age)));
    let idle = lifecycle
        .idle_timeout
        .map(|timeout| Box::pin(activity.idle_for(timeout)));
    let aged = tokio::select! {
        result = connection.as_mut() => return result,
        _ = drain.signaled() => false,
        _ = when_set(age) => true,
        _ = when_set(idle) => false,
    };
    shutdown(connection.as_mut());
    match lifecycle.max_connection_age_grace {
        Some(grace) if aged => Box::pin(tokio::time::timeout(grace, connection))
            .await
            // Out of grace: dropping the connection resets what is left.
            .unwrap_or(Ok(())),
        _ => connection.await,
    }
}

/// Resolves with `future`, or never when there is none.
async fn when_set<F: Future>(future: Option<F>) -> F::Output {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// A request through its entrypoint's checks, then to the handler. It counts as open on its
/// connection (for the idle timeout) until its response stream ends.
pub(crate) async fn handle<H: Handler>(
    handler: H,
    request: Request<Incoming>,
    conn: Arc<ConnInfo>,
    enforcer: Arc<Enforcer>,
    activity: Arc<Activity>,
) -> Result<Response<Body>, Infallible> {
    let busy = activity.begin();
    let response = match admit(request.map(strait_core::boxed), &conn, &enforcer).await {
        Ok(admitted) => {
            let response = handler.handle(admitted.request, &conn).await;
            admitted.check.finish(response, &conn, &enforcer)
        }
        Err(refused) => refused,
    };
    Ok(Activity::until_end(busy, response))
}
