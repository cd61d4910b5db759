use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderValue, HOST};
use http::uri::{Authority, PathAndQuery};
use http::Method;
use serde::ser::{Serialize, SerializeMap, Serializer};
use strait_core::RequestHead;
use strait_grpc::Code;

use crate::body::{End, Outcome};
use crate::request_id::X_REQUEST_ID;

/// The protocol a request arrived over, as the `protocol` label and log field name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.x, with or without TLS.
    H1,
    /// HTTP/2 over TLS.
    H2,
    /// HTTP/2 over plaintext (prior knowledge or `Upgrade: h2c`).
    H2c,
}

/// Everything about one finished request or stream: what the access log writes and what
/// [`Metrics::record_request`](crate::Metrics::record_request) counts.
///
/// In the JSON line, a `None` field is left out rather than written as `null`, so a line
/// carries only what happened (no `grpc_status` on a plain HTTP request, no `error` unless
/// strait answered itself).
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// When the request arrived, by the wall clock (`time`, RFC 3339 UTC, milliseconds).
    pub time: SystemTime,
    pub entrypoint: Arc<str>,
    pub router: Option<Arc<str>>,
    pub service: Option<Arc<str>>,
    /// The upstream endpoint that answered (the last one tried).
    pub endpoint: Option<Arc<str>>,
    /// The downstream peer (`client`).
    pub client: Option<SocketAddr>,
    pub method: Method,
    pub authority: Option<Authority>,
    /// Path and query as the client sent them (`path`).
    pub path: Option<PathAndQuery>,
    /// The request carried `content-type: application/grpc*`; only then are `grpc_service`
    /// and `grpc_method` taken from the path.
    pub grpc: bool,
    pub protocol: Protocol,
    /// The negotiated ALPN protocol on TLS connections (`h2`, `http/1.1`).
    pub alpn: Option<&'static str>,
    /// `TLSv1.2` or `TLSv1.3` on TLS connections.
    pub tls_version: Option<&'static str>,
    /// `None` when no response head went out (the client left first).
    pub http_status: Option<u16>,
    /// The `grpc-status` code, from the trailers or a trailers-only response.
    pub grpc_status: Option<u32>,
    /// The `grpc-message`, percent-decoded.
    pub grpc_message: Option<String>,
    /// Request body bytes received from the client.
    pub request_bytes: u64,
    /// Response body bytes sent to the client.
    pub response_bytes: u64,
    /// From arrival to the end of the response stream (`duration_seconds`).
    pub duration: Duration,
    /// From sending upstream to the response head (`upstream_duration_seconds`).
    pub upstream_duration: Option<Duration>,
    pub retries: u32,
    pub request_id: Option<HeaderValue>,
    pub traceparent: Option<HeaderValue>,
    /// How the response stream ended (`end`: `complete`, `error` or `dropped`).
    pub end: End,
    /// What went wrong: strait's error text when strait answered itself, or the error that
    /// cut the response stream.
    pub error: Option<String>,
}

/// Wall time formatted as RFC 3339 UTC with milliseconds, without allocating.
struct Rfc3339(SystemTime);

/// Serializes through `Display` (written straight into the output, no `String`).
struct Displayed<'a, T>(&'a T);

// === impl Protocol ===

