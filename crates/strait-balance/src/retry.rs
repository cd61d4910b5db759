//! A router's retry policy at run time: what to retry, how long to wait, and a budget that
//! keeps retries a small share of the traffic so a sick backend never gets a retry storm.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strait_config::{RetryOn, RetryPolicy};
use strait_core::{Code, ErrorKind, ProxyError};

/// Tries in all when a router has no retry policy: requests the backend never saw
/// (connect failures, refused streams) are still retried, elsewhere when possible.
pub(crate) const TRANSPARENT_ATTEMPTS: u32 = 3;

#[derive(Debug)]
pub struct Retries {
    policy: Option<RetryPolicy>,
    /// Requests on the router in flight, and retries among them.
    active: Arc<AtomicU32>,
    retrying: Arc<AtomicU32>,
}

/// Counts a request as active on its router until dropped.
#[derive(Debug)]
pub struct Active(Arc<AtomicU32>);

/// Counts a retry against the budget until dropped.
#[derive(Debug)]
pub(crate) struct RetryPermit(Arc<AtomicU32>);

/// Why a try is worth another: the `retry_on` name, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reason {
    pub(crate) on: RetryOn,
    /// The backend never saw the request: always safe, and free of the budget.
    pub(crate) transparent: bool,
}

impl Retries {
    pub fn new(policy: Option<&RetryPolicy>) -> Retries {
        Retries {
            policy: policy.cloned(),
            active: Arc::default(),
            retrying: Arc::default(),
        }
    }

    pub fn policy(&self) -> Option<&RetryPolicy> {
        self.policy.as_ref()
    }

    pub fn start(&self) -> Active {
        self.active.fetch_add(1, Ordering::Relaxed);
        Active(self.active.clone())
    }

    /// Tries in all for retries the policy asks for (1 without a policy).
    pub(crate) fn attempts(&self) -> u32 {
        self.policy.as_ref().map_or(1, |p| p.attempts)
    }

    /// A try may be followed by another: `tries` were made so far.
    pub(crate) fn may_try_again(&self, tries: u32, reason: Reason) -> bool {
        if reason.transparent {
            tries < self.attempts().max(TRANSPARENT_ATTEMPTS)
        } else {
            tries < self.attempts()
        }
    }

    pub(crate) fn per_try_timeout(&self) -> Option<Duration> {
        self.policy.as_ref().and_then(|p| p.per_try_timeout)
    }

    pub(crate) fn buffer(&self) -> usize {
        self.policy.as_ref().map_or(64 << 10, |p| p.buffer as usize)
    }

    /// Whether an error that left no response is worth another try.
    pub(crate) fn on_error(&self, err: &ProxyError) -> Option<Reason> {
        let (on, transparent) = match err.kind() {
            ErrorKind::Connect => (RetryOn::ConnectFailure, true),
            ErrorKind::Refused => (RetryOn::RefusedStream, true),
            ErrorKind::UpstreamReset => (RetryOn::Reset, false),
            _ => return None,
        };
        if transparent {
            // Always on: the backend never saw it.
            return Some(Reason { on, transparent });
        }
        self.wants(on).then_some(Reason { on, transparent })
    }

    /// Whether a response head is worth another try: grpc-status in trailers-only headers,
    /// or an HTTP 5xx for non-gRPC requests.
    pub(crate) fn on_response(
        &self,
        status: http::StatusCode,
        grpc_status: Option<Code>,
        grpc: bool,
    ) -> Option<Reason> {
        let on = match grpc_status {
            Some(Code::Unavailable) => RetryOn::Unavailable,
            Some(Code::ResourceExhausted) => RetryOn::ResourceExhausted,
            Some(_) => return None,
            None if !grpc && status.is_server_error() => RetryOn::Http5xx,
            None => return None,
        };
        self.wants(on).then_some(Reason {
            on,
            transparent: false,
        })
    }

    fn wants(&self, on: RetryOn) -> bool {
        self.policy
            .as_ref()
            .is_some_and(|p| p.retry_on.contains(&on))
    }

