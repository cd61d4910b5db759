//! A router at run time: the service its requests go to and the policy and filters they
//! pass on the way, resolved once per config snapshot.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use strait_balance::{Retries, RouteBreaker, Service};
use strait_grpc::Code;
use strait_http::Reply;
use strait_telemetry::Metrics;

use crate::filter::{Filter, Filters};
use crate::FaultInjector;

/// What a request matched by one router goes through.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub service: Arc<Service>,
    /// The router's `timeout`: the deadline of requests without a sooner `grpc-timeout`.
    pub timeout: Option<Duration>,
    pub retries: Retries,
    pub breaker: Option<Arc<RouteBreaker>>,
    pub fallback: Option<Fallback>,
    /// The router's traffic class, over the one the request's header names.
    pub class: Option<String>,
    pub stream_idle_timeout: Option<Duration>,
    pub filters: Filters,
}

/// Who answers a request strait turned away (a limit, an open breaker, no healthy endpoint).
#[derive(Debug)]
pub enum Fallback {
    Grpc(Code, String),
    Http(StatusCode, String),
    Service(Arc<Service>),
}

// === impl Route ===

impl Route {
    /// The runtime of router `name`; `service` finds a service by its config name. `None`
    /// when the router's service is not among them (a validated config always has it).
    pub fn new(
        name: &str,
        router: &strait_config::Router,
        service: impl Fn(&str) -> Option<Arc<Service>>,
        metrics: &Metrics,
    ) -> Option<Route> {
        let name: Arc<str> = Arc::from(name);
        let fallback = match router.fallback.as_ref() {
            None => None,
            Some(strait_config::Fallback::Grpc { status, message }) => {
                Some(Fallback::Grpc(*status, message.clone()))
            }
            Some(strait_config::Fallback::Http { status, body }) => Some(Fallback::Http(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                body.clone(),
            )),
            Some(strait_config::Fallback::Service(fallback)) => {
                service(fallback).map(Fallback::Service)
            }
        };
        let filters = router
            .fault
            .as_ref()
            .map(|fault| Filter::Fault(FaultInjector::new(fault)))
            .into_iter()
            .collect();
        Some(Route {
            service: service(&router.service)?,
            timeout: router.timeout,
            retries: Retries::new(router.retry.as_ref()),
            breaker: router
                .circuit_breaker
                .as_ref()
                .map(|b| Arc::new(RouteBreaker::new(name.clone(), b, metrics))),
            fallback,
            class: router.traffic_class.clone(),
            stream_idle_timeout: router.stream_idle_timeout,
            filters: Filters::new(filters),
            name,
        })
    }

    /// The fallback for a request `current` turned away, if another answer is left: a
    /// fallback service that itself turns the request away answers with its error.
    pub fn fallback_for(&self, current: &Arc<Service>) -> Option<&Fallback> {
        match &self.fallback {
            Some(Fallback::Service(service)) if Arc::ptr_eq(service, current) => None,
            fallback => fallback.as_ref(),
        }
    }
}

// === impl Fallback ===

impl Fallback {
    /// The reply a status fallback answers with; `None` for a fallback service.
    pub fn reply(&self) -> Option<Reply> {
        match self {
            Fallback::Grpc(code, message) => Some(Reply::Grpc(*code, message.clone())),
            Fallback::Http(status, body) => Some(Reply::Http(*status, body.clone())),
            Fallback::Service(_) => None,
        }
    }
}
