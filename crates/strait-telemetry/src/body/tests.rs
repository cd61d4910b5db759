use std::sync::Mutex;

use futures_util::stream;
use http::HeaderValue;
use http_body_util::{BodyExt, StreamBody};

use super::*;

type Frames = Vec<Result<Frame<Bytes>, BoxError>>;

fn body_of(frames: Frames) -> Body {
    strait_core::boxed(StreamBody::new(stream::iter(frames)))
}

fn trailers(status: &str, message: Option<&str>) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_str(status).unwrap());
    if let Some(message) = message {
        trailers.insert("grpc-message", HeaderValue::from_str(message).unwrap());
    }
    trailers
}

/// A completion callback and the outcomes it saw.
fn recorder() -> (
    impl FnOnce(Outcome) + Send + Unpin + 'static,
    Arc<Mutex<Vec<Outcome>>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (move |outcome| sink.lock().unwrap().push(outcome), seen)
}

#[tokio::test]
async fn complete_stream_reports_trailer_status_once() {
    let (on_end, seen) = recorder();
    let body = strait_core::boxed(ObservedBody::new(
        body_of(vec![
            Ok(Frame::data(Bytes::from_static(b"hello"))),
            Ok(Frame::data(Bytes::from_static(b" world!"))),
            Ok(Frame::trailers(trailers("14", Some("backend%20down")))),
        ]),
        on_end,
    ));
    let collected = body.collect().await.unwrap();
    assert_eq!(
        collected.trailers().unwrap()["grpc-status"],
        "14",
        "trailers pass through untouched"
    );
    assert_eq!(collected.to_bytes(), "hello world!");
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        [Outcome {
            bytes: 12,
            grpc_status: Some(14),
            grpc_message: Some("backend down".into()),
            end: End::Complete,
            error: None,
        }]
    );
    assert_eq!(
        strait_grpc::Code::from_u32(seen[0].grpc_status.unwrap())
            .unwrap()
            .as_str(),
        "UNAVAILABLE"
    );
}

#[tokio::test]
async fn stream_without_trailers_completes_at_its_end() {
    let (on_end, seen) = recorder();
    let mut body = ObservedBody::new(
        body_of(vec![Ok(Frame::data(Bytes::from_static(b"abc")))]),
        on_end,
    );
    while let Some(frame) = body.frame().await {
        frame.unwrap();
    }
    assert_eq!(seen.lock().unwrap().len(), 1);
    drop(body);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "dropping after the end reports nothing more");
    assert_eq!(seen[0].end, End::Complete);
    assert_eq!(seen[0].bytes, 3);
    assert_eq!(seen[0].grpc_status, None);
}

#[tokio::test]
async fn error_mid_body_reports_error() {
    let (on_end, seen) = recorder();
    let mut body = ObservedBody::new(
        body_of(vec![
            Ok(Frame::data(Bytes::from_static(b"part"))),
            Err("upstream reset the stream".into()),
        ]),
        on_end,
    );
    assert!(body.frame().await.unwrap().is_ok());
    let err = body.frame().await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "upstream reset the stream");
    drop(body);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].end, End::Error);
    assert_eq!(seen[0].bytes, 4);
    assert_eq!(seen[0].error.as_deref(), Some("upstream reset the stream"));
}

#[tokio::test]
async fn dropped_early_reports_dropped_exactly_once() {
    let (on_end, seen) = recorder();
    let mut body = ObservedBody::new(
        body_of(vec![
            Ok(Frame::data(Bytes::from_static(b"first"))),
            Ok(Frame::data(Bytes::from_static(b"never read"))),
            Ok(Frame::trailers(trailers("0", None))),
        ]),
        on_end,
    );
    body.frame().await.unwrap().unwrap();
    assert!(seen.lock().unwrap().is_empty(), "nothing before the end");
    drop(body);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].end, End::Dropped);
    assert_eq!(seen[0].bytes, 5);
    assert_eq!(seen[0].grpc_status, None);
}

#[tokio::test]
async fn trailers_only_response_never_polled_is_complete() {
    let (on_end, seen) = recorder();
    let response = Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", "5")
        .header("grpc-message", "no such order")
        .body(strait_core::empty())
        .unwrap();
    let response = ObservedBody::observe_response(response, on_end);
    // hyper checks is_end_stream and sends the headers with END_STREAM, never polling.
    assert!(response.body().is_end_stream());
    drop(response);
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        [Outcome {
            bytes: 0,
            grpc_status: Some(5),
            grpc_message: Some("no such order".into()),
            end: End::Complete,
            error: None,
        }]
    );
}

#[tokio::test]
async fn trailers_override_header_status() {
    let (on_end, seen) = recorder();
    let response = Response::builder()
        .header("grpc-status", "0")
        .body(body_of(vec![Ok(Frame::trailers(trailers("13", None)))]))
        .unwrap();
    let response = ObservedBody::observe_response(response, on_end);
    response.into_body().collect().await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].grpc_status, Some(13));
    assert_eq!(seen[0].grpc_message, None);
}

#[tokio::test]
async fn counting_body_counts_request_bytes() {
    let count = Arc::new(AtomicU64::new(0));
    let body = CountingBody::wrap(
        body_of(vec![
            Ok(Frame::data(Bytes::from_static(b"0123456789"))),
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::trailers(trailers("0", None))),
        ]),
        count.clone(),
    );
    let collected = body.collect().await.unwrap();
    assert!(collected.trailers().is_some());
    assert_eq!(count.load(Ordering::Relaxed), 12);
}

#[test]
fn grpc_status_of_trailers_only_headers() {
    let headers = trailers("14", Some("upstream%20connect%20error%3A%20refused"));
    assert_eq!(
        grpc_status_of(&headers),
        Some((14, Some("upstream connect error: refused".into())))
    );
    assert_eq!(grpc_status_of(&trailers(" 0 ", None)), Some((0, None)));
    assert_eq!(grpc_status_of(&trailers("bogus", None)), Some((2, None)));
    assert_eq!(grpc_status_of(&HeaderMap::new()), None);
}

#[test]
fn grpc_message_percent_decoding() {
    assert_eq!(decode_grpc_message(b"plain text"), "plain text");
    assert_eq!(decode_grpc_message(b"100%25 sure"), "100% sure");
    // UTF-8 split over escapes: "café ✓".
    assert_eq!(decode_grpc_message(b"caf%C3%A9 %E2%9C%93"), "café ✓");
    // Malformed escapes are kept as they are.
    assert_eq!(decode_grpc_message(b"50% off %zz %4"), "50% off %zz %4");
    // Invalid UTF-8 becomes U+FFFD rather than losing the message.
    assert_eq!(decode_grpc_message(b"bad %FF byte"), "bad \u{FFFD} byte");
}
