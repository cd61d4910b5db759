//! Active health checks: a task per endpoint probes it (gRPC health, HTTP, or TCP) and moves
//! it out of and back into the rotation after enough failures or passes in a row.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_TYPE, TE, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body::Body as _;
use strait_config::{HealthCheck, HealthCheckKind};
use strait_core::{Body, Code, ErrorKind};
use strait_telemetry::Metrics;
use strait_upstream::Endpoint;
use tracing::{debug, error, info, warn};

use crate::state::EndpointState;

/// The gRPC health protocol's one method.
const GRPC_HEALTH_PATH: &str = "/grpc.health.v1.Health/Check";
/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;
/// Lets backends tell checks from traffic in their logs.
const CHECK_USER_AGENT: &str = "strait-health-check";
/// A health answer is a few bytes; more than this is not read.
const MAX_BODY: usize = 64 * 1024;
/// The first check comes within this long of the start (or within the interval, if
/// shorter), spread at random so a reload does not probe every endpoint at once.
const FIRST_CHECK_WITHIN: Duration = Duration::from_secs(1);

/// The running checks of one service; dropping it stops them.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    tasks: Vec<tokio::task::AbortHandle>,
}

/// How to probe, built once from the config and shared by a service's tasks.
#[derive(Debug)]
struct Probe {
    kind: Kind,
    timeout: Duration,
}

#[derive(Debug)]
enum Kind {
    /// The encoded `HealthCheckRequest` frame.
    Grpc(Bytes),
    Http {
        path: String,
        expected_status: Vec<u16>,
    },
    Tcp,
}

