use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::record::{Protocol, RequestRecord};

mod resilience;

pub use resilience::BreakerState;

/// strait's metric families. Cheap to clone: clones share the same counters.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

/// How a TLS handshake on an entrypoint ended (the `result` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandshakeResult {
    Ok,
    /// strait turned the client down: no certificate for the SNI name, no common ALPN
    /// protocol, a client certificate that does not verify.
    Refused,
    /// The handshake broke: a TLS alert from the client, a malformed message, an I/O error.
    Failed,
    /// The client did not finish the handshake in time.
    Timeout,
}

/// Counts an open downstream connection in `strait_active_connections` until dropped.
#[must_use = "the connection counts as active until the guard is dropped"]
#[derive(Debug)]
pub struct ConnectionGuard {
    active: Gauge,
}

/// Counts an open downstream stream (request) in `strait_active_streams` until dropped.
#[must_use = "the stream counts as active until the guard is dropped"]
#[derive(Debug)]
pub struct StreamGuard {
    active: Gauge,
}

/// Counts `strait_upstream_connections_closed_total` when dropped, with the labels the
/// connection was opened with.
#[must_use = "the connection counts as closed when the guard is dropped"]
#[derive(Debug)]
pub struct UpstreamConnGuard {
    closed: Counter,
}

/// Counts an open upstream stream in `strait_upstream_active_streams` until dropped.
#[must_use = "the stream counts as active until the guard is dropped"]
#[derive(Debug)]
pub struct UpstreamStreamGuard {
    active: Gauge,
}

/// One entrypoint's `strait_active_streams` series, from [`Metrics::entrypoint_streams`].
#[derive(Clone, Debug)]
pub struct EntrypointStreams {
    active: Gauge,
}

impl EntrypointStreams {
    /// Counts a request stream active on the entrypoint until the guard drops.
    pub fn started(&self) -> StreamGuard {
        self.active.inc();
        StreamGuard {
            active: self.active.clone(),
        }
    }
}

/// One endpoint's `strait_upstream_requests_total` and `strait_upstream_active_streams`
/// series, from [`Metrics::endpoint`].
#[derive(Clone, Debug)]
pub struct EndpointMetrics {
    requests: Counter,
    active: Gauge,
}

impl EndpointMetrics {
    /// Counts a request sent to the endpoint, and the stream active until the guard drops.
    pub fn stream_started(&self) -> UpstreamStreamGuard {
        self.requests.inc();
        self.active.inc();
        UpstreamStreamGuard {
            active: self.active.clone(),
        }
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RouteProtocolLabels>,
    upstream_duration: HistogramFamily<UpstreamLabels>,
    request_bytes: Family<RouteLabels, Counter>,
    response_bytes: Family<RouteLabels, Counter>,
    active_streams: Family<EntrypointLabels, Gauge>,
    active_connections: Family<EntrypointLabels, Gauge>,
    connections: Family<EntrypointProtocolLabels, Counter>,
    upstream_opened: Family<EndpointProtocolLabels, Counter>,
    upstream_closed: Family<EndpointProtocolLabels, Counter>,
    upstream_active_streams: Family<EndpointLabels, Gauge>,
    upstream_requests: Family<EndpointLabels, Counter>,
    tls_handshakes: Family<TlsLabels, Counter>,
    config_reloads: Family<ReloadLabels, Counter>,
    config_generation: Gauge,
    access_log_dropped: Counter,
    panics: Family<RouterLabels, Counter>,
    limits_exceeded: Family<LimitLabels, Counter>,
    protocols_refused: Family<RefusalLabels, Counter>,
    grpc_names: GrpcNames,
    resilience: resilience::Families,
}

/// Interned `grpc_service` / `grpc_method` label values, keyed by the request path (always
/// `/service/method` here), so a
/// request's labels are reference-count bumps rather than new strings. The paths come from
/// clients, so the table is capped: past [`MAX_GRPC_METHODS`] distinct methods, new ones
/// are labelled [`OVERFLOW`] and the series count stays bounded.
struct GrpcNames {
    /// FNV: looked up on every gRPC request; the cap bounds what colliding paths could cost.
    names: RwLock<HashMap<Box<str>, GrpcName, fnv::FnvBuildHasher>>,
    overflow: GrpcName,
}

/// `grpc_service` and `grpc_method` label values.
type GrpcName = (Arc<str>, Arc<str>);

const MAX_GRPC_METHODS: usize = 1024;
const OVERFLOW: &str = "_other";

/// Seconds, 1 ms to 60 s; longer streams land in `+Inf`.
const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Label sets are hashed on every request, once per metric family updated, and std's
/// SipHash over each field cost more than the updates themselves. These hash their fields
/// with FNV and hand the map's hasher one `u64`. Equal label sets still hash equally; the
/// values come from the config or from capped tables ([`GrpcNames`]), so a client cannot
/// grow a bucket without bound.
macro_rules! label_hash {
    ($ty:ident { $($field:ident),* }) => {
        impl std::hash::Hash for $ty {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                let mut fnv = fnv::FnvHasher::default();
                $( std::hash::Hash::hash(&self.$field, &mut fnv); )*
                state.write_u64(std::hash::Hasher::finish(&fnv));
            }
        }
    };
}

