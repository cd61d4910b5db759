use std::fmt;

use http::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use http::{Response, StatusCode, Version};
use strait_core::{Body, ErrorKind, ProxyError, RequestHead, Side};
use strait_grpc::Code;

/// What strait answers a request with when it answers itself: every outcome that is not a
/// backend's response (an error, a fallback, an injected fault, a breaker or a limit) is
/// one of these, and [`respond`] alone turns it into a response.
#[derive(Debug)]
pub enum Reply {
    /// Something failed; its kind decides the gRPC code and the HTTP status.
    Error(ProxyError),
    /// A gRPC status strait was told to answer with (a fallback, an injected abort). An HTTP
    /// client gets 503 with the message.
    Grpc(Code, String),
    /// An HTTP status strait was told to answer with. A gRPC client gets the code the gRPC
    /// spec maps that status to, with the body as its message.
    Http(StatusCode, String),
    /// A gRPC request over HTTP/1.1 (`tls`: on a TLS entrypoint), which cannot work.
    NeedsHttp2 { tls: bool },
}

/// The form a client reads replies in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyFormat {
    /// Plain text with an HTTP status.
    Http,
    /// Trailers-only gRPC: HTTP 200 and `grpc-status`.
    Grpc,
}

impl ReplyFormat {
    /// The format a request's client reads.
    pub fn of(head: &RequestHead) -> ReplyFormat {
        if strait_grpc::is_grpc(head.headers()) {
            ReplyFormat::Grpc
        } else {
            ReplyFormat::Http
        }
    }

    pub fn is_grpc(self) -> bool {
        self == ReplyFormat::Grpc
    }
}

/// The one place that shapes what a client sees when strait answers itself, in the form
/// the client reads.
pub fn respond(reply: &Reply, format: ReplyFormat) -> Response<Body> {
    let grpc = format.is_grpc();
    match reply {
        Reply::Error(err) => error_response(err, grpc),
        Reply::Grpc(code, message) if grpc => strait_grpc::trailers_only(*code, message),
        Reply::Grpc(_, message) => text_response(StatusCode::SERVICE_UNAVAILABLE, message),
        Reply::Http(status, body) if grpc => {
            strait_grpc::trailers_only(strait_grpc::code_for_http_status(*status), body)
        }
        Reply::Http(status, body) => text_response(*status, body),
        Reply::NeedsHttp2 { tls } => grpc_needs_http2(*tls),
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Error(err) => err.fmt(f),
            Reply::Grpc(code, message) => write!(f, "{code:?}: {message}"),
            Reply::Http(status, body) => write!(f, "{}: {body}", status.as_u16()),
            Reply::NeedsHttp2 { .. } => f.write_str("gRPC over HTTP/1.1"),
        }
    }
}

impl From<ProxyError> for Reply {
    fn from(err: ProxyError) -> Reply {
        Reply::Error(err)
    }
}

