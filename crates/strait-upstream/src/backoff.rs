use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The first wait after a failed connect; it doubles with each failure in a row.
const BASE: Duration = Duration::from_millis(100);
/// The longest wait between connect attempts to one endpoint.
const MAX: Duration = Duration::from_secs(10);

/// Exponential backoff with jitter for connecting to one endpoint, so a failing backend does
/// not get a reconnect storm from every request (and from every strait at the same moment).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    retry_at: Option<Instant>,
    /// Why the last connect failed, when it is known.
    cause: Option<Arc<str>>,
}

/// An endpoint that is backing off.
#[derive(Debug)]
pub(crate) struct BackingOff {
    pub(crate) failures: u32,
    pub(crate) wait: Duration,
    /// Why the last connect failed, so a request turned away here can still say (its last
    /// try is often this one, after transparent retries).
    pub(crate) cause: Option<Arc<str>>,
}

impl Backoff {
    /// `Err` while the endpoint is backing off.
    pub(crate) fn check(&self) -> Result<(), BackingOff> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.retry_at {
            Some(at) if at > Instant::now() => Err(BackingOff {
                failures: state.failures,
                wait: at - Instant::now(),
                cause: state.cause.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// A connect failed, because of `cause` when it is known (a handshake that went wrong
    /// after the connection opened has none: a stale cause must not be kept).
    pub(crate) fn failed(&self, cause: Option<Arc<str>>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.cause = cause;
        state.failures = state.failures.saturating_add(1);
        let exponent = state.failures.saturating_sub(1).min(16);
        let cap = BASE.saturating_mul(1 << exponent).min(MAX);
        // Equal jitter: half the wait is fixed, half random, so waits never collapse to zero.
        let half = cap / 2;
        let jitter = half.mul_f64(random_unit());
        state.retry_at = Some(Instant::now() + half + jitter);
    }

    pub(crate) fn succeeded(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state = State::default();
    }
}

/// A number in [0, 1) that differs between calls and processes.
fn random_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_grow_with_jitter_and_reset_on_success() {
        let backoff = Backoff::default();
        assert!(backoff.check().is_ok());
        let mut previous_max = Duration::ZERO;
        for failures in 1..=10u32 {
            backoff.failed(None);
            let BackingOff {
                failures: count,
                wait,
                cause,
            } = backoff.check().unwrap_err();
            assert_eq!(count, failures);
            assert_eq!(cause, None);
            let cap = BASE.saturating_mul(1 << (failures - 1)).min(MAX);
            assert!(
                wait >= cap / 2 && wait <= cap,
                "{failures}: {wait:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
            assert!(cap >= previous_max);
            previous_max = cap;
        }
        tokio::time::advance(MAX).await;
        assert!(backoff.check().is_ok(), "never waits longer than MAX");
        backoff.failed(None);
        backoff.succeeded();
        assert!(backoff.check().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_failures_cause_is_kept_until_the_next_failure() {
        let backoff = Backoff::default();
        backoff.failed(Some(Arc::from("timed out")));
        assert_eq!(
            backoff.check().unwrap_err().cause.as_deref(),
            Some("timed out")
        );
        // A failure without a known cause does not keep a stale one.
        backoff.failed(None);
        assert_eq!(backoff.check().unwrap_err().cause, None);
        backoff.failed(Some(Arc::from("refused")));
        backoff.succeeded();
        assert!(backoff.check().is_ok());
    }

    #[test]
    fn random_unit_stays_in_range_and_varies() {
        let values: Vec<f64> = (0..100).map(|_| random_unit()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(values.windows(2).any(|w| w[0] != w[1]));
    }
}