label_hash!(RequestLabels {
    entrypoint,
    router,
    service,
    grpc_service,
    grpc_method,
    grpc_status,
    http_status,
    protocol
});
label_hash!(RouteProtocolLabels {
    entrypoint,
    router,
    service,
    protocol
});
label_hash!(RouteLabels {
    entrypoint,
    router,
    service
});
label_hash!(UpstreamLabels { service, endpoint });
label_hash!(EntrypointLabels { entrypoint });
label_hash!(EntrypointProtocolLabels {
    entrypoint,
    protocol
});
label_hash!(EndpointLabels { endpoint });
label_hash!(EndpointProtocolLabels { endpoint, protocol });

#[derive(Clone, Debug, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    entrypoint: Arc<str>,
    router: Option<Arc<str>>,
    service: Option<Arc<str>>,
    grpc_service: Option<Arc<str>>,
    grpc_method: Option<Arc<str>>,
    grpc_status: &'static str,
    http_status: Option<u16>,
    protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq, EncodeLabelSet)]
struct RouteProtocolLabels {
    entrypoint: Arc<str>,
    router: Option<Arc<str>>,
    service: Option<Arc<str>>,
    protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    entrypoint: Arc<str>,
    router: Option<Arc<str>>,
    service: Option<Arc<str>>,
}

#[derive(Clone, Debug, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    service: Arc<str>,
    endpoint: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq, EncodeLabelSet)]
struct EntrypointLabels {
    entrypoint: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq, EncodeLabelSet)]
struct EntrypointProtocolLabels {
    entrypoint: Arc<str>,
    protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq, EncodeLabelSet)]
