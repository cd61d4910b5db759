//! Endpoint sets, load balancing, active and passive health, circuit breakers and retries.
//! Every request (HTTP/2 stream) is balanced on its own.

mod balancer;
mod breaker;
mod call;
mod deadline;
mod health;
mod idle;
mod limits;
mod outcome;
mod outlier;
mod replay;
mod retry;
mod state;
mod window;

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use strait_config::{HashOn, PanicMode};
use strait_core::{ErrorKind, ProxyError, Side};
use strait_telemetry::Metrics;
use strait_upstream::Endpoint;
use tokio::time::Instant;

pub use breaker::{RouteBreaker, Ticket};
pub use call::{CallContext, Completion, Failure};
pub use deadline::Deadline;
pub use idle::StreamIdle;
pub use limits::Admission;
pub use outcome::{of_ending, of_error, Ending, Verdict};
pub use replay::{Replay, ReplayBody};
pub use retry::{Active, Retries};
pub use state::EndpointState;

use crate::balancer::Balancer;
use crate::limits::RequestLimits;
use crate::outlier::Outlier;

/// Endpoints up to this many are chosen among without allocating.
const INLINE_ENDPOINTS: usize = 32;

/// A service's endpoints and everything that decides which one a request goes to.
#[derive(Debug)]
pub struct Service {
    name: Arc<str>,
    endpoints: Vec<Arc<Endpoint>>,
    states: Vec<Arc<EndpointState>>,
    weights: Vec<u32>,
    balancer: Balancer,
    hash_on: Option<HashOn>,
    panic_mode: PanicMode,
    outlier: Outlier,
    limits: RequestLimits,
    metrics: Metrics,
    /// Stops the active health checks when the service is dropped (a reload replaced it).
    _health: health::Checks,
}

/// The endpoint a request goes to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pick {
    index: usize,
    /// When it was picked: the try starts then. `nanos` is the same instant as the
    /// service's epoch counts it.
    at: Instant,
    nanos: u64,
}

// === impl Service ===

impl Service {
    /// `endpoints` are the service's servers, in `config.servers` order, ready to connect
    /// (the caller gives them their TLS). Active health checks start here, so this runs
    /// inside the runtime.
    pub fn new(
        name: &str,
        config: &strait_config::Service,
        endpoints: Vec<Arc<Endpoint>>,
        metrics: &Metrics,
    ) -> Service {
        let name: Arc<str> = Arc::from(name);
        let now = Instant::now();
        let states: Vec<_> = endpoints
            .iter()
            .map(|_| Arc::new(EndpointState::new(now)))
            .collect();
        let weights: Vec<u32> = config.servers.iter().map(|s| s.weight).collect();
        let hash_on = match &config.load_balancer {
            strait_config::LoadBalancer::Hash(on) => Some(on.clone()),
            _ => None,
        };
        let health = health::Checks::start(
            &name,
            config.health_check.as_ref(),
            &endpoints,
            &states,
            metrics,
        );
        Service {
            balancer: Balancer::new(&config.load_balancer, &weights),
            hash_on,
            panic_mode: config.panic_mode,
            outlier: Outlier::new(&config.outlier_detection, now),
            limits: RequestLimits::new(&config.limits),
            metrics: metrics.clone(),
            _health: health,
            name,
            endpoints,
            states,
            weights,
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// What the balancer knows of each endpoint, in `endpoints` order.
    pub fn endpoint_states(&self) -> &[Arc<EndpointState>] {
        &self.states
    }

    /// Whether outlier detection has endpoint `index` ejected right now.
    pub fn is_ejected(&self, index: usize) -> bool {
        let now = self.outlier.nanos(Instant::now());
        self.states.get(index).is_some_and(|s| s.is_ejected(now))
    }

    /// The request's key for a `hash` balancer: its header's value or the client's address.
    pub fn hash_key(&self, headers: &HeaderMap, client: IpAddr) -> Option<u64> {
        match self.hash_on.as_ref()? {
            HashOn::Header(name) => headers.get(name).map(|v| balancer::hash_key(v.as_bytes())),
            HashOn::ClientIp => Some(match client {
                IpAddr::V4(ip) => balancer::hash_key(&ip.octets()),
                IpAddr::V6(ip) => balancer::hash_key(&ip.octets()),
            }),
        }
    }

    /// Picks an endpoint for a request, avoiding those in `tried` when another will do.
    pub(crate) fn pick(&self, key: Option<u64>, tried: &[usize]) -> Result<Pick, ProxyError> {
        let n = self.endpoints.len();
        if n == 0 {
            return Err(ProxyError::new(
                ErrorKind::NoEndpoint,
                Side::Proxy,
                format!("service `{}` has no endpoint", self.name),
            ));
        }
        let now = Instant::now();
        let nanos = self.outlier.nanos(now);
        let mut inline = [0u32; INLINE_ENDPOINTS];
        let mut heap = Vec::new();
        let buffer: &mut [u32] = if n <= INLINE_ENDPOINTS {
            &mut inline[..n]
        } else {
            heap.resize(n, 0);
            &mut heap
        };
        let usable = |i: usize| self.states[i].is_healthy() && !self.states[i].is_ejected(nanos);
        let mut len = fill(buffer, n, |i| usable(i) && !tried.contains(&i));
        if len == 0 {
            len = fill(buffer, n, usable);
        }
        if len == 0 {
            match self.panic_mode {
                PanicMode::FailFast => {
                    return Err(ProxyError::new(
                        ErrorKind::Overloaded,
                        Side::Proxy,
                        format!(
                            "no healthy endpoint in service `{}` (panic_mode: fail_fast)",
                            self.name
                        ),
                    ));
                }
                PanicMode::TryAll => {
                    len = fill(buffer, n, |i| !tried.contains(&i));
                    if len == 0 {
                        len = fill(buffer, n, |_| true);
                    }
                }
            }
        }
        let picked = self
            .balancer
            .pick(&self.states, &self.weights, &buffer[..len], key, nanos);
        Ok(Pick {
            index: picked as usize,
            at: now,
            nanos,
        })
    }
}

/// Writes the indexes `0..n` that pass `keep` to the front of `buffer`; returns how many.
fn fill(buffer: &mut [u32], n: usize, keep: impl Fn(usize) -> bool) -> usize {
    let mut len = 0;
    for i in 0..n {
        if keep(i) {
            buffer[len] = i as u32;
            len += 1;
        }
    }
    len
}
