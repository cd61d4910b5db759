//! Metric families of the resilience layers: retries, outlier ejections, health checks,
//! circuit breakers, rejections, fallbacks, injected faults and quiet streams cut.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Metrics;

#[derive(Default)]
pub(super) struct Families {
    retries: Family<RouterReasonLabels, Counter>,
    retry_budget_exhausted: Family<RouterLabels, Counter>,
    ejections: Family<EndpointLabels, Counter>,
    endpoint_healthy: Family<EndpointLabels, Gauge>,
    health_checks: Family<HealthLabels, Counter>,
    breaker_state: Family<RouterLabels, Gauge>,
    breaker_transitions: Family<TransitionLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
    fallbacks: Family<RouterReasonLabels, Counter>,
    faults: Family<RouterReasonLabels, Counter>,
    stream_idle_timeouts: Family<RouterLabels, Counter>,
    tls_faults: Family<EntrypointFaultLabels, Counter>,
    upstream_tls_faults: Family<ServiceFaultLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouterLabels {
    router: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouterReasonLabels {
    router: Arc<str>,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    service: Arc<str>,
    endpoint: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabels {
    service: Arc<str>,
    endpoint: Arc<str>,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    router: Arc<str>,
    to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EntrypointFaultLabels {
    entrypoint: Arc<str>,
    fault: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceFaultLabels {
    service: Arc<str>,
    fault: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    service: Arc<str>,
    reason: &'static str,
}

/// A route breaker's state as `strait_circuit_breaker_state` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

// === impl Families ===

impl Families {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "retries",
            "Requests sent again, by router and why",
            self.retries.clone(),
        );
        registry.register(
            "retry_budget_exhausted",
            "Retries not made because the router's retry budget was spent",
            self.retry_budget_exhausted.clone(),
        );
        registry.register(
            "outlier_ejections",
            "Endpoints ejected by outlier detection",
            self.ejections.clone(),
        );
        registry.register(
            "endpoint_healthy",
            "1 while an endpoint passes its active health checks, 0 while it fails them",
            self.endpoint_healthy.clone(),
        );
        registry.register(
            "health_checks",
            "Active health checks, by result (pass, fail)",
            self.health_checks.clone(),
        );
        registry.register(
            "circuit_breaker_state",
            "A router's circuit breaker: 0 closed, 1 open, 2 half-open",
            self.breaker_state.clone(),
        );
        registry.register(
            "circuit_breaker_transitions",
            "Circuit breaker state changes, by the state entered",
            self.breaker_transitions.clone(),
        );
        registry.register(
            "rejected_requests",
            "Requests strait turned away itself, by service and the limit that did it",
            self.rejected.clone(),
        );
        registry.register(
            "fallback",
            "Requests answered by a router's fallback, by why",
            self.fallbacks.clone(),
        );
        registry.register(
            "faults_injected",
            "Faults injected by a router's `fault` (delay, abort)",
            self.faults.clone(),
        );
        registry.register(
            "stream_idle_timeouts",
            "Streams ended by a router's `stream_idle_timeout`: no DATA either way for that long",
            self.stream_idle_timeouts.clone(),
        );
        registry.register(
            "tls_faults_injected",
            "Client TLS handshakes delayed by an entrypoint's `tls.fault`",
            self.tls_faults.clone(),
        );
        registry.register(
            "upstream_tls_faults_injected",
            "Upstream TLS handshakes delayed or aborted by a service's `tls.fault`",
            self.upstream_tls_faults.clone(),
        );
    }
}

// === impl Metrics ===

impl Metrics {
    /// A request on `router` is sent again because of `reason` (a `retry_on` name).
    pub fn retried(&self, router: &Arc<str>, reason: &'static str) {
        self.resilience()
            .retries
            .get_or_create(&RouterReasonLabels {
                router: router.clone(),
                reason,
            })
            .inc();
    }

    pub fn retry_budget_exhausted(&self, router: &Arc<str>) {
        self.resilience()
            .retry_budget_exhausted
            .get_or_create(&RouterLabels {
                router: router.clone(),
            })
            .inc();
    }

    pub fn outlier_ejected(&self, service: &Arc<str>, endpoint: &Arc<str>) {
        self.resilience()
            .ejections
            .get_or_create(&EndpointLabels {
                service: service.clone(),
                endpoint: endpoint.clone(),
            })
            .inc();
    }

    /// An active health check ended; `healthy` is the endpoint's state after it.
    pub fn health_checked(
        &self,
        service: &Arc<str>,
        endpoint: &Arc<str>,
        passed: bool,
        healthy: bool,
    ) {
        let families = self.resilience();
        let result = if passed { "pass" } else { "fail" };
        families
            .health_checks
            .get_or_create(&HealthLabels {
                service: service.clone(),
                endpoint: endpoint.clone(),
                result,
            })
            .inc();
        families
            .endpoint_healthy
            .get_or_create(&EndpointLabels {
                service: service.clone(),
                endpoint: endpoint.clone(),
            })
            .set(i64::from(healthy));
    }

    /// A router's breaker entered `state` (`counted`: as a transition, not the initial one).
    pub fn breaker_state(&self, router: &Arc<str>, state: BreakerState, counted: bool) {
        let families = self.resilience();
        families
            .breaker_state
            .get_or_create(&RouterLabels {
                router: router.clone(),
            })
            .set(state as i64);
        if counted {
            let to = match state {
                BreakerState::Closed => "closed",
                BreakerState::Open => "open",
                BreakerState::HalfOpen => "half_open",
            };
            families
                .breaker_transitions
                .get_or_create(&TransitionLabels {
                    router: router.clone(),
                    to,
                })
                .inc();
        }
    }

    /// strait turned a request for `service` away: `reason` names the limit.
    pub fn rejected(&self, service: &Arc<str>, reason: &'static str) {
        self.resilience()
            .rejected
            .get_or_create(&RejectLabels {
                service: service.clone(),
                reason,
            })
            .inc();
    }

    pub fn fallback(&self, router: &Arc<str>, reason: &'static str) {
        self.resilience()
            .fallbacks
            .get_or_create(&RouterReasonLabels {
                router: router.clone(),
                reason,
            })
            .inc();
    }

    pub fn fault_injected(&self, router: &Arc<str>, kind: &'static str) {
        self.resilience()
            .faults
            .get_or_create(&RouterReasonLabels {
                router: router.clone(),
                reason: kind,
            })
            .inc();
    }

    /// A stream on `router` had no DATA either way for its `stream_idle_timeout`.
    pub fn stream_idle_timeout(&self, router: &Arc<str>) {
        self.resilience()
            .stream_idle_timeouts
            .get_or_create(&RouterLabels {
                router: router.clone(),
            })
            .inc();
    }

    /// A client handshake on `entrypoint` got an injected `fault` (`delay`).
    pub fn tls_fault_injected(&self, entrypoint: &Arc<str>, fault: &'static str) {
        self.resilience()
            .tls_faults
            .get_or_create(&EntrypointFaultLabels {
                entrypoint: entrypoint.clone(),
                fault,
            })
            .inc();
    }

    /// A handshake to one of `service`'s https:// servers got an injected `fault`
    /// (`delay`, `abort`).
    pub fn upstream_tls_fault_injected(&self, service: &Arc<str>, fault: &'static str) {
        self.resilience()
            .upstream_tls_faults
            .get_or_create(&ServiceFaultLabels {
                service: service.clone(),
                fault,
            })
            .inc();
    }
}