struct EndpointProtocolLabels {
    endpoint: Arc<str>,
    protocol: Protocol,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlsLabels {
    entrypoint: Arc<str>,
    alpn: &'static str,
    version: &'static str,
    result: HandshakeResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    entrypoint: Arc<str>,
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    entrypoint: Arc<str>,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouterLabels {
    router: Option<Arc<str>>,
}

// === impl Metrics ===

impl Metrics {
    /// The `Content-Type` of [`Metrics::encode`]'s output.
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    pub fn new() -> Metrics {
        let requests = Family::default();
        let request_duration =
            HistogramFamily::new_with_constructor(duration_histogram as fn() -> _);
        let upstream_duration =
            HistogramFamily::new_with_constructor(duration_histogram as fn() -> _);
        let request_bytes = Family::default();
        let response_bytes = Family::default();
        let active_streams = Family::default();
        let active_connections = Family::default();
        let connections = Family::default();
        let upstream_opened = Family::default();
        let upstream_closed = Family::default();
        let upstream_active_streams = Family::default();
        let upstream_requests = Family::default();
        let tls_handshakes = Family::default();
        let config_reloads = Family::default();
        let config_generation = Gauge::default();
        let access_log_dropped = Counter::default();
        let panics = Family::default();
        let limits_exceeded = Family::default();
        let protocols_refused = Family::default();

        let mut registry = Registry::with_prefix("strait");
        registry.register(
            "requests",
            "Requests and gRPC streams that ended, by route and outcome",
            requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from a request's arrival to the end of its response stream",
            Unit::Seconds,
            request_duration.clone(),
        );
        registry.register_with_unit(
            "upstream_duration",
            "Time from sending a request upstream to the response head",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        registry.register_with_unit(
            "request",
            "Request body bytes received from clients",
            Unit::Bytes,
            request_bytes.clone(),
        );
        registry.register_with_unit(
            "response",
            "Response body bytes sent to clients",
            Unit::Bytes,
            response_bytes.clone(),
        );
        registry.register(
            "active_streams",
            "Requests and streams in flight",
            active_streams.clone(),
        );
        registry.register(
            "active_connections",
            "Open client connections",
            active_connections.clone(),
        );
        registry.register(
            "connections",
            "Client connections accepted",
            connections.clone(),
        );
        registry.register(
            "upstream_connections_opened",
            "Connections opened to upstream endpoints",
            upstream_opened.clone(),
        );
        registry.register(
            "upstream_connections_closed",
            "Connections to upstream endpoints that closed",
            upstream_closed.clone(),
        );
        registry.register(
            "upstream_active_streams",
            "Requests in flight to an upstream endpoint",
            upstream_active_streams.clone(),
        );
        registry.register(
            "upstream_requests",
            "Requests sent to an upstream endpoint (minus connections opened: reuse)",
            upstream_requests.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes on entrypoints, by negotiated ALPN, version and result",
            tls_handshakes.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads, by result",
            config_reloads.clone(),
        );
        registry.register(
            "config_generation",
            "Generation of the config in service; each applied load adds one",
            config_generation.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Access-log lines dropped because the writer fell behind",
            access_log_dropped.clone(),
        );
        registry.register(
            "panics",
            "Panics caught while handling a request",
            panics.clone(),
        );
        registry.register(
            "limit_exceeded",
            "Clients stopped by a limit (connection closed, GOAWAY or request refused), by limit",
            limits_exceeded.clone(),
        );
        registry.register(
            "protocol_refused",
            "Clients refused or not upgraded because the entrypoint's `protocols` leave out \
             what they spoke, by reason",
            protocols_refused.clone(),
        );

        let resilience = resilience::Families::default();
        resilience.register(&mut registry);

        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                request_duration,
                upstream_duration,
                request_bytes,
                response_bytes,
                active_streams,
                active_connections,
                connections,
                upstream_opened,
                upstream_closed,
                upstream_active_streams,
                upstream_requests,
                tls_handshakes,
                config_reloads,
                config_generation,
                access_log_dropped,
                panics,
                limits_exceeded,
                protocols_refused,
                grpc_names: GrpcNames::new(),
                resilience,
            }),
        }
    }

    /// All families as OpenMetrics text, ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // The encoder fails only when its writer does, and writing to a String never fails.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }

