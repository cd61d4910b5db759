//! How a request ended, in the terms outlier detection, breakers and retries care about.
//! The gRPC status comes from real trailers or from trailers-only headers alike.

use strait_core::{Code, ErrorKind, ProxyError};

/// What one request says about the endpoint (and the route) that served it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure,
    /// Says nothing about the backend: the client went away, the client's own deadline
    /// passed, the backend refused the stream before seeing it (graceful GOAWAY).
    Neutral,
}

/// How a response stream ended.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ending {
    pub http_status: Option<u16>,
    pub grpc_status: Option<u32>,
    /// The stream broke (reset by the backend, connection lost) before its end.
    pub broken: bool,
    /// The client went away or its deadline passed before the end.
    pub abandoned: bool,
}

/// The verdict on an error that left no response at all.
pub fn of_error(err: &ProxyError) -> Verdict {
    match err.kind() {
        ErrorKind::Connect | ErrorKind::UpstreamReset | ErrorKind::UpstreamProtocol => {
            Verdict::Failure
        }
        ErrorKind::Refused
        | ErrorKind::DeadlineExceeded
        | ErrorKind::NoRoute
        | ErrorKind::NoEndpoint
        | ErrorKind::BadRequest
        | ErrorKind::Http2Required
        | ErrorKind::Overloaded
        | ErrorKind::ClassLimit
        | ErrorKind::Internal => Verdict::Neutral,
    }
}

/// The verdict on a response that came back; `failing` lists the gRPC statuses that count
/// as failures.
pub fn of_ending(ending: &Ending, failing: &[Code]) -> Verdict {
    if ending.broken {
        return Verdict::Failure;
    }
    if let Some(code) = ending.grpc_status {
        let code = Code::from_u32(code).unwrap_or(Code::Unknown);
        return if failing.contains(&code) {
            Verdict::Failure
        } else {
            Verdict::Success
        };
    }
    if ending.abandoned {
        return Verdict::Neutral;
    }
    match ending.http_status {
        Some(status) if status >= 500 => Verdict::Failure,
        _ => Verdict::Success,
    }
}

#[cfg(test)]
mod tests {
    use strait_config::DEFAULT_FAILURE_STATUSES;

    use super::*;

    fn ending(http: u16, grpc: Option<u32>) -> Ending {
        Ending {
            http_status: Some(http),
            grpc_status: grpc,
            ..Ending::default()
        }
    }

    #[test]
    fn grpc_status_decides_for_grpc() {
        let failing = &DEFAULT_FAILURE_STATUSES;
        assert_eq!(of_ending(&ending(200, Some(14)), failing), Verdict::Failure);
        assert_eq!(of_ending(&ending(200, Some(13)), failing), Verdict::Failure);
        assert_eq!(of_ending(&ending(200, Some(0)), failing), Verdict::Success);
        // NOT_FOUND is the application's answer, not the backend's sickness.
        assert_eq!(of_ending(&ending(200, Some(5)), failing), Verdict::Success);
        assert_eq!(of_ending(&ending(200, Some(8)), failing), Verdict::Success);
        assert_eq!(
            of_ending(&ending(200, Some(8)), &[Code::ResourceExhausted]),
            Verdict::Failure
        );
        // Out of range is UNKNOWN.
        assert_eq!(of_ending(&ending(200, Some(99)), failing), Verdict::Failure);
    }

    #[test]
    fn http_5xx_and_broken_streams_fail() {
        let failing = &DEFAULT_FAILURE_STATUSES;
        assert_eq!(of_ending(&ending(503, None), failing), Verdict::Failure);
        assert_eq!(of_ending(&ending(404, None), failing), Verdict::Success);
        let broken = Ending {
            broken: true,
            ..ending(200, None)
        };
        assert_eq!(of_ending(&broken, failing), Verdict::Failure);
        let gone = Ending {
            abandoned: true,
            ..ending(200, None)
        };
        assert_eq!(of_ending(&gone, failing), Verdict::Neutral);
    }
}
