use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use strait_core::Body;

use crate::Code;

static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: http::HeaderName = http::HeaderName::from_static("grpc-message");

/// True for gRPC and gRPC-Web requests: `application/grpc`, `application/grpc+proto`,
/// `application/grpc-web`, ...
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// A trailers-only gRPC response: HTTP 200, the status in the headers, no body. This is what
/// every reply strait makes itself for a gRPC request looks like.
pub fn trailers_only(code: Code, message: &str) -> Response<Body> {
    let mut response = Response::new(strait_core::empty());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS.clone(), code.header_value());
    if !message.is_empty() {
        headers.insert(GRPC_MESSAGE.clone(), encode_message(message));
    }
    response
}

/// The trailers that end a gRPC response strait cuts short (a deadline, an idle stream)
/// after some of it was forwarded: `grpc-status` and, when there is one, `grpc-message`.
pub fn status_trailers(code: Code, message: &str) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert(GRPC_STATUS.clone(), code.header_value());
    if !message.is_empty() {
        trailers.insert(GRPC_MESSAGE.clone(), encode_message(message));
    }
    trailers
}

/// Percent-encodes a `grpc-message` as the spec asks: printable ASCII but `%` stays, every
/// other byte of the UTF-8 becomes `%XX`.
pub fn encode_message(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    // Only visible ASCII remains, which is always a valid header value.
    HeaderValue::from_str(&out).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_only_has_status_and_type() {
        let r = trailers_only(Code::Unavailable, "no endpoint for service `orders`");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(
            r.headers()["grpc-message"],
            "no endpoint for service `orders`"
        );
    }

    #[test]
    fn message_is_percent_encoded() {
        assert_eq!(encode_message("50% done\n"), "50%25 done%0A");
        assert_eq!(encode_message("héllo"), "h%C3%A9llo");
    }

    #[test]
    fn grpc_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&h));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_grpc(&h));
    }
}

/// The gRPC code for an HTTP status, as the gRPC spec maps them for responses without a
/// `grpc-status` ("HTTP to gRPC status code mapping").
pub fn code_for_http_status(status: http::StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

#[cfg(test)]
mod http_status_tests {
    use super::*;

    #[test]
    fn http_statuses_map_as_the_spec_says() {
        let code = |s: u16| code_for_http_status(http::StatusCode::from_u16(s).unwrap());
        assert_eq!(code(503), Code::Unavailable);
        assert_eq!(code(429), Code::Unavailable);
        assert_eq!(code(404), Code::Unimplemented);
        assert_eq!(code(401), Code::Unauthenticated);
        assert_eq!(code(500), Code::Unknown);
    }
}