    /// Counts one finished request or stream: `strait_requests_total`,
    /// `strait_request_duration_seconds` and the body byte counters. `grpc_service` and
    /// `grpc_method` are set only for routed gRPC requests, so unmatched paths sent by
    /// clients do not each become a series.
    pub fn record_request(&self, record: &RequestRecord) {
        let inner = &*self.inner;
        let grpc = record.grpc_method().zip(record.path.as_ref());
        let (grpc_service, grpc_method) = match (&record.router, grpc) {
            (Some(_), Some(((service, method), path))) => {
                let (service, method) = inner.grpc_names.get(path.path(), service, method);
                (Some(service), Some(method))
            }
            _ => (None, None),
        };
        inner
            .requests
            .get_or_create(&RequestLabels {
                entrypoint: record.entrypoint.clone(),
                router: record.router.clone(),
                service: record.service.clone(),
                grpc_service,
                grpc_method,
                grpc_status: record.grpc_status_name().unwrap_or(""),
                http_status: record.http_status,
                protocol: record.protocol,
            })
            .inc();
        inner
            .request_duration
            .get_or_create(&RouteProtocolLabels {
                entrypoint: record.entrypoint.clone(),
                router: record.router.clone(),
                service: record.service.clone(),
                protocol: record.protocol,
            })
            .observe(record.duration.as_secs_f64());
        let route = RouteLabels {
            entrypoint: record.entrypoint.clone(),
            router: record.router.clone(),
            service: record.service.clone(),
        };
        inner
            .request_bytes
            .get_or_create(&route)
            .inc_by(record.request_bytes);
        inner
            .response_bytes
            .get_or_create(&route)
            .inc_by(record.response_bytes);
    }

    /// A client connection was accepted and its protocol is known (after the TLS handshake
    /// or the plaintext preface sniff; an `Upgrade: h2c` connection counts as `h1`).
    pub fn connection_opened(&self, entrypoint: &Arc<str>, protocol: Protocol) -> ConnectionGuard {
        self.inner
            .connections
            .get_or_create(&EntrypointProtocolLabels {
                entrypoint: entrypoint.clone(),
                protocol,
            })
            .inc();
        let active = self
            .inner
            .active_connections
            .get_or_create_owned(&EntrypointLabels {
                entrypoint: entrypoint.clone(),
            });
        active.inc();
        ConnectionGuard { active }
    }

    /// A request or stream started on `entrypoint`.
    pub fn stream_started(&self, entrypoint: &Arc<str>) -> StreamGuard {
        self.entrypoint_streams(entrypoint).started()
    }

    /// `entrypoint`'s `strait_active_streams` series, looked up once (when the config is
    /// loaded) rather than on every request.
    pub fn entrypoint_streams(&self, entrypoint: &Arc<str>) -> EntrypointStreams {
        EntrypointStreams {
            active: self
                .inner
                .active_streams
                .get_or_create_owned(&EntrypointLabels {
                    entrypoint: entrypoint.clone(),
                }),
        }
    }

    /// A client on `entrypoint` went over `limit` (a name from docs/security.md, such as
    /// `rapid_reset` or `header_read_timeout`) and was stopped.
    pub fn limit_exceeded(&self, entrypoint: &Arc<str>, limit: &'static str) {
        self.inner
            .limits_exceeded
            .get_or_create(&LimitLabels {
                entrypoint: entrypoint.clone(),
                limit,
            })
            .inc();
    }

    /// A client on plaintext `entrypoint` spoke a protocol its `protocols` leave out:
    /// `reason` is `h2c_prior_knowledge`, `http1` or `h2c_upgrade` (docs/operations.md).
    pub fn protocol_refused(&self, entrypoint: &Arc<str>, reason: &'static str) {
        self.inner
            .protocols_refused
            .get_or_create(&RefusalLabels {
                entrypoint: entrypoint.clone(),
                reason,
            })
            .inc();
    }

    /// A TLS handshake on `entrypoint` ended. `alpn` is the negotiated protocol (`h2`,
    /// `http/1.1`) and `version` the TLS version (`TLSv1.3`); both `""` when not reached.
    pub fn tls_handshake(
        &self,
        entrypoint: &Arc<str>,
        alpn: &'static str,
        version: &'static str,
        result: HandshakeResult,
    ) {
        self.inner
            .tls_handshakes
            .get_or_create(&TlsLabels {
                entrypoint: entrypoint.clone(),
                alpn,
                version,
                result,
            })
            .inc();
    }