    /// A place in the budget for one retry: retries in flight stay within
    /// `budget_percent` of the requests in flight, plus `budget_min`.
    pub(crate) fn budget(&self) -> Option<RetryPermit> {
        let (percent, min) = self
            .policy
            .as_ref()
            .map_or((20, 3), |p| (p.budget_percent, p.budget_min));
        let active = u64::from(self.active.load(Ordering::Relaxed));
        let allowed = active * u64::from(percent) / 100 + u64::from(min);
        let taken = self
            .retrying
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (u64::from(n) < allowed).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| RetryPermit(self.retrying.clone()))
    }

    /// Full-jitter exponential backoff before retry number `retry` (1 for the first retry).
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let Some(policy) = &self.policy else {
            return Duration::ZERO;
        };
        backoff(
            policy.backoff_base,
            policy.backoff_max,
            retry,
            fastrand::f64(),
        )
    }
}

/// A random time in [0, min(max, base × 2^(retry-1))), `unit` in [0, 1) choosing where.
pub(crate) fn backoff(base: Duration, max: Duration, retry: u32, unit: f64) -> Duration {
    let exponent = retry.saturating_sub(1).min(20);
    let cap = base.saturating_mul(1 << exponent).min(max);
    cap.mul_f64(unit.clamp(0.0, 1.0))
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for RetryPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            retry_on: vec![RetryOn::Unavailable, RetryOn::Reset],
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            per_try_timeout: None,
            budget_percent: 20,
            budget_min: 3,
            buffer: 64 << 10,
        }
    }

    /// Property: every backoff lies in [0, min(max, base × 2^(n-1))], for any retry number
    /// and random draw (a deterministic sweep over seeds).
    #[test]
    fn backoff_stays_within_its_cap() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..10_000 {
            let base = Duration::from_millis(rng.u64(1..100));
            let max = base + Duration::from_millis(rng.u64(0..2000));
            let retry = rng.u32(0..64);
            let unit = rng.f64();
            let wait = backoff(base, max, retry, unit);
            let cap = base
                .saturating_mul(1 << retry.saturating_sub(1).min(20))
                .min(max);
            assert!(wait <= cap, "{wait:?} > {cap:?} for retry {retry}");
        }
        assert_eq!(
            backoff(
                Duration::from_millis(25),
                Duration::from_millis(250),
                3,
                0.999_999
            ),
            Duration::from_millis(100).mul_f64(0.999_999)
        );
        assert_eq!(
            backoff(
                Duration::from_millis(25),
                Duration::from_millis(250),
                30,
                0.5
            ),
            Duration::from_millis(125)
        );
    }

    #[test]
    fn budget_is_a_share_of_active_requests_plus_a_floor() {
        let retries = Retries::new(Some(&policy()));
        let _active: Vec<Active> = (0..50).map(|_| retries.start()).collect();
        // 20% of 50 + 3 = 13 retries at once.
        let permits: Vec<_> = (0..13).map(|_| retries.budget().unwrap()).collect();
        assert!(retries.budget().is_none());
        drop(permits);
        assert!(retries.budget().is_some());
    }

    #[test]
    fn what_is_retried() {
        let retries = Retries::new(Some(&policy()));
        let status = http::StatusCode::OK;
        assert!(retries
            .on_response(status, Some(Code::Unavailable), true)
            .is_some());
        assert!(retries
            .on_response(status, Some(Code::ResourceExhausted), true)
            .is_none());
        assert!(retries
            .on_response(http::StatusCode::BAD_GATEWAY, None, false)
            .is_none());
        let none = Retries::new(None);
        assert!(none
            .on_response(status, Some(Code::Unavailable), true)
            .is_none());
        // Never-seen requests are retried with or without a policy.
        let refused = ProxyError::new(ErrorKind::Refused, strait_core::Side::Upstream, "x");
        assert!(none.on_error(&refused).unwrap().transparent);
        let reset = ProxyError::new(ErrorKind::UpstreamReset, strait_core::Side::Upstream, "x");
        assert!(none.on_error(&reset).is_none());
        assert_eq!(retries.on_error(&reset).unwrap().on, RetryOn::Reset);
    }
}