/// What a client sees for an error strait made: a trailers-only gRPC response for gRPC
/// requests, a short plain-text status for everything else. Backend addresses stay out of
/// what the client sees; the full error goes to the log.
pub(crate) fn error_response(err: &ProxyError, grpc: bool) -> Response<Body> {
    let (code, status) = match err.kind() {
        ErrorKind::NoRoute => (Code::Unimplemented, StatusCode::NOT_FOUND),
        ErrorKind::NoEndpoint => (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
        ErrorKind::Connect
        | ErrorKind::UpstreamReset
        | ErrorKind::Refused
        | ErrorKind::UpstreamProtocol
        | ErrorKind::Http2Required => (Code::Unavailable, StatusCode::BAD_GATEWAY),
        ErrorKind::DeadlineExceeded => (Code::DeadlineExceeded, StatusCode::GATEWAY_TIMEOUT),
        ErrorKind::BadRequest => (Code::Internal, StatusCode::BAD_REQUEST),
        ErrorKind::Internal => (Code::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        ErrorKind::Overloaded => (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
        ErrorKind::ClassLimit => (Code::ResourceExhausted, StatusCode::SERVICE_UNAVAILABLE),
    };
    let message = client_message(err);
    if grpc {
        return strait_grpc::trailers_only(code, &message);
    }
    text_response(status, &message)
}

/// A short plain-text answer, one line: what strait says to clients that are not gRPC.
pub fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(strait_core::full(format!("{text}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// True for a gRPC request (not gRPC-Web) that arrived over HTTP/1.x, which cannot work:
/// gRPC needs HTTP/2 trailers and streams.
pub fn is_grpc_over_http1(head: &RequestHead) -> bool {
    head.version() <= Version::HTTP_11
        && strait_grpc::is_grpc(head.headers())
        && !head
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc-web"))
}

/// The answer to [`is_grpc_over_http1`]: 426 with a body that says what to fix, instead of
/// a garbled response or a mystery 502.
fn grpc_needs_http2(tls: bool) -> Response<Body> {
    let how = if tls {
        "the client must offer ALPN `h2` in the TLS handshake (check with `strait check tls`)"
    } else {
        "use HTTP/2 with prior knowledge (h2c), as gRPC clients do for http:// targets"
    };
    let mut response = text_response(
        StatusCode::UPGRADE_REQUIRED,
        &format!("gRPC needs HTTP/2, but this request came over HTTP/1.1: {how}"),
    );
    let headers = response.headers_mut();
    headers.insert(
        UPGRADE,
        HeaderValue::from_static(if tls { "h2" } else { "h2c" }),
    );
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    response
}

fn client_message(err: &ProxyError) -> String {
    if err.side() != Side::Upstream {
        return err.message().to_owned();
    }
    let what = match err.kind() {
        ErrorKind::Connect => "upstream connect error",
        ErrorKind::Refused => "upstream refused the request",
        ErrorKind::UpstreamProtocol => "upstream protocol error",
        ErrorKind::Http2Required => {
            "the backend speaks only HTTP/1.1 (ALPN did not negotiate h2); gRPC needs HTTP/2"
        }
        _ => "upstream reset before response",
    };
    what.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: ErrorKind, side: Side) -> ProxyError {
        ProxyError::new(
            kind,
            side,
            "cannot connect to endpoint h2c://10.0.0.7:50051",
        )
    }

    #[test]
    fn grpc_errors_are_trailers_only_with_the_right_code() {
        let cases = [
            (ErrorKind::NoRoute, "12"),
            (ErrorKind::NoEndpoint, "14"),
            (ErrorKind::Connect, "14"),
            (ErrorKind::UpstreamReset, "14"),
            (ErrorKind::DeadlineExceeded, "4"),
        ];
        for (kind, status) in cases {
            let r = error_response(&err(kind, Side::Proxy), true);
            assert_eq!(r.status(), StatusCode::OK, "{kind:?}");
            assert_eq!(r.headers()["grpc-status"], status, "{kind:?}");
            assert_eq!(r.headers()["content-type"], "application/grpc");
        }
    }

    #[test]
    fn http_errors_use_http_statuses() {
        let r = error_response(&err(ErrorKind::NoRoute, Side::Proxy), false);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = error_response(&err(ErrorKind::Connect, Side::Upstream), false);
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        let r = error_response(&err(ErrorKind::NoEndpoint, Side::Proxy), false);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let r = error_response(&err(ErrorKind::DeadlineExceeded, Side::Proxy), false);
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    }

    #[test]
    fn chosen_statuses_take_the_clients_form() {
        let grpc = respond(
            &Reply::Grpc(Code::Unavailable, "down".into()),
            ReplyFormat::Grpc,
        );
        assert_eq!(grpc.status(), StatusCode::OK);
        assert_eq!(grpc.headers()["grpc-status"], "14");
        assert_eq!(grpc.headers()["grpc-message"], "down");
        let http = respond(
            &Reply::Grpc(Code::Unavailable, "down".into()),
            ReplyFormat::Http,
        );
        assert_eq!(http.status(), StatusCode::SERVICE_UNAVAILABLE);

        let grpc = respond(
            &Reply::Http(StatusCode::TOO_MANY_REQUESTS, "slow down".into()),
            ReplyFormat::Grpc,
        );
        assert_eq!(
            grpc.headers()["grpc-status"],
            "14",
            "429 maps to UNAVAILABLE"
        );
        assert_eq!(grpc.headers()["grpc-message"], "slow down");
        let http = respond(
            &Reply::Http(StatusCode::TOO_MANY_REQUESTS, "slow down".into()),
            ReplyFormat::Http,
        );
        assert_eq!(http.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(http.headers()["content-type"], "text/plain; charset=utf-8");
    }

    #[test]
    fn grpc_over_http1_is_told_to_use_http2() {
        let r = respond(&Reply::NeedsHttp2 { tls: true }, ReplyFormat::Grpc);
        assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(r.headers()["upgrade"], "h2");
        let r = respond(&Reply::NeedsHttp2 { tls: false }, ReplyFormat::Grpc);
        assert_eq!(r.headers()["upgrade"], "h2c");
    }

    #[test]
    fn the_format_follows_the_content_type() {
        let grpc = http::Request::builder()
            .header("content-type", "application/grpc+proto")
            .body(())
            .unwrap();
        let (head, ()) = RequestHead::from_request(grpc);
        assert_eq!(ReplyFormat::of(&head), ReplyFormat::Grpc);
        let (head, ()) = RequestHead::from_request(http::Request::new(()));
        assert_eq!(ReplyFormat::of(&head), ReplyFormat::Http);
    }

    #[test]
    fn upstream_addresses_do_not_reach_the_client() {
        let r = error_response(&err(ErrorKind::Connect, Side::Upstream), true);
        let message = r.headers()["grpc-message"].to_str().unwrap();
        assert_eq!(message, "upstream connect error");
    }
}