    /// A connection to an upstream endpoint was established.
    pub fn upstream_connection_opened(
        &self,
        endpoint: &Arc<str>,
        protocol: Protocol,
    ) -> UpstreamConnGuard {
        let labels = EndpointProtocolLabels {
            endpoint: endpoint.clone(),
            protocol,
        };
        self.inner.upstream_opened.get_or_create(&labels).inc();
        UpstreamConnGuard {
            closed: self.inner.upstream_closed.get_or_create_owned(&labels),
        }
    }

    /// `endpoint`'s per-request series, looked up once (when the endpoint is set up) rather
    /// than on every request. Its series exist from then on, at zero.
    pub fn endpoint(&self, endpoint: &Arc<str>) -> EndpointMetrics {
        let labels = EndpointLabels {
            endpoint: endpoint.clone(),
        };
        EndpointMetrics {
            requests: self.inner.upstream_requests.get_or_create_owned(&labels),
            active: self
                .inner
                .upstream_active_streams
                .get_or_create_owned(&labels),
        }
    }

    /// The response head of one upstream attempt arrived `elapsed` after it was sent.
    /// Counted per attempt, so a retried request observes each endpoint it tried.
    pub fn upstream_response_headers(
        &self,
        service: &Arc<str>,
        endpoint: &Arc<str>,
        elapsed: Duration,
    ) {
        self.inner
            .upstream_duration
            .get_or_create(&UpstreamLabels {
                service: service.clone(),
                endpoint: endpoint.clone(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A config reload was tried; on success `generation` is the one now in service.
    pub fn config_reload(&self, ok: bool, generation: u64) {
        let result = if ok { "ok" } else { "error" };
        self.inner
            .config_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
        if ok {
            self.set_config_generation(generation);
        }
    }

    /// Sets `strait_config_generation` without counting a reload (the first load).
    pub fn set_config_generation(&self, generation: u64) {
        self.inner
            .config_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// A panic was caught while `router` (if known) handled a request.
    pub fn panicked(&self, router: Option<&Arc<str>>) {
        self.inner
            .panics
            .get_or_create(&RouterLabels {
                router: router.cloned(),
            })
            .inc();
    }

    fn resilience(&self) -> &resilience::Families {
        &self.inner.resilience
    }

    /// `strait_access_log_dropped_total`, shared with the access-log writers.
    pub(crate) fn access_log_dropped(&self) -> Counter {
        self.inner.access_log_dropped.clone()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

// === impl HandshakeResult ===

impl HandshakeResult {
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeResult::Ok => "ok",
            HandshakeResult::Refused => "refused",
            HandshakeResult::Failed => "failed",
            HandshakeResult::Timeout => "timeout",
        }
    }
}

impl EncodeLabelValue for HandshakeResult {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

impl EncodeLabelValue for Protocol {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

// === impl guards ===

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.active.dec();
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.active.dec();
    }
}

impl Drop for UpstreamConnGuard {
    fn drop(&mut self) {
        self.closed.inc();
    }
}

impl Drop for UpstreamStreamGuard {
    fn drop(&mut self) {
        self.active.dec();
    }
}

// === impl GrpcNames ===

impl GrpcNames {
    fn new() -> GrpcNames {
        let overflow: Arc<str> = Arc::from(OVERFLOW);
        GrpcNames {
            names: RwLock::new(HashMap::default()),
            overflow: (overflow.clone(), overflow),
        }
    }

    /// `path` is the request path that `service` and `method` were parsed from, the key.
    fn get(&self, path: &str, service: &str, method: &str) -> GrpcName {
        if let Some(names) = self.names.read().get(path) {
            return names.clone();
        }
        let mut names = self.names.write();
        if let Some(found) = names.get(path) {
            return found.clone();
        }
        if names.len() >= MAX_GRPC_METHODS {
            return self.overflow.clone();
        }
        // Methods of one service share its name.
        let service_name = names
            .values()
            .find(|(s, _)| &**s == service)
            .map(|(s, _)| s.clone())
            .unwrap_or_else(|| Arc::from(service));
        let entry = (service_name, Arc::from(method));
        names.insert(path.into(), entry.clone());
        entry
    }
}

#[cfg(test)]
mod tests;
