//! The validated resilience settings: how a service balances and watches its endpoints, and
//! what a router does about failures (retries, breaker, fallback, fault injection).

use std::time::Duration;

use indexmap::IndexMap;
use strait_core::Code;

/// How a service picks an endpoint for each request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LoadBalancer {
    /// Power of two choices over peak-EWMA latency times outstanding requests (the default).
    #[default]
    P2c,
    /// Equal turns, weights not allowed.
    RoundRobin,
    /// Smooth weighted round robin by `weight`.
    Weighted,
    /// The endpoint with the fewest requests in flight per unit of weight.
    LeastRequest,
    /// Consistent hashing (a ring), so one key keeps reaching one endpoint.
    Hash(HashOn),
}

/// What a `hash` balancer hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashOn {
    /// A request header's value; requests without it get a random endpoint.
    Header(http::HeaderName),
    /// The client's IP address.
    ClientIp,
}

/// Active health checks of a service's endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    /// Default 10s.
    pub interval: Duration,
    /// Default 1s; less than the interval.
    pub timeout: Duration,
    /// Passes in a row before an unhealthy endpoint comes back. Default 2.
    pub healthy_threshold: u32,
    /// Failures in a row before a healthy endpoint leaves the rotation. Default 3.
    pub unhealthy_threshold: u32,
    /// Up to this much random time added to each interval, so checks of many strait
    /// instances spread out. Default 0.
    pub jitter: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// `grpc.health.v1.Health/Check` for `service` ("" asks about the whole server); SERVING
    /// passes.
    Grpc { service: String },
    /// `GET path`; a status in `expected_status` passes.
    Http {
        path: String,
        expected_status: Vec<u16>,
    },
    /// A TCP connection that opens passes.
    Tcp,
}

/// What a service does when no endpoint is healthy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PanicMode {
    /// Balance across all endpoints as if all were healthy (the default, like Envoy's panic
    /// threshold): better a chance than certain failure.
    #[default]
    TryAll,
    /// Answer UNAVAILABLE / 503 at once.
    FailFast,
}

/// Passive outlier detection: endpoints whose real requests fail are ejected for a while.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Default true.
    pub enabled: bool,
    /// Failures in a row that eject an endpoint. Default 5; `None`: off.
    pub consecutive_failures: Option<u32>,
    /// Failure rate over a window that ejects an endpoint; `None`: off.
    pub failure_rate: Option<FailureRate>,
    /// The first ejection lasts this long; each repeat adds as much again. Default 30s.
    pub base_ejection_time: Duration,
    /// Ejections never last longer. Default 300s.
    pub max_ejection_time: Duration,
    /// At most this share of the endpoints is ejected at once. Default 50.
    pub max_ejection_percent: u32,
    /// gRPC statuses that count as failures (read from trailers and trailers-only
    /// responses). Default UNAVAILABLE, INTERNAL, UNKNOWN, DATA_LOSS.
    pub grpc_statuses: Vec<Code>,
}

/// Failures per requests over a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureRate {
    /// Percent of requests (1..=100) that must fail. Default 50.
    pub percent: u32,
    /// Fewer requests in the window decide nothing. Default 20.
    pub minimum_requests: u32,
    /// Default 10s.
    pub window: Duration,
}

/// The connection and request layers of a service's circuit breakers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceLimits {
    /// Connections per endpoint; requests wait for a stream (HTTP/2) or a connection
    /// (HTTP/1.1) when all are busy. `None`: no limit.
    pub max_connections: Option<u32>,
    /// Requests waiting for a stream or connection per endpoint; more are rejected. Only with
    /// `max_connections`. `None`: no limit.
    pub max_pending: Option<u32>,
    /// Requests in flight across the service. `None`: no limit.
    pub max_requests: Option<u32>,
    pub traffic_classes: Option<TrafficClasses>,
}

/// Per-class request limits, so one class's overload never rejects another's requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficClasses {
    /// The request header naming the class. Default `x-traffic-class`.
    pub header: http::HeaderName,
    /// The class of requests without the header (or naming no defined class); one of
    /// `classes`. Default: the last class.
    pub default: String,
    /// Class name to the requests it may have in flight, in file order.
    pub classes: IndexMap<String, u32>,
}

