//! What a request must pass before routing: header sizes, HTTP/1.1 framing that could
//! smuggle a second request, the body limit, and path normalisation. A request refused here
//! never reaches a backend.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Request, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use strait_core::{Body, BoxError};
use strait_grpc::Code;

use crate::limits::{Enforcer, Limit};
use crate::normalize::normalize_path;
use crate::ConnInfo;

/// A request let through, and what its response needs to know.
pub(crate) struct Admitted {
    pub(crate) request: Request<Body>,
    pub(crate) check: BodyCheck,
}

/// Whether the request body went over its limit while it streamed.
pub(crate) struct BodyCheck {
    over: Option<Arc<AtomicBool>>,
    grpc: bool,
    http1: bool,
}

/// Checks `request` against its entrypoint's limits: the request to route, or the answer.
pub(crate) async fn admit(
    request: Request<Body>,
    conn: &ConnInfo,
    enforcer: &Enforcer,
) -> Result<Admitted, Response<Body>> {
    let limits = &conn.listener.limits;
    let grpc = strait_grpc::is_grpc(request.headers());
    let http1 = request.version() <= Version::HTTP_11;
    let refuse = |limit: Limit, status: StatusCode, message: String| {
        enforcer.fired(limit, conn.remote);
        refusal(status, grpc, http1, &message)
    };

    // One pass over the headers for both size limits: the largest header, and the header
    // list's size as HTTP/2 counts it (RFC 9113 §6.5.2: name + value + 32 each).
    let max_header = limits.max_header_size as usize;
    let mut list = 0;
    let mut oversized = None;
    for (name, value) in request.headers() {
        let size = name.as_str().len() + value.len();
        list += size + 32;
        if size > max_header && oversized.is_none() {
            oversized = Some((name, size));
        }
    }
    if let Some((name, size)) = oversized {
        return Err(refuse(
            Limit::HeaderSize,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request header `{name}` is {size} bytes, over the limit of {max_header} on entrypoint `{}` (raise `limits.max_header_size`)",
                conn.entrypoint
            ),
        ));
    }
    // The HTTP/2 engine decodes header lists up to a bound above this limit, so a request
    // over it is answered here, on its own stream, and its connection's other streams go on.
    if !http1 {
        let max_list = conn
            .listener
            .http2
            .max_header_list_size
            .unwrap_or(strait_config::DEFAULT_MAX_HEADER_LIST_SIZE) as usize;
        let list = list + pseudo_header_size(&request);
        if list > max_list {
            return Err(refuse(
                Limit::HeaderListSize,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "request header list is {list} bytes, over the limit of {max_list} on entrypoint `{}` (raise `http2.max_header_list_size`)",
                    conn.entrypoint
                ),
            ));
        }
    }

    let (mut parts, body) = request.into_parts();
    let paths = conn.listener.path_normalization;
    if paths.dot_segments || paths.merge_slashes {
        if let Some(path) = normalize_path(parts.uri.path(), paths) {
            let mut uri = parts.uri.clone().into_parts();
            let with_query = match parts.uri.query() {
                Some(query) => format!("{path}?{query}"),
                None => path,
            };
            if let Ok(path_and_query) = with_query.parse() {
                uri.path_and_query = Some(path_and_query);
                if let Ok(normalized) = http::Uri::from_parts(uri) {
                    parts.uri = normalized;
                }
            }
        }
    }

    let max_body = if grpc {
        limits.max_grpc_request_body
    } else {
        limits.max_request_body
    };
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let (Some(max), Some(declared)) = (max_body, declared) {
        if declared > max {
            return Err(refuse(
                Limit::RequestBody,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body of {declared} bytes is over this entrypoint's limit of {max}"
                ),
            ));
        }
    }

    // HTTP/1.1 chunked bodies are checked up to their first chunk before anything goes
    // upstream: a malformed chunk size (the usual way to smuggle a request) is refused
    // instead of forwarding a request whose body then breaks.
    let mut body = body;
    if http1 && parts.headers.contains_key(TRANSFER_ENCODING) {
        let first = tokio::time::timeout(limits.header_read_timeout, body.frame()).await;
        body = match first {
            Err(_) => {
                return Err(refuse(
                    Limit::HeaderReadTimeout,
                    StatusCode::REQUEST_TIMEOUT,
                    "no request body within header_read_timeout".to_owned(),
                ))
            }
            Ok(Some(Err(e))) => {
                return Err(refuse(
                    Limit::Http1Framing,
                    StatusCode::BAD_REQUEST,
                    format!("malformed chunked request body: {e}"),
                ))
            }
            Ok(None) => strait_core::empty(),
            Ok(Some(Ok(frame))) => strait_core::boxed(Prepended {
                first: Some(frame),
                rest: body,
            }),
        };
    }

    let body_over = max_body.map(|_| Arc::new(AtomicBool::new(false)));
    if let (Some(max), Some(over)) = (max_body, &body_over) {
        body = strait_core::boxed(Limited {
            inner: body,
            left: max,
            over: over.clone(),
        });
    }
    Ok(Admitted {
        request: Request::from_parts(parts, body),
        check: BodyCheck {
            over: body_over,
            grpc,
            http1,
        },
    })
}

/// What the request's pseudo-headers add to its HTTP/2 header list size.
fn pseudo_header_size(request: &Request<Body>) -> usize {
    let uri = request.uri();
    let field = |name: &str, value: usize| name.len() + value + 32;
    field(":method", request.method().as_str().len())
        + field(":scheme", uri.scheme_str().map_or(0, str::len))
        + field(
            ":authority",
            uri.authority().map_or(0, |a| a.as_str().len()),
        )
        + field(
            ":path",
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        )
}

/// Answers for refused requests: gRPC gets `RESOURCE_EXHAUSTED` (or `INTERNAL` for a
/// malformed request) trailers-only; HTTP/1.1 connections close after the answer, since what
/// follows on them can no longer be trusted to start a request.
fn refusal(status: StatusCode, grpc: bool, http1: bool, message: &str) -> Response<Body> {
    let mut response = if grpc {
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
                Code::ResourceExhausted
            }
            StatusCode::REQUEST_TIMEOUT => Code::DeadlineExceeded,
            _ => Code::Internal,
        };
        strait_grpc::trailers_only(code, message)
    } else {
        let mut response = Response::new(strait_core::full(format!("{message}\n")));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    };
    if http1 {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

// === impl BodyCheck ===

impl BodyCheck {
    /// The response to send: the handler's, unless the body went over its limit on the way,
    /// in which case the client learns that rather than whatever the backend made of a cut
    /// body.
    pub(crate) fn finish(
        self,
        response: Response<Body>,
        conn: &ConnInfo,
        enforcer: &Enforcer,
    ) -> Response<Body> {
        if !self.over.is_some_and(|over| over.load(Ordering::Acquire)) {
            return response;
        }
        enforcer.fired(Limit::RequestBody, conn.remote);
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            self.grpc,
            self.http1,
            "request body is over this entrypoint's limit",
        )
    }
}

/// A body whose first frame was already read.
struct Prepended {
    first: Option<Frame<Bytes>>,
    rest: Body,
}

impl http_body::Body for Prepended {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }
}

/// A body that fails once more than `left` bytes have passed.
struct Limited {
    inner: Body,
    left: u64,
    over: Arc<AtomicBool>,
}

impl http_body::Body for Limited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            if let Some(data) = frame.data_ref() {
                let len = data.len() as u64;
                if len > self.left {
                    self.over.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(
                        "request body over the entrypoint's limit".into()
                    )));
                }
                self.left -= len;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
