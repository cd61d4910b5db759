//! What the balancer knows about one endpoint: requests in flight, a peak-EWMA of its
//! latency, whether active health checks pass, and whether outlier detection ejected it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::window::Window;

/// How fast old latency observations fade: after this long an observation weighs 1/e.
const DECAY: Duration = Duration::from_secs(10);
/// The latency assumed for an endpoint nothing has been measured on yet.
const DEFAULT_RTT: Duration = Duration::from_millis(5);

#[derive(Debug)]
pub struct EndpointState {
    /// Requests in flight, from pick until the response stream ends.
    active: AtomicU32,
    /// Active health checks pass (true until they say otherwise, or without checks).
    healthy: AtomicBool,
    /// Nanoseconds since the service's epoch until which the endpoint is ejected; 0: never
    /// ejected.
    ejected_until: AtomicU64,
    ewma: Mutex<Ewma>,
    pub(crate) outlier: Mutex<OutlierCounts>,
}

/// Counts one request in flight on an endpoint until dropped, however the request ends
/// (answered, failed, or its client gone mid-try).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<EndpointState>);

#[derive(Debug)]
struct Ewma {
    /// Nanoseconds.
    cost: f64,
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

    pub(crate) fn started(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
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

    /// Records a time to response headers. A peak EWMA: a slower observation is taken at
    /// once, faster ones pull the average down as older ones fade.
    pub(crate) fn observe(&self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_nanos() as f64;
        let mut ewma = self.ewma.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(ewma.stamp).as_secs_f64();
        ewma.stamp = now;
        if rtt > ewma.cost {
            ewma.cost = rtt;
        } else {
            let w = (-elapsed / DECAY.as_secs_f64()).exp();
            ewma.cost = ewma.cost * w + rtt * (1.0 - w);
        }
    }

    /// The expected cost of sending one more request here: latency × (in flight + 1).
    pub(crate) fn load(&self, now: Instant) -> f64 {
        let ewma = self.ewma.lock().unwrap_or_else(PoisonError::into_inner);
        let cost = if ewma.cost == 0.0 {
            DEFAULT_RTT.as_nanos() as f64
        } else {
            // Decay toward zero while nothing is observed, so a slow endpoint gets probed
            // again eventually.
            let idle = now.saturating_duration_since(ewma.stamp).as_secs_f64();
            ewma.cost * (-idle / DECAY.as_secs_f64()).exp()
        };
        cost * f64::from(self.active() + 1)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}
