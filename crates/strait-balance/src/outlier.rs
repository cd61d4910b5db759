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

#[cfg(test)]
mod tests {
    use strait_config::FailureRate;

    use super::*;

    fn states(n: usize) -> Vec<Arc<EndpointState>> {
        (0..n)
            .map(|_| Arc::new(EndpointState::new(Instant::now())))
            .collect()
    }

    fn fail(outlier: &Outlier, states: &[Arc<EndpointState>], index: usize, times: u32) {
        let name: Arc<str> = "s".into();
        for _ in 0..times {
            outlier.record(
                states,
                index,
                Verdict::Failure,
                Instant::now(),
                (&name, &name),
                &Metrics::new(),
            );
        }
    }

    fn ejected(outlier: &Outlier, states: &[Arc<EndpointState>]) -> Vec<bool> {
        let now = outlier.nanos(Instant::now());
        states.iter().map(|s| s.is_ejected(now)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn ejections_grow_with_repeats_and_end_by_themselves() {
        let config = OutlierDetection {
            consecutive_failures: Some(3),
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
            ..OutlierDetection::default()
        };
        let outlier = Outlier::new(&config, Instant::now());
        let s = states(2);
        fail(&outlier, &s, 0, 2);
        assert_eq!(ejected(&outlier, &s), [false, false]);
        fail(&outlier, &s, 0, 1);
        assert_eq!(ejected(&outlier, &s), [true, false]);

        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(ejected(&outlier, &s), [false, false], "back after 10s");
        fail(&outlier, &s, 0, 3);
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(
            ejected(&outlier, &s),
            [true, false],
            "the second ejection lasts 20s"
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(ejected(&outlier, &s), [false, false]);
        // A third: capped at max_ejection_time.
        fail(&outlier, &s, 0, 3);
        tokio::time::advance(Duration::from_secs(24)).await;
        assert_eq!(ejected(&outlier, &s), [true, false]);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(ejected(&outlier, &s), [false, false]);
    }

    #[tokio::test(start_paused = true)]
    async fn successes_reset_the_count_and_the_cap_keeps_some_in() {
        let config = OutlierDetection {
            consecutive_failures: Some(2),
            max_ejection_percent: 50,
            ..OutlierDetection::default()
        };
        let outlier = Outlier::new(&config, Instant::now());
        let s = states(3);
        let name: Arc<str> = "s".into();
        fail(&outlier, &s, 0, 1);
        outlier.record(
            &s,
            0,
            Verdict::Success,
            Instant::now(),
            (&name, &name),
            &Metrics::new(),
        );
        fail(&outlier, &s, 0, 1);
        assert_eq!(ejected(&outlier, &s), [false, false, false]);
        fail(&outlier, &s, 0, 1);
        fail(&outlier, &s, 1, 2);
        fail(&outlier, &s, 2, 2);
        // 50% of 3: one endpoint at most.
        assert_eq!(ejected(&outlier, &s), [true, false, false]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_rate_over_the_window_ejects() {
        let config = OutlierDetection {
            consecutive_failures: None,
            failure_rate: Some(FailureRate {
                percent: 50,
                minimum_requests: 10,
                window: Duration::from_secs(10),
            }),
            ..OutlierDetection::default()
        };
        let outlier = Outlier::new(&config, Instant::now());
        let s = states(2);
        let name: Arc<str> = "s".into();
        for i in 0..10 {
            let verdict = if i % 2 == 0 {
                Verdict::Failure
            } else {
                Verdict::Success
            };
            assert_eq!(ejected(&outlier, &s), [false, false], "request {i}");
            outlier.record(
                &s,
                0,
                verdict,
                Instant::now(),
                (&name, &name),
                &Metrics::new(),
            );
        }
        assert_eq!(ejected(&outlier, &s), [true, false], "5 of 10 failed");
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_or_neutral_never_ejects() {
        let s = states(2);
        let off = Outlier::new(
            &OutlierDetection {
                enabled: false,
                ..OutlierDetection::default()
            },
            Instant::now(),
        );
        fail(&off, &s, 0, 100);
        assert_eq!(ejected(&off, &s), [false, false]);
        let on = Outlier::new(&OutlierDetection::default(), Instant::now());
        let name: Arc<str> = "s".into();
        for _ in 0..100 {
            on.record(
                &s,
                0,
                Verdict::Neutral,
                Instant::now(),
                (&name, &name),
                &Metrics::new(),
            );
        }
        assert_eq!(ejected(&on, &s), [false, false]);
    }
}
