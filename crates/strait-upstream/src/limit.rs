//! The connection layer of a service's circuit breakers, per endpoint: at most
//! `max_connections` connections, and at most `max_pending` requests waiting for room on
//! them; more are rejected at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use strait_config::ServiceLimits;
use strait_core::{ErrorKind, ProxyError, Side};
use tokio::sync::Notify;

/// One endpoint's connection limit and the requests waiting under it. Only exists when the
/// service sets `max_connections`, so endpoints without it pay nothing.
#[derive(Debug)]
pub(crate) struct ConnLimit {
    max_connections: usize,
    max_pending: Option<usize>,
    pending: AtomicUsize,
    /// HTTP/1.1 connections open, idle or busy (HTTP/2 connections are counted by their
    /// pool's list).
    http1_connections: AtomicUsize,
    /// Signalled when room may have appeared: a stream or connection was given back or a
    /// connection closed. Waiters create and enable their `notified()` before looking for
    /// room, so a release between the look and the wait is not lost.
    freed: Notify,
}

/// An HTTP/1.1 connection's place under the limit; it travels with the connection's sender
/// (checked out, in a response body, idle in the pool) and is given back when they are
/// dropped, that is when the connection closes.
#[derive(Debug)]
pub(crate) struct Slot {
    limit: Arc<ConnLimit>,
}

/// A request's place among those waiting; given back when dropped (served, failed, or the
/// caller gave up).
#[derive(Debug)]
pub(crate) struct Pending<'a> {
    limit: &'a ConnLimit,
}

// === impl ConnLimit ===

impl ConnLimit {
    pub(crate) fn new(limits: &ServiceLimits) -> Option<ConnLimit> {
        let max_connections = limits.max_connections? as usize;
        Some(ConnLimit {
            // Validation allows 1.., but 0 would wait forever.
            max_connections: max_connections.max(1),
            max_pending: limits.max_pending.map(|n| n as usize),
            pending: AtomicUsize::new(0),
            http1_connections: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    pub(crate) fn max_connections(&self) -> usize {
        self.max_connections
    }

    pub(crate) fn freed(&self) -> &Notify {
        &self.freed
    }

    /// Room may have appeared: every waiter looks again.
    pub(crate) fn release(&self) {
        self.freed.notify_waiters();
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Joins the requests waiting for room on endpoint `label`, or rejects the request when
    /// `max_pending` of them already wait.
    pub(crate) fn wait(&self, label: &str) -> Result<Pending<'_>, ProxyError> {
        let Some(max) = self.max_pending else {
            self.pending.fetch_add(1, Ordering::AcqRel);
            return Ok(Pending { limit: self });
        };
        match self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            }) {
            Ok(_) => Ok(Pending { limit: self }),
            Err(_) => Err(ProxyError::new(
                ErrorKind::Overloaded,
                Side::Proxy,
                format!(
                    "endpoint {label} is at its connection limit (circuit_breakers.max_connections: {}) \
                     and {max} request(s) already wait for room (max_pending: {max}); raise \
                     circuit_breakers.max_pending / max_connections of its service, or add endpoints",
                    self.max_connections
                ),
            )),
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.limit.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl Slot ===

impl Slot {
    /// A place for one more HTTP/1.1 connection, if the limit allows it.
    pub(crate) fn take(limit: &Arc<ConnLimit>) -> Option<Slot> {
        limit
            .http1_connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit.max_connections).then_some(n + 1)
            })
            .ok()?;
        Some(Slot {
            limit: limit.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limit.http1_connections.fetch_sub(1, Ordering::AcqRel);
        self.limit.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max_connections: u32, max_pending: Option<u32>) -> Arc<ConnLimit> {
        let limits = ServiceLimits {
            max_connections: Some(max_connections),
            max_pending,
            ..ServiceLimits::default()
        };
        Arc::new(ConnLimit::new(&limits).unwrap())
    }

    #[test]
    fn no_limit_without_max_connections() {
        assert!(ConnLimit::new(&ServiceLimits::default()).is_none());
    }

    #[test]
    fn waiters_past_max_pending_are_rejected_until_one_leaves() {
        let limit = limit(1, Some(2));
        let first = limit.wait("h2c://a:1").unwrap();
        let _second = limit.wait("h2c://a:1").unwrap();
        let err = limit.wait("h2c://a:1").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Overloaded);
        assert!(err.message().contains("h2c://a:1"), "{err}");
        assert!(err.message().contains("max_pending: 2"), "{err}");
        assert_eq!(limit.pending(), 2);
        drop(first);
        assert_eq!(limit.pending(), 1);
        let _third = limit.wait("h2c://a:1").unwrap();
    }

    #[test]
    fn without_max_pending_everyone_waits() {
        let limit = limit(1, None);
        let waiting: Vec<_> = (0..100).map(|_| limit.wait("x").unwrap()).collect();
        assert_eq!(limit.pending(), 100);
        drop(waiting);
        assert_eq!(limit.pending(), 0);
    }

    #[tokio::test]
    async fn a_dropped_slot_makes_room_and_wakes_waiters() {
        let limit = limit(2, None);
        let a = Slot::take(&limit).unwrap();
        let _b = Slot::take(&limit).unwrap();
        assert!(Slot::take(&limit).is_none());
        let mut freed = std::pin::pin!(limit.freed().notified());
        freed.as_mut().enable();
        drop(a);
        // Enabled before the drop, so the wake-up is not lost.
        tokio::time::timeout(std::time::Duration::from_secs(5), freed)
            .await
            .unwrap();
        assert!(Slot::take(&limit).is_some());
    }
}
