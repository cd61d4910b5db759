//! Passive outlier detection: endpoints whose real requests fail are ejected for a time that
//! grows with each repeat, never more than `max_ejection_percent` of them at once.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use strait_config::OutlierDetection;
use strait_telemetry::Metrics;
use tokio::time::Instant;
use tracing::warn;

use crate::outcome::Verdict;
use crate::state::EndpointState;
use crate::window::Window;

#[derive(Debug)]
pub(crate) struct Outlier {
    config: OutlierDetection,
    /// Ejection deadlines are kept as nanoseconds since this instant, so a pick reads one
    /// atomic per endpoint.
    epoch: Instant,
}

impl Outlier {
    pub(crate) fn new(config: &OutlierDetection, epoch: Instant) -> Outlier {
        Outlier {
            config: config.clone(),
            epoch,
        }
    }

    pub(crate) fn failing_statuses(&self) -> &[strait_core::Code] {
        &self.config.grpc_statuses
    }

    pub(crate) fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Feeds one request's verdict on endpoint `index`; ejects it when it crossed a
    /// threshold and the ejection cap allows.
    pub(crate) fn record(
        &self,
        states: &[Arc<EndpointState>],
        index: usize,
        verdict: Verdict,
        now: Instant,
        names: (&Arc<str>, &Arc<str>),
        metrics: &Metrics,
    ) {
        if !self.config.enabled || verdict == Verdict::Neutral {
            return;
        }
        let Some(state) = states.get(index) else {
            return;
        };
        let failed = verdict == Verdict::Failure;
        let mut counts = state.outlier.lock().unwrap_or_else(PoisonError::into_inner);
        counts.consecutive = if failed { counts.consecutive + 1 } else { 0 };
        let mut why = None;
        if let Some(threshold) = self.config.consecutive_failures {
            if counts.consecutive >= threshold {
                why = Some(format!("{} failures in a row", counts.consecutive));
            }
        }
        if let Some(rate) = &self.config.failure_rate {
            let window = counts
                .window
                .get_or_insert_with(|| Window::new(rate.window, now));
            window.record(failed, now);
            let (requests, failures) = window.totals(now);
            if requests >= rate.minimum_requests
                && u64::from(failures) * 100 >= u64::from(rate.percent) * u64::from(requests)
            {
                why = Some(format!(
                    "{failures} of {requests} requests failed within {:?}",
                    rate.window
                ));
            }
        }
        let Some(why) = why else {
            return;
        };
        let nanos = self.nanos(now);
        if state.is_ejected(nanos) {
            return;
        }
        let ejected = states.iter().filter(|s| s.is_ejected(nanos)).count();
        let allowed =
            (ejected + 1) * 100 <= self.config.max_ejection_percent as usize * states.len();
        if !allowed {
            return;
        }
        // Repeat offenders stay out longer; one that stayed well for a whole max ejection
        // time starts over.
        let repeat = counts.last_until.is_some_and(|until| {
            now.saturating_duration_since(until) < self.config.max_ejection_time
        });
        counts.ejections = if repeat { counts.ejections + 1 } else { 1 };
        let duration = self
            .config
            .base_ejection_time
            .saturating_mul(counts.ejections)
            .min(self.config.max_ejection_time);
        counts.consecutive = 0;
        if let Some(window) = &mut counts.window {
            window.clear();
        }
        counts.last_until = Some(now + duration);
        state.eject_until(self.nanos(now + duration));
        metrics.outlier_ejected(names.0, names.1);
        warn!(
            service = %names.0,
            endpoint = %names.1,
            "outlier detection ejected the endpoint for {}: {why}",
            humanize(duration)
        );
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
