use http::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use http::{Request, Response, StatusCode, Version};
use strait_core::{Body, ErrorKind, ProxyError, Side};
use strait_grpc::Code;

/// The one place that decides what a client sees for an error strait made: a trailers-only
/// gRPC response for gRPC requests, a short plain-text status for everything else. Backend
/// addresses stay out of what the client sees; the full error goes to the log.
pub fn error_response(err: &ProxyError, grpc: bool) -> Response<Body> {
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
pub fn is_grpc_over_http1<B>(request: &Request<B>) -> bool {
    request.version() <= Version::HTTP_11
        && strait_grpc::is_grpc(request.headers())
        && !request
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc-web"))
}

/// The answer to [`is_grpc_over_http1`]: 426 with a body that says what to fix, instead of
/// a garbled response or a mystery 502.
pub fn grpc_needs_http2(tls: bool) -> Response<Body> {
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
    fn upstream_addresses_do_not_reach_the_client() {
        let r = error_response(&err(ErrorKind::Connect, Side::Upstream), true);
        let message = r.headers()["grpc-message"].to_str().unwrap();
        assert_eq!(message, "upstream connect error");
    }
}
