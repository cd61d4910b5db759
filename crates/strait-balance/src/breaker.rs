//! A router's error-rate circuit breaker: closed until the failure rate over a window
//! crosses the threshold, then open (requests rejected) for `open_for`, then half-open: a
//! few probe requests go through, and if all succeed it closes, else it opens again.

use std::sync::{Arc, Mutex, PoisonError};

use strait_config::RouteBreaker as Config;
use strait_telemetry::{BreakerState, Metrics};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::outcome::Verdict;
use crate::window::Window;

#[derive(Debug)]
pub struct RouteBreaker {
    router: Arc<str>,
    config: Config,
    state: Mutex<State>,
    metrics: Metrics,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    window: Window,
}

#[derive(Debug)]
enum Mode {
    Closed,
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

/// A request let through the breaker; its verdict goes back through [`RouteBreaker::record`].
/// Dropped without a verdict (the client went away first), it counts as neutral, so a
/// half-open breaker gets its probe slot back.
#[derive(Debug)]
pub struct Ticket {
    breaker: Arc<RouteBreaker>,
    probe: bool,
    open: bool,
}

// === impl RouteBreaker ===

impl RouteBreaker {
    pub fn new(router: Arc<str>, config: &Config, metrics: &Metrics) -> RouteBreaker {
        metrics.breaker_state(&router, BreakerState::Closed, false);
        RouteBreaker {
            state: Mutex::new(State {
                mode: Mode::Closed,
                window: Window::new(config.window, Instant::now()),
            }),
            router,
            config: config.clone(),
            metrics: metrics.clone(),
        }
    }

    pub fn failing_statuses(&self) -> &[strait_core::Code] {
        &self.config.grpc_statuses
    }

    /// Lets a request through, or `None` while open (or half-open with all probes out).
    pub fn admit(self: &Arc<Self>) -> Option<Ticket> {
        let ticket = |probe| Ticket {
            breaker: self.clone(),
            probe,
            open: true,
        };
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.mode {
            Mode::Closed => Some(ticket(false)),
            Mode::Open { until } if now < until => None,
            Mode::Open { .. } => {
                state.mode = Mode::HalfOpen {
                    admitted: 1,
                    succeeded: 0,
                };
                self.changed(BreakerState::HalfOpen, "probing with a few requests");
                Some(ticket(true))
            }
            Mode::HalfOpen {
                ref mut admitted, ..
            } => {
                if *admitted < self.config.half_open_requests {
                    *admitted += 1;
                    Some(ticket(true))
                } else {
                    None
                }
            }
        }
    }

    /// A request let through by `ticket` ended with `verdict`.
    pub fn record(&self, mut ticket: Ticket, verdict: Verdict) {
        ticket.open = false;
        if verdict == Verdict::Neutral {
            self.release(ticket.probe);
            return;
        }
        let now = Instant::now();
        let failed = verdict == Verdict::Failure;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut state.mode {
            Mode::Closed => {
                state.window.record(failed, now);
                let (requests, failures) = state.window.totals(now);
                if requests >= self.config.minimum_requests
                    && u64::from(failures) * 100
                        >= u64::from(self.config.failure_percent) * u64::from(requests)
                {
                    state.mode = Mode::Open {
                        until: now + self.config.open_for,
                    };
                    state.window.clear();
                    self.changed(
                        BreakerState::Open,
                        &format!(
                            "{failures} of {requests} requests failed within {:?}; rejecting requests for {:?}",
                            self.config.window, self.config.open_for
                        ),
                    );
                }
            }
            Mode::HalfOpen { succeeded, .. } if ticket.probe => {
                if failed {
                    state.mode = Mode::Open {
                        until: now + self.config.open_for,
                    };
                    self.changed(BreakerState::Open, "a probe request failed");
                } else {
                    *succeeded += 1;
                    if *succeeded >= self.config.half_open_requests {
                        state.mode = Mode::Closed;
                        state.window.clear();
                        self.changed(BreakerState::Closed, "every probe request succeeded");
                    }
                }
            }
            // Requests admitted before the breaker opened, ending late, decide nothing.
            _ => {}
        }
    }

    /// A probe that says nothing frees its slot for another.
    fn release(&self, probe: bool) {
        if probe {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if let Mode::HalfOpen { admitted, .. } = &mut state.mode {
                *admitted = admitted.saturating_sub(1);
            }
        }
    }

    pub fn state(&self) -> BreakerState {
        match self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .mode
        {
            Mode::Closed => BreakerState::Closed,
            Mode::Open { .. } => BreakerState::Open,
            Mode::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn changed(&self, to: BreakerState, why: &str) {
        self.metrics.breaker_state(&self.router, to, true);
        match to {
            BreakerState::Open => {
                warn!(router = %self.router, "circuit breaker opened: {why}");
            }
            BreakerState::HalfOpen => {
                info!(router = %self.router, "circuit breaker half-open: {why}")
            }
            BreakerState::Closed => info!(router = %self.router, "circuit breaker closed: {why}"),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.open {
            self.breaker.release(self.probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config() -> Config {
        Config {
            failure_percent: 50,
            minimum_requests: 4,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(30),
            half_open_requests: 2,
            grpc_statuses: strait_config::DEFAULT_FAILURE_STATUSES.to_vec(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_half_opens_and_closes() {
        let breaker = Arc::new(RouteBreaker::new("r".into(), &config(), &Metrics::new()));
        // Three failures of three: below minimum_requests, still closed.
        for _ in 0..3 {
            let t = breaker.admit().unwrap();
            breaker.record(t, Verdict::Failure);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        let t = breaker.admit().unwrap();
        breaker.record(t, Verdict::Success);
        assert_eq!(breaker.state(), BreakerState::Open, "3 of 4 failed");
        assert!(breaker.admit().is_none());

        tokio::time::advance(Duration::from_secs(31)).await;
        let a = breaker.admit().unwrap();
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let b = breaker.admit().unwrap();
        assert!(breaker.admit().is_none(), "only two probes");
        breaker.record(a, Verdict::Success);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.record(b, Verdict::Success);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_again() {
        let breaker = Arc::new(RouteBreaker::new("r".into(), &config(), &Metrics::new()));
        for _ in 0..4 {
            let t = breaker.admit().unwrap();
            breaker.record(t, Verdict::Failure);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(31)).await;
        let probe = breaker.admit().unwrap();
        // A neutral probe frees its slot.
        breaker.record(probe, Verdict::Neutral);
        let a = breaker.admit().unwrap();
        let _b = breaker.admit().unwrap();
        breaker.record(a, Verdict::Failure);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.admit().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_whose_client_left_frees_its_slot() {
        let breaker = Arc::new(RouteBreaker::new("r".into(), &config(), &Metrics::new()));
        for _ in 0..4 {
            let t = breaker.admit().unwrap();
            breaker.record(t, Verdict::Failure);
        }
        tokio::time::advance(Duration::from_secs(31)).await;
        let a = breaker.admit().unwrap();
        let b = breaker.admit().unwrap();
        assert!(breaker.admit().is_none());
        drop(a);
        let c = breaker
            .admit()
            .expect("the dropped probe's slot is free again");
        breaker.record(b, Verdict::Success);
        breaker.record(c, Verdict::Success);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn successes_keep_it_closed() {
        let breaker = Arc::new(RouteBreaker::new("r".into(), &config(), &Metrics::new()));
        for i in 0..100 {
            let t = breaker.admit().unwrap();
            breaker.record(
                t,
                if i % 3 == 2 {
                    Verdict::Failure
                } else {
                    Verdict::Success
                },
            );
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