/// What a router retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first one included; 1..=10. Default 3.
    pub attempts: u32,
    /// Default `[connect-failure, refused-stream, unavailable]`.
    pub retry_on: Vec<RetryOn>,
    /// Full-jitter exponential backoff: the n-th retry waits a random time up to
    /// min(max, base × 2^n). Defaults 25ms and 250ms.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Each try's own deadline; never past the request's. `None`: none.
    pub per_try_timeout: Option<Duration>,
    /// Retries in flight may be at most this percent of requests in flight... Default 20.
    pub budget_percent: u32,
    /// ...plus this many. Default 3.
    pub budget_min: u32,
    /// Request body bytes kept for replay; a request whose body grows past it is not
    /// retried. Default 64KiB.
    pub buffer: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryOn {
    /// The connection could not be made (nothing was sent).
    ConnectFailure,
    /// REFUSED_STREAM or above a GOAWAY's last stream id (the backend never saw it).
    RefusedStream,
    /// The backend reset the stream or closed the connection before answering.
    Reset,
    /// grpc-status UNAVAILABLE in the response headers (trailers-only).
    Unavailable,
    /// grpc-status RESOURCE_EXHAUSTED in the response headers.
    ResourceExhausted,
    /// An HTTP 5xx (non-gRPC requests).
    Http5xx,
}

/// A router's error-rate breaker: closed, open, then half-open with a few probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteBreaker {
    /// Percent of failed requests in the window that opens the breaker. Default 50.
    pub failure_percent: u32,
    /// Fewer requests in the window never open it. Default 20.
    pub minimum_requests: u32,
    /// Default 10s.
    pub window: Duration,
    /// How long it stays open before probing. Default 30s.
    pub open_for: Duration,
    /// Probe requests let through when half-open; all must succeed to close. Default 5.
    pub half_open_requests: u32,
    /// Statuses that count as failures. Default UNAVAILABLE, INTERNAL, UNKNOWN, DATA_LOSS.
    pub grpc_statuses: Vec<Code>,
}

/// What a router answers when strait itself turns a request away (breaker open, no healthy
/// endpoint, a request or class limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// A trailers-only gRPC response (gRPC requests) or, for other requests, HTTP 503 with
    /// the message.
    Grpc { status: Code, message: String },
    /// An HTTP response (to gRPC requests too, as the status mapped to a gRPC code).
    Http { status: u16, body: String },
    /// Send the request to this service instead.
    Service(String),
}

/// Injected failures, to rehearse them.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
    /// Only requests carrying this header are faulted. `None`: all requests.
    pub header_trigger: Option<http::HeaderName>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FaultDelay {
    pub duration: Duration,
    /// 0..=100, fractions allowed.
    pub percent: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FaultAbort {
    pub status: AbortStatus,
    pub percent: f64,
}

/// Injected upstream TLS handshake faults (`tls.fault` of a service), to rehearse what chaos
/// tools do to TLS. Each handshake rolls for each fault on its own; a delayed one may then
/// be aborted too. At least one is present.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsFault {
    /// Handshakes that fail as a real handshake failure does.
    pub abort: Option<TlsFaultAbort>,
    /// Handshakes that wait `duration` first, within the service's `connect_timeout`.
    pub delay: Option<FaultDelay>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TlsFaultAbort {
    /// 0..=100, fractions allowed.
    pub percent: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortStatus {
    Grpc(Code),
    Http(u16),
}

/// The gRPC statuses that count as failures unless configured otherwise.
pub const DEFAULT_FAILURE_STATUSES: [Code; 4] = [
    Code::Unavailable,
    Code::Internal,
    Code::Unknown,
    Code::DataLoss,
];

// === impl OutlierDetection ===

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            enabled: true,
            consecutive_failures: Some(5),
            failure_rate: None,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
            grpc_statuses: DEFAULT_FAILURE_STATUSES.to_vec(),
        }
    }
}

// === impl RetryOn ===

impl RetryOn {
    pub const ALL: [RetryOn; 6] = [
        RetryOn::ConnectFailure,
        RetryOn::RefusedStream,
        RetryOn::Reset,
        RetryOn::Unavailable,
        RetryOn::ResourceExhausted,
        RetryOn::Http5xx,
    ];

    /// As written in configs: `connect-failure`, `5xx`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            RetryOn::ConnectFailure => "connect-failure",
            RetryOn::RefusedStream => "refused-stream",
            RetryOn::Reset => "reset",
            RetryOn::Unavailable => "unavailable",
            RetryOn::ResourceExhausted => "resource-exhausted",
            RetryOn::Http5xx => "5xx",
        }
    }
}

// === impl LoadBalancer ===

impl LoadBalancer {
    pub fn as_str(&self) -> &'static str {
        match self {
            LoadBalancer::P2c => "p2c",
            LoadBalancer::RoundRobin => "round_robin",
            LoadBalancer::Weighted => "weighted",
            LoadBalancer::LeastRequest => "least_request",
            LoadBalancer::Hash(_) => "hash",
        }
    }
}
