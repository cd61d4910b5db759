use std::borrow::Cow;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::{Body as _, Frame, SizeHint};
use strait_core::{Body, BoxError};

/// How a response stream ended, and what it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Data bytes handed on (trailers and headers not counted).
    pub bytes: u64,
    /// `grpc-status` from the trailers, or from the response headers for a trailers-only
    /// response when the body was built with [`ObservedBody::observe_response`].
    pub grpc_status: Option<u32>,
    /// `grpc-message`, percent-decoded.
    pub grpc_message: Option<String>,
    pub end: End,
    /// The body error's text when `end` is [`End::Error`].
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum End {
    /// The body ended: its last frame (data or trailers) went out.
    Complete,
    /// The body failed midway (an upstream reset, a broken connection).
    Error,
    /// The body was dropped before its end: the client went away or reset the stream.
    Dropped,
}

/// A response body that counts data bytes, reads `grpc-status` and `grpc-message` from the
/// trailers, and calls `on_end` exactly once: at the end of the stream, on an error, or when
/// dropped early.
pub struct ObservedBody<F>
where
    F: FnOnce(Outcome),
{
    inner: Body,
    bytes: u64,
    grpc_status: Option<u32>,
    grpc_message: Option<String>,
    on_end: Option<F>,
}

/// A request body that adds its data bytes to a shared counter as they pass.
pub struct CountingBody {
    inner: Body,
    count: Arc<AtomicU64>,
}

// === impl End ===

impl End {
    /// The access log's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            End::Complete => "complete",
            End::Error => "error",
            End::Dropped => "dropped",
        }
    }
}

// === impl ObservedBody ===

impl<F> ObservedBody<F>
where
    F: FnOnce(Outcome) + Send + Unpin + 'static,
{
    pub fn new(inner: Body, on_end: F) -> ObservedBody<F> {
        ObservedBody {
            inner,
            bytes: 0,
            grpc_status: None,
            grpc_message: None,
            on_end: Some(on_end),
        }
    }

    /// Wraps a response's body. A `grpc-status` in the response headers (a trailers-only
    /// response) is what the outcome reports unless trailers say otherwise.
    pub fn observe_response(response: Response<Body>, on_end: F) -> Response<Body> {
        let (parts, body) = response.into_parts();
        let mut observed = ObservedBody::new(body, on_end);
        if let Some((code, message)) = grpc_status_of(&parts.headers) {
            observed.grpc_status = Some(code);
            observed.grpc_message = message;
        }
        Response::from_parts(parts, strait_core::boxed(observed))
    }

    fn finish(&mut self, end: End, error: Option<String>) {
        let Some(on_end) = self.on_end.take() else {
            return;
        };
        on_end(Outcome {
            bytes: self.bytes,
            grpc_status: self.grpc_status,
            grpc_message: self.grpc_message.take(),
            end,
            error,
        });
    }
}

impl<F> http_body::Body for ObservedBody<F>
where
    F: FnOnce(Outcome) + Send + Unpin + 'static,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            None => {
                this.finish(End::Complete, None);
                Poll::Ready(None)
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                } else if let Some((code, message)) = frame.trailers_ref().and_then(grpc_status_of)
                {
                    this.grpc_status = Some(code);
                    this.grpc_message = message;
                }
                // Trailers are always the last frame, and hyper stops polling once the body
                // says it has ended, so either is the end of the stream.
                if frame.is_trailers() || this.inner.is_end_stream() {
                    this.finish(End::Complete, None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(err)) => {
                this.finish(End::Error, Some(err.to_string()));
                Poll::Ready(Some(Err(err)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<F> Drop for ObservedBody<F>
where
    F: FnOnce(Outcome),
{
    fn drop(&mut self) {
        let Some(on_end) = self.on_end.take() else {
            return;
        };
        // A body that was empty from the start (a trailers-only response) is never polled:
        // the server sees `is_end_stream` and ends the stream with the headers. Dropping it
        // then is its normal end, not a client leaving.
        let end = if self.inner.is_end_stream() {
            End::Complete
        } else {
            End::Dropped
        };
        on_end(Outcome {
            bytes: self.bytes,
            grpc_status: self.grpc_status,
            grpc_message: self.grpc_message.take(),
            end,
            error: None,
        });
    }
}

impl<F: FnOnce(Outcome)> fmt::Debug for ObservedBody<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObservedBody")
            .field("bytes", &self.bytes)
            .field("grpc_status", &self.grpc_status)
            .field("ended", &self.on_end.is_none())
            .finish()
    }
}

// === impl CountingBody ===

impl CountingBody {
    pub fn new(inner: Body, count: Arc<AtomicU64>) -> CountingBody {
        CountingBody { inner, count }
    }

    /// Wraps `body`, counting into `count`, and boxes it back into a [`Body`].
    pub fn wrap(body: Body, count: Arc<AtomicU64>) -> Body {
        strait_core::boxed(CountingBody::new(body, count))
    }
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(data) = polled
            .as_ref()
            .and_then(|frame| frame.as_ref().ok())
            .and_then(Frame::data_ref)
        {
            this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl fmt::Debug for CountingBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingBody")
            .field("count", &self.count.load(Ordering::Relaxed))
            .finish()
    }
}

/// `grpc-status` and the percent-decoded `grpc-message` from a header block: the trailers,
/// or the headers of a trailers-only response. A `grpc-status` that is not a number counts
/// as 2 (UNKNOWN), the code a client would report for it.
pub fn grpc_status_of(headers: &HeaderMap) -> Option<(u32, Option<String>)> {
    let status = headers.get("grpc-status")?;
    let code = std::str::from_utf8(status.as_bytes())
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .unwrap_or(2);
    let message = headers
        .get("grpc-message")
        .map(|value| decode_grpc_message(value.as_bytes()).into_owned());
    Some((code, message))
}

/// Decodes a `grpc-message` value: percent-encoded UTF-8, as the gRPC HTTP/2 spec says.
/// A `%` not followed by two hex digits stays as it is, and invalid UTF-8 becomes U+FFFD,
/// so a malformed message is still shown rather than lost.
pub fn decode_grpc_message(value: &[u8]) -> Cow<'_, str> {
    if !value.contains(&b'%') {
        return String::from_utf8_lossy(value);
    }
    let mut decoded = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        let byte = value[i];
        if byte == b'%' {
            if let (Some(hi), Some(lo)) = (
                value.get(i + 1).and_then(|b| hex_value(*b)),
                value.get(i + 2).and_then(|b| hex_value(*b)),
            ) {
                decoded.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        decoded.push(byte);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&decoded).into_owned())
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
