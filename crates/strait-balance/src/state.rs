//! What the balancer knows about one endpoint: requests in flight, a peak-EWMA of its
//! latency, when it was last sent a request, whether active health checks pass, and whether
//! outlier detection ejected it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::window::Window;

/// How fast old latency observations fade: after this long an observation weighs 1/e.
const DECAY: Duration = Duration::from_secs(10);
/// An endpoint sent nothing for this long, with nothing in flight, has no fresh latency: the
/// balancer probes it with the next request it could take, and the latency that request
/// measures replaces the stale one instead of being averaged into it. This bounds how long a
/// healthy endpoint can go without traffic while requests keep arriving, at any rate.
pub(crate) const PROBE_AFTER: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct EndpointState {
    /// Requests in flight, from pick until the response stream ends.
    active: AtomicU32,
    /// Active health checks pass (true until they say otherwise, or without checks).
    healthy: AtomicBool,
    /// Nanoseconds since the service's epoch until which the endpoint is ejected; 0: never
    /// ejected.
    ejected_until: AtomicU64,
    /// Nanoseconds since the service's epoch + 1 when the last request was sent here;
    /// 0: never.
    last_sent: AtomicU64,
    ewma: Mutex<Ewma>,
    pub(crate) outlier: Mutex<OutlierCounts>,
}

/// Counts one request in flight on an endpoint until dropped, however the request ends
/// (answered, failed, or its client gone mid-try).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<EndpointState>);

#[derive(Debug)]
struct Ewma {
    /// Nanoseconds; 0: nothing observed yet.
    cost: f64,
    /// When the last observation was made.
    stamp: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct OutlierCounts {
    pub(crate) consecutive: u32,
    pub(crate) window: Option<Window>,
    /// Ejections in a row (each one not long after the last ended): the next one lasts
    /// base × (ejections + 1).
    pub(crate) ejections: u32,
    /// When the last ejection ends.
    pub(crate) last_until: Option<Instant>,
}

// === impl EndpointState ===

impl EndpointState {
    pub(crate) fn new(now: Instant) -> EndpointState {
        EndpointState {
            active: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            ejected_until: AtomicU64::new(0),
            last_sent: AtomicU64::new(0),
            ewma: Mutex::new(Ewma {
                cost: 0.0,
                stamp: now,
            }),
            outlier: Mutex::new(OutlierCounts::default()),
        }
    }

    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// A request is sent here at `now` (nanoseconds since the service's epoch); it counts
    /// in flight until the guard is dropped.
    pub(crate) fn started(self: &Arc<Self>, now: u64) -> InFlight {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.last_sent
            .store(now.saturating_add(1), Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Nothing in flight and nothing sent for [`PROBE_AFTER`] (or ever) at `now`
    /// (nanoseconds since the service's epoch): what the balancer knows of this endpoint is
    /// stale, and the next request it could take should go here.
    pub(crate) fn needs_probe(&self, now: u64) -> bool {
        if self.active() > 0 {
            return false;
        }
        match self.last_sent.load(Ordering::Relaxed) {
            0 => true,
            sent => now.saturating_sub(sent - 1) >= PROBE_AFTER.as_nanos() as u64,
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sets the active health state; true when it changed.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// Ejected at `now` (nanoseconds since the service's epoch).
    pub(crate) fn is_ejected(&self, now: u64) -> bool {
        now < self.ejected_until.load(Ordering::Relaxed)
    }

    pub(crate) fn eject_until(&self, until: u64) {
        self.ejected_until.store(until, Ordering::Relaxed);
    }

    /// Records a time to response headers (from when the request went out on a ready
    /// connection: opening one is not the endpoint's latency). A peak EWMA: a slower
    /// observation is taken at once, faster ones pull the average down as older ones fade.
    /// After [`PROBE_AFTER`] without an observation, the old average is stale and the new
    /// observation replaces it: one slow answer long ago must not keep an endpoint idle.
    pub(crate) fn observe(&self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_nanos() as f64;
        let mut ewma = self.ewma.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(ewma.stamp);
        ewma.stamp = now;
        if rtt > ewma.cost || elapsed >= PROBE_AFTER {
            ewma.cost = rtt;
        } else {
            let w = (-elapsed.as_secs_f64() / DECAY.as_secs_f64()).exp();
            ewma.cost = ewma.cost * w + rtt * (1.0 - w);
        }
    }

    /// The latency estimate in nanoseconds; `None` before the first observation.
    pub(crate) fn latency(&self) -> Option<f64> {
        let ewma = self.ewma.lock().unwrap_or_else(PoisonError::into_inner);
        (ewma.cost > 0.0).then_some(ewma.cost)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}
