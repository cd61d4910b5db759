//! Fault injection: a router's `fault` delays or aborts a share of its requests, so users can
//! rehearse failures before they happen.

use std::time::Duration;

use http::HeaderMap;
use strait_config::{AbortStatus, Fault};

/// A router's fault settings, ready to roll the dice per request.
#[derive(Debug)]
pub struct FaultInjector {
    config: Fault,
}

/// What to do to one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    pub delay: Option<Duration>,
    pub abort: Option<AbortStatus>,
}

impl FaultInjector {
    pub fn new(config: &Fault) -> FaultInjector {
        FaultInjector {
            config: config.clone(),
        }
    }

    /// The faults for a request with `headers`: nothing when a `header_trigger` is set and
    /// the request lacks it; otherwise each fault by its percentage.
    pub fn decide(&self, headers: &HeaderMap) -> Injected {
        self.decide_with(headers, fastrand::f64)
    }

    fn decide_with(&self, headers: &HeaderMap, mut roll: impl FnMut() -> f64) -> Injected {
        if let Some(trigger) = &self.config.header_trigger {
            if !headers.contains_key(trigger) {
                return Injected::default();
            }
        }
        let mut hit = |percent: f64| roll() * 100.0 < percent;
        Injected {
            delay: self
                .config
                .delay
                .as_ref()
                .filter(|d| hit(d.percent))
                .map(|d| d.duration),
            abort: self
                .config
                .abort
                .as_ref()
                .filter(|a| hit(a.percent))
                .map(|a| a.status),
        }
    }
}

#[cfg(test)]
mod tests {
    use strait_config::{FaultAbort, FaultDelay};
    use strait_core::Code;

    use super::*;

    fn fault(trigger: Option<&'static str>) -> FaultInjector {
        FaultInjector::new(&Fault {
            delay: Some(FaultDelay {
                duration: Duration::from_millis(10),
                percent: 100.0,
            }),
            abort: Some(FaultAbort {
                status: AbortStatus::Grpc(Code::Unavailable),
                percent: 25.0,
            }),
            header_trigger: trigger.map(http::HeaderName::from_static),
        })
    }

    #[test]
    fn percentages_decide() {
        let f = fault(None);
        let low = f.decide_with(&HeaderMap::new(), || 0.1);
        assert_eq!(low.delay, Some(Duration::from_millis(10)));
        assert_eq!(low.abort, Some(AbortStatus::Grpc(Code::Unavailable)));
        let high = f.decide_with(&HeaderMap::new(), || 0.3);
        assert_eq!(high.abort, None);
        let aborted = (0..4000)
            .filter(|_| f.decide(&HeaderMap::new()).abort.is_some())
            .count();
        assert!((800..1200).contains(&aborted), "{aborted} of 4000 at 25%");
    }

    #[test]
    fn a_trigger_header_limits_faults_to_its_requests() {
        let f = fault(Some("x-fault"));
        assert_eq!(f.decide(&HeaderMap::new()), Injected::default());
        let mut headers = HeaderMap::new();
        headers.insert("x-fault", http::HeaderValue::from_static("1"));
        assert_eq!(f.decide(&headers).delay, Some(Duration::from_millis(10)));
    }
}