impl Protocol {
    /// HTTP/2 over TLS is `h2`, without TLS `h2c`; anything else is `h1`.
    pub fn of(version: http::Version, tls: bool) -> Protocol {
        match (version, tls) {
            (http::Version::HTTP_2, true) => Protocol::H2,
            (http::Version::HTTP_2, false) => Protocol::H2c,
            _ => Protocol::H1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::H1 => "h1",
            Protocol::H2 => "h2",
            Protocol::H2c => "h2c",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl RequestRecord ===

impl RequestRecord {
    /// A record with only the entrypoint and protocol known, stamped now.
    pub fn new(entrypoint: Arc<str>, protocol: Protocol) -> RequestRecord {
        RequestRecord {
            time: SystemTime::now(),
            entrypoint,
            router: None,
            service: None,
            endpoint: None,
            client: None,
            method: Method::GET,
            authority: None,
            path: None,
            grpc: false,
            protocol,
            alpn: None,
            tls_version: None,
            http_status: None,
            grpc_status: None,
            grpc_message: None,
            request_bytes: 0,
            response_bytes: 0,
            duration: Duration::ZERO,
            upstream_duration: None,
            retries: 0,
            request_id: None,
            traceparent: None,
            end: End::Complete,
            error: None,
        }
    }

    /// A record of `request` as it arrived, stamped now: method, authority (from the URI or
    /// `Host`), path, whether it is gRPC, `x-request-id` and `traceparent`. Call it before
    /// the request is rewritten for the upstream. Header values and URI parts are
    /// reference-counted, so this copies no strings.
    pub fn for_request(
        entrypoint: Arc<str>,
        protocol: Protocol,
        request: &RequestHead,
    ) -> RequestRecord {
        let headers = request.headers();
        let authority = request.uri().authority().cloned().or_else(|| {
            headers
                .get(HOST)
                .and_then(|host| Authority::try_from(host.as_bytes()).ok())
        });
        RequestRecord {
            method: request.method().clone(),
            authority,
            path: request.uri().path_and_query().cloned(),
            grpc: strait_grpc::is_grpc(headers),
            request_id: headers.get(X_REQUEST_ID).cloned(),
            traceparent: headers.get("traceparent").cloned(),
            ..RequestRecord::new(entrypoint, protocol)
        }
    }

    /// Takes in how the response stream ended: bytes sent, gRPC status, and the error if the
    /// stream broke. An error already recorded (strait's own answer) is kept.
    pub fn set_outcome(&mut self, outcome: &Outcome) {
        self.response_bytes = outcome.bytes;
        if outcome.grpc_status.is_some() {
            self.grpc_status = outcome.grpc_status;
            self.grpc_message.clone_from(&outcome.grpc_message);
        }
        self.end = outcome.end;
        if self.error.is_none() {
            self.error.clone_from(&outcome.error);
        }
    }

    /// The gRPC service and method, for a gRPC request whose path has the `/pkg.Svc/Method`
    /// shape.
    pub fn grpc_method(&self) -> Option<(&str, &str)> {
        if !self.grpc {
            return None;
        }
        parse_grpc_path(self.path.as_ref()?.path())
    }

    /// The gRPC status code's name (`UNAVAILABLE`); codes outside 0..=16 are `UNKNOWN`, as
    /// the gRPC spec says for clients.
    pub fn grpc_status_name(&self) -> Option<&'static str> {
        self.grpc_status
            .map(|code| Code::from_u32(code).unwrap_or(Code::Unknown).as_str())
    }

    /// The access-log line: one JSON object and a newline.
    pub fn to_json_line(&self) -> Vec<u8> {
        let mut line = Vec::with_capacity(512);
        // Serializing into a Vec cannot fail on I/O, and every field serializes to valid
        // JSON (header values that are not text are left out), so an error here would be a
        // bug; the line is then dropped rather than written half.
        if serde_json::to_writer(&mut line, self).is_err() {
            line.clear();
            return line;
        }
        line.push(b'\n');
        line
    }
}

impl Serialize for RequestRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("time", &Rfc3339(self.time))?;
        map.serialize_entry("entrypoint", &*self.entrypoint)?;
        if let Some(router) = &self.router {
            map.serialize_entry("router", &**router)?;
        }
        if let Some(service) = &self.service {
            map.serialize_entry("service", &**service)?;
        }
        if let Some(endpoint) = &self.endpoint {
            map.serialize_entry("endpoint", &**endpoint)?;
        }
        if let Some(client) = &self.client {
            map.serialize_entry("client", &Displayed(client))?;
        }
        map.serialize_entry("method", self.method.as_str())?;
        if let Some(authority) = &self.authority {
            map.serialize_entry("authority", authority.as_str())?;
        }
        if let Some(path) = &self.path {
            map.serialize_entry("path", path.as_str())?;
        }
        map.serialize_entry("protocol", self.protocol.as_str())?;
        if let Some(alpn) = self.alpn {
            map.serialize_entry("alpn", alpn)?;
        }
        if let Some(version) = self.tls_version {
            map.serialize_entry("tls_version", version)?;
        }
        if let Some(status) = self.http_status {
            map.serialize_entry("http_status", &status)?;
        }
        if let Some((service, method)) = self.grpc_method() {
            map.serialize_entry("grpc_service", service)?;
            map.serialize_entry("grpc_method", method)?;
        }
        if let (Some(code), Some(name)) = (self.grpc_status, self.grpc_status_name()) {
            map.serialize_entry("grpc_status", name)?;
            map.serialize_entry("grpc_status_code", &code)?;
        }
        if let Some(message) = &self.grpc_message {
            map.serialize_entry("grpc_message", message)?;
        }
        map.serialize_entry("request_bytes", &self.request_bytes)?;
        map.serialize_entry("response_bytes", &self.response_bytes)?;
        map.serialize_entry("duration_seconds", &self.duration.as_secs_f64())?;
        if let Some(upstream) = self.upstream_duration {
            map.serialize_entry("upstream_duration_seconds", &upstream.as_secs_f64())?;
        }
        map.serialize_entry("retries", &self.retries)?;
        if let Some(id) = self.request_id.as_ref().and_then(|v| v.to_str().ok()) {
            map.serialize_entry("request_id", id)?;
        }
        if let Some(trace) = self.traceparent.as_ref().and_then(|v| v.to_str().ok()) {
            map.serialize_entry("traceparent", trace)?;
        }
        map.serialize_entry("end", self.end.as_str())?;
        if let Some(error) = &self.error {
            map.serialize_entry("error", error)?;
        }
        map.end()
    }
}

/// Splits a gRPC path `/pkg.Service/Method` into service and method; `None` for any other
/// shape (no leading slash, an empty part, more than two segments).
pub fn parse_grpc_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

// === impl Displayed ===

impl<T: fmt::Display> Serialize for Displayed<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

// === impl Rfc3339 ===

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A clock before 1970 is a broken clock; print the epoch rather than fail.
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let secs = since.as_secs();
        let (year, month, day) = civil_from_days(secs / 86_400);
        let rem = secs % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            since.subsec_millis()
        )
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
