use std::fmt;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which side of the proxy a failure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client.
    Downstream,
    /// The backend.
    Upstream,
    /// strait itself: routing, config, limits.
    Proxy,
}

/// What went wrong, in the terms that decide what the client sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No router matched the request.
    NoRoute,
    /// The service has no endpoint to send to.
    NoEndpoint,
    /// The connection to the endpoint could not be made.
    Connect,
    /// The endpoint reset the stream or closed the connection before a response.
    UpstreamReset,
    /// The endpoint refused the stream before processing it (REFUSED_STREAM, or above a
    /// GOAWAY's last stream id).
    Refused,
    /// The endpoint broke the protocol.
    UpstreamProtocol,
    /// The request's deadline (grpc-timeout or route timeout) passed.
    DeadlineExceeded,
    /// The request itself was malformed.
    BadRequest,
    /// A gRPC request could only reach a backend that speaks HTTP/1.1.
    Http2Required,
    /// A bug in strait (a panic while serving the request).
    Internal,
    /// strait turned the request away to protect a backend: a circuit breaker is open, a
    /// request or connection limit is reached, or no endpoint is healthy.
    Overloaded,
    /// A traffic class's request limit is reached (gRPC RESOURCE_EXHAUSTED).
    ClassLimit,
}

/// An error with the facts the rest of the proxy needs: what, which side, whether a retry
/// is safe, and a message for logs and for the client.
#[derive(Debug)]
pub struct ProxyError {
    kind: ErrorKind,
    side: Side,
    message: String,
    source: Option<BoxError>,
}

// === impl ProxyError ===

impl ProxyError {
    pub fn new(kind: ErrorKind, side: Side, message: impl Into<String>) -> Self {
        ProxyError {
            kind,
            side,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn side(&self) -> Side {
        self.side
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when the backend cannot have started processing the request, so sending it again
    /// (elsewhere) is always safe.
    pub fn is_retry_safe(&self) -> bool {
        matches!(self.kind, ErrorKind::Connect | ErrorKind::Refused)
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The HTTP/2 reset reason somewhere in an error's cause chain, if any: a client's CANCEL must
/// reach the backend as CANCEL, not as INTERNAL_ERROR.
pub fn h2_reason(err: &(dyn std::error::Error + 'static)) -> Option<h2::Reason> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.reason();
        }
        cause = e.source();
    }
    None
}