/// Passes and failures in a row, and the state they decided.
#[derive(Debug)]
struct Tracker {
    healthy: bool,
    in_a_row: u32,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

/// The result of one check: `Ok` passed, `Err` says why not.
type Checked = Result<(), String>;

// === impl Checks ===

impl Checks {
    /// Spawns one task per endpoint on the current runtime. Each holds only its endpoint and
    /// state, so the [`crate::Service`] can be dropped (and the tasks aborted) at any time.
    pub(crate) fn start(
        service: &Arc<str>,
        config: Option<&HealthCheck>,
        endpoints: &[Arc<Endpoint>],
        states: &[Arc<EndpointState>],
        metrics: &Metrics,
    ) -> Checks {
        let Some(config) = config else {
            return Checks::default();
        };
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime,
            Err(_) => {
                error!(
                    service = %service,
                    "active health checks of service `{service}` not started: no tokio runtime \
                     (a bug in strait: services must be built inside the runtime)"
                );
                return Checks::default();
            }
        };
        let probe = Arc::new(Probe::new(config));
        let tasks = endpoints
            .iter()
            .zip(states)
            .map(|(endpoint, state)| {
                let watch = watch(
                    config,
                    service.clone(),
                    endpoint.label().clone(),
                    state.clone(),
                    metrics.clone(),
                    {
                        let probe = probe.clone();
                        let endpoint = endpoint.clone();
                        move || {
                            let probe = probe.clone();
                            let endpoint = endpoint.clone();
                            async move { probe.check(&endpoint).await }
                        }
                    },
                );
                runtime.spawn(watch).abort_handle()
            })
            .collect();
        Checks { tasks }
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Checks one endpoint forever: the first check soon after the start, then one every
/// interval plus jitter; moves the endpoint out of or back into the rotation when a
/// threshold is reached.
fn watch<F, Fut>(
    config: &HealthCheck,
    service: Arc<str>,
    endpoint: Arc<str>,
    state: Arc<EndpointState>,
    metrics: Metrics,
    mut check: F,
) -> impl Future<Output = ()> + Send + 'static
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Checked> + Send,
{
    // Read what the loop needs now, so the task does not borrow the config.
    let interval = config.interval;
    let jitter = config.jitter;
    let mut tracker = Tracker::new(config);
    async move {
        let first = interval.min(FIRST_CHECK_WITHIN);
        tokio::time::sleep(random_up_to(first)).await;
        loop {
            let result = check().await;
            let passed = result.is_ok();
            if let Some(healthy) = tracker.record(passed) {
                state.set_healthy(healthy);
                let why = result.as_ref().err().map_or("check passed", String::as_str);
                if healthy {
                    info!(
                        service = %service,
                        endpoint = %endpoint,
                        "endpoint {endpoint} of service `{service}` is healthy again ({} checks passed in a row); back in the rotation",
                        tracker.healthy_threshold
                    );
                } else {
                    warn!(
                        service = %service,
                        endpoint = %endpoint,
                        reason = why,
                        "endpoint {endpoint} of service `{service}` failed {} health checks in a row (last: {why}); out of the rotation until it passes again",
                        tracker.unhealthy_threshold
                    );
                }
            } else if let Err(why) = &result {
                debug!(service = %service, endpoint = %endpoint, reason = %why, "health check failed");
            }
            metrics.health_checked(&service, &endpoint, passed, tracker.healthy);
            tokio::time::sleep(interval + random_up_to(jitter)).await;
        }
    }
}

/// A random duration in `[0, max]`.
fn random_up_to(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

// === impl Probe ===

impl Probe {
    fn new(config: &HealthCheck) -> Probe {
        let kind = match &config.kind {
            HealthCheckKind::Grpc { service } => Kind::Grpc(grpc_request(service)),
            HealthCheckKind::Http {
                path,
                expected_status,
            } => Kind::Http {
                path: path.clone(),
                expected_status: expected_status.clone(),
            },
            HealthCheckKind::Tcp => Kind::Tcp,
        };
        Probe {
            kind,
            timeout: config.timeout,
        }
    }

    /// One check of `endpoint`, within the timeout.
    async fn check(&self, endpoint: &Endpoint) -> Checked {
        match tokio::time::timeout(self.timeout, self.run(endpoint)).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {:?}", self.timeout)),
        }
    }

    async fn run(&self, endpoint: &Endpoint) -> Checked {
        match &self.kind {
            Kind::Tcp => {
                let (host, port) = endpoint.address();
                tokio::net::TcpStream::connect((host, port))
                    .await
                    .map(drop)
                    .map_err(|e| format!("connect failed: {e}"))
            }
            Kind::Grpc(message) => {
                let uri = uri(endpoint, GRPC_HEALTH_PATH)?;
                let mut request = Request::new(strait_core::full(message.clone()));
                *request.method_mut() = Method::POST;
                *request.uri_mut() = uri;
                let headers = request.headers_mut();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
                headers.insert(TE, HeaderValue::from_static("trailers"));
                headers.insert(USER_AGENT, HeaderValue::from_static(CHECK_USER_AGENT));
                let response = send(endpoint, request).await?;
                grpc_verdict(response).await
            }
            Kind::Http {
                path,
                expected_status,
            } => {
                let mut request = Request::new(strait_core::empty());
                *request.uri_mut() = uri(endpoint, path)?;
                request
                    .headers_mut()
                    .insert(USER_AGENT, HeaderValue::from_static(CHECK_USER_AGENT));
                let response = send(endpoint, request).await?;
                let status = response.status().as_u16();
                // Read to the end, so an HTTP/1.1 connection goes back to the pool.
                read_body(response.into_body()).await?;
                if expected_status.contains(&status) {
                    Ok(())
                } else {
                    Err(format!(
                        "status {status} (expected one of {expected_status:?})"
                    ))
                }
            }
        }
    }
}

async fn send(endpoint: &Endpoint, request: Request<Body>) -> Result<Response<Body>, String> {
    match endpoint.send(request).await {
        Ok(answer) => Ok(answer.response),
        // strait's own connection limit, not the backend's health.
        Err(e) if e.kind() == ErrorKind::Overloaded => Err(format!("not sent: {e}")),
        Err(e) => Err(e.to_string()),
    }
}

/// `http://host:port/path` (`https://` for a TLS endpoint): the absolute URI
/// [`Endpoint::send`] wants.
fn uri(endpoint: &Endpoint, path: &str) -> Result<Uri, String> {
    let (host, port) = endpoint.address();
    let scheme = if endpoint.label().starts_with("https://") {
        "https"
    } else {
        "http"
    };
    let text = if host.contains(':') {
        format!("{scheme}://[{host}]:{port}{path}")
    } else {
        format!("{scheme}://{host}:{port}{path}")
    };
    text.parse()
        .map_err(|e| format!("cannot build the check's URI `{text}`: {e}"))
}

/// The gRPC frame of `HealthCheckRequest { service }`: field 1, length-delimited.
fn grpc_request(service: &str) -> Bytes {
    let mut message = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        message.push(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.extend_from_slice(&[0]);
    // A service name is a config string, far below 4 GiB.
    frame.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(&message);
    frame.freeze()
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Passes when the call ended with grpc-status 0 and the message says SERVING.
async fn grpc_verdict(response: Response<Body>) -> Checked {
    let (parts, body) = response.into_parts();
    if !parts.status.is_success() {
        return Err(format!(
            "HTTP status {} to a gRPC health check",
            parts.status
        ));
    }
    // Trailers-only: the status is in the headers and there is no message.
    if parts.headers.contains_key("grpc-status") {
        grpc_status(&parts.headers)?;
        return Err("grpc-status OK without a health message".to_owned());
    }
    let (data, trailers) = read_body(body).await?;
    match trailers {
        Some(trailers) => grpc_status(&trailers)?,
        None => return Err("the gRPC health answer ended without grpc-status".to_owned()),
    }
    match serving_status(&data)? {
        SERVING => Ok(()),
        status => Err(format!("grpc health {}", serving_name(status))),
    }
}

/// `Ok` for grpc-status 0, else the status and its message.
fn grpc_status(headers: &HeaderMap) -> Checked {
    match strait_telemetry::grpc_status_of(headers) {
        Some((0, _)) => Ok(()),
        Some((code, message)) => {
            let name = Code::from_u32(code).map_or("UNKNOWN", Code::as_str);
            Err(match message {
                Some(message) => format!("grpc-status {name}: {message}"),
                None => format!("grpc-status {name}"),
            })
        }
        None => Err("no grpc-status".to_owned()),
    }
}

/// The `status` field (1, varint) of the one `HealthCheckResponse` in `data`, a gRPC frame;
/// 0 (UNKNOWN) when absent, as proto3 says.
fn serving_status(data: &[u8]) -> Result<u64, String> {
    let malformed = |what: &str| format!("malformed gRPC health answer: {what}");
    let [flag, l0, l1, l2, l3, message @ ..] = data else {
        return Err(malformed("no message"));
    };
    if *flag != 0 {
        return Err(malformed("compressed message (strait asks for none)"));
    }
    let len = u32::from_be_bytes([*l0, *l1, *l2, *l3]) as usize;
    let Some(mut message) = message.get(..len) else {
        return Err(malformed("message shorter than its length prefix"));
    };
    let mut status = 0;
    while !message.is_empty() {
        let key = varint(&mut message).ok_or_else(|| malformed("bad field key"))?;
        match (key >> 3, key & 7) {
            (1, 0) => status = varint(&mut message).ok_or_else(|| malformed("bad status"))?,
            (_, 0) => {
                varint(&mut message).ok_or_else(|| malformed("bad varint"))?;
            }
            (_, 1) => message = message.get(8..).ok_or_else(|| malformed("short field"))?,
            (_, 2) => {
                let len = varint(&mut message).ok_or_else(|| malformed("bad length"))?;
                let len = usize::try_from(len).map_err(|_| malformed("bad length"))?;
                message = message.get(len..).ok_or_else(|| malformed("short field"))?;
            }
            (_, 5) => message = message.get(4..).ok_or_else(|| malformed("short field"))?,
            _ => return Err(malformed("unknown wire type")),
        }
    }
    Ok(status)
}

fn varint(data: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = data.split_first()?;
        *data = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn serving_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".to_owned(),
        1 => "SERVING".to_owned(),
        2 => "NOT_SERVING".to_owned(),
        3 => "SERVICE_UNKNOWN".to_owned(),
        other => format!("status {other}"),
    }
}

/// The body's data (up to [`MAX_BODY`]) and its trailers.
async fn read_body(mut body: Body) -> Result<(Bytes, Option<HeaderMap>), String> {
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| format!("answer broke off: {e}"))?;
        match frame.into_data() {
            Ok(chunk) => {
                if data.len() + chunk.len() > MAX_BODY {
                    return Err(format!("answer larger than {MAX_BODY} bytes"));
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    Ok((data.freeze(), trailers))
}

// === impl Tracker ===

impl Tracker {
    fn new(config: &HealthCheck) -> Tracker {
        Tracker {
            healthy: true,
            in_a_row: 0,
            healthy_threshold: config.healthy_threshold.max(1),
            unhealthy_threshold: config.unhealthy_threshold.max(1),
        }
    }

    /// Counts one check; the new state when this one changed it.
    fn record(&mut self, passed: bool) -> Option<bool> {
        // Checks that agree with the current state reset the count toward changing it.
        if passed == self.healthy {
            self.in_a_row = 0;
            return None;
        }
        self.in_a_row += 1;
        let threshold = if self.healthy {
            self.unhealthy_threshold
        } else {
            self.healthy_threshold
        };
        if self.in_a_row < threshold {
            return None;
        }
        self.healthy = passed;
        self.in_a_row = 0;
        Some(passed)
    }
}

#[cfg(test)]
mod tests;
