//! Deadlines: strait enforces `grpc-timeout` and route timeouts itself, tells the backend the
//! time left, and cuts nothing by default.
//!
//! Tests whose outcome cannot change if the clock jumps run on Tokio's paused clock. With
//! real sockets the paused clock may jump to the next timer while bytes are still in flight
//! on loopback, so tests that need a message to arrive *before* a deadline use the real clock
//! with generous margins.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use h2::Reason;
use strait_grpc::echo::EchoRequest;
use strait_test::backend::{in_mode, TestBackend, GAP};
use strait_test::raw::{self, SilentBackend};
use strait_test::{assert_eventually, echo_client, single_service_config, start_strait};
use tokio::time::Instant;

/// A server stream in `gap` mode, its first message already read: the next comes after
/// [`GAP`] of silence.
async fn gap_stream(
    client: &mut strait_grpc::echo::EchoClient<tonic::transport::Channel>,
) -> tonic::Streaming<strait_grpc::echo::EchoReply> {
    let request = in_mode(
        tonic::Request::new(EchoRequest {
            payload: "a".into(),
            repeat: 0,
        }),
        "gap",
    );
    let mut stream = client.server_stream(request).await.unwrap().into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().index, 0);
    stream
}

fn config_with_route_timeout(url: &str, timeout: &str) -> String {
    format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         routers:\n  all: {{ service: b, timeout: {timeout} }}\n\
         services:\n  b: {{ servers: ['{url}'] }}\n"
    )
}

/// The backend never answers; strait answers DEADLINE_EXCEEDED when the client's 2 s are up,
/// and resets the upstream stream. A raw client is used because tonic would enforce the
/// deadline on its own.
#[tokio::test(start_paused = true)]
async fn strait_enforces_grpc_timeout_against_a_silent_backend() {
    let backend = SilentBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let addr = strait.entrypoint("web").unwrap();

    let mut h2 = raw::h2_connect(addr).await;
    let head = raw::grpc_request(addr, "/strait.echo.v1.Echo/Unary")
        .header("grpc-timeout", "2S")
        .body(())
        .unwrap();
    let started = Instant::now();
    let (response, _) = h2.send_request(head, true).unwrap();
    let response = response.await.unwrap();
    let waited = started.elapsed();

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "4");
    assert!(response.body().is_end_stream(), "trailers-only");
    assert!(
        waited >= Duration::from_secs(2),
        "answered after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");

    let sent = backend.observed.requests.lock().unwrap()[0].headers["grpc-timeout"].clone();
    let sent = strait_grpc::parse_timeout(sent.as_bytes()).unwrap();
    assert!(
        sent <= Duration::from_secs(2) && sent > Duration::from_millis(1900),
        "{sent:?}"
    );
    assert_eventually!(backend.resets() == vec![Reason::CANCEL]);
}

/// Mid-stream: the response has started when the deadline passes; the client gets
/// DEADLINE_EXCEEDED in the trailers after the messages it already had.
#[tokio::test]
async fn deadline_mid_stream_ends_with_deadline_exceeded_trailers() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&config_with_route_timeout(&backend.url(), "2s")).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    let mut stream = gap_stream(&mut client).await;
    let started = Instant::now();
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert!(
        started.elapsed() < GAP,
        "cut by the 2 s route timeout, not the gap"
    );
    assert_eventually!(backend.cancelled() == 1);
}

#[tokio::test]
async fn remaining_time_is_propagated_and_capped_by_the_route() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&config_with_route_timeout(&backend.url(), "5s")).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    // The client allows 30 s, the router 5 s: the backend must see at most 5 s.
    let mut request = tonic::Request::new(EchoRequest::default());
    request.set_timeout(Duration::from_secs(30));
    client.unary(request).await.unwrap();
    let seen = backend.last_metadata();
    let seen = strait_grpc::parse_timeout(seen.get("grpc-timeout").unwrap().as_bytes()).unwrap();
    assert!(
        seen <= Duration::from_secs(5) && seen > Duration::from_secs(4),
        "{seen:?}"
    );

    // The client allows 1 s, less than the router: the backend sees at most 1 s.
    let mut request = tonic::Request::new(EchoRequest::default());
    request.set_timeout(Duration::from_secs(1));
    client.unary(request).await.unwrap();
    let seen = backend.last_metadata();
    let seen = strait_grpc::parse_timeout(seen.get("grpc-timeout").unwrap().as_bytes()).unwrap();
    assert!(
        seen <= Duration::from_secs(1) && seen > Duration::from_millis(900),
        "{seen:?}"
    );
}

/// Nothing cuts a stream by default: a server stream with a 75 s silent gap completes.
#[tokio::test(start_paused = true)]
async fn a_silent_gap_of_75s_survives() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    let request = in_mode(
        tonic::Request::new(EchoRequest {
            payload: "a".into(),
            repeat: 0,
        }),
        "gap",
    );
    let started = Instant::now();
    let mut stream = client.server_stream(request).await.unwrap().into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().index, 0);
    assert_eq!(stream.message().await.unwrap().unwrap().index, 1);
    assert!(stream.message().await.unwrap().is_none());
    assert!(started.elapsed() >= GAP);
    assert!(backend.last_metadata().get("grpc-timeout").is_none());
}

/// A plain HTTP request past its route timeout gets 504.
#[tokio::test(start_paused = true)]
async fn route_timeout_for_plain_http_is_504() {
    let backend = SilentBackend::start().await;
    let strait = start_strait(&config_with_route_timeout(&backend.url(), "1s")).await;
    let addr = strait.entrypoint("web").unwrap();
    let mut h2 = raw::h2_connect(addr).await;
    let head = http::Request::get(format!("http://{addr}/slow"))
        .body(())
        .unwrap();
    let (response, _) = h2.send_request(head, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 504);
    assert!(backend.observed.requests.lock().unwrap()[0]
        .headers
        .get("grpc-timeout")
        .is_none());
}

/// A client-streaming call past its deadline while the client is still sending: the client
/// gets DEADLINE_EXCEEDED and the upstream stream is reset at once, not when the client stops.
#[tokio::test(start_paused = true)]
async fn deadline_resets_upstream_while_the_client_still_streams() {
    let backend = SilentBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let addr = strait.entrypoint("web").unwrap();

    let mut h2 = raw::h2_connect(addr).await;
    let head = raw::grpc_request(addr, "/strait.echo.v1.Echo/ClientStream")
        .header("grpc-timeout", "1S")
        .body(())
        .unwrap();
    let (response, mut body) = h2.send_request(head, false).unwrap();
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), false)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "4");
    assert_eventually!(backend.resets() == vec![Reason::CANCEL]);
    drop(body);
}

fn config_with_stream_idle_timeout(url: &str, timeout: &str) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0 }}\n\
         entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         routers:\n  quiet: {{ service: b, stream_idle_timeout: {timeout} }}\n\
         services:\n  b: {{ servers: ['{url}'] }}\n"
    )
}

fn idle_timeouts(strait: &strait_test::Running) -> f64 {
    strait
        .metrics()
        .encode()
        .lines()
        .find_map(|l| {
            l.strip_prefix("strait_stream_idle_timeouts_total{router=\"quiet\"} ")?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// `stream_idle_timeout` ends a server stream that has gone quiet: the client gets the
/// message it had, then DEADLINE_EXCEEDED naming the setting, and the backend's stream is
/// cancelled. Real clock: the first message must arrive before the timer runs out.
#[tokio::test]
async fn stream_idle_timeout_ends_a_quiet_stream_mid_response() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&config_with_stream_idle_timeout(&backend.url(), "1s")).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;
    let mut stream = gap_stream(&mut client).await;
    let started = Instant::now();
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert!(
        status.message().contains("stream_idle_timeout") && status.message().contains("quiet"),
        "{}",
        status.message()
    );
    assert!(
        started.elapsed() < GAP,
        "cut by the idle timeout, not the gap"
    );
    assert_eventually!(backend.cancelled() == 1);
    assert_eq!(idle_timeouts(&strait), 1.0);
}

/// Before the response head: a backend that never answers a request that sends nothing
/// more; gRPC gets DEADLINE_EXCEEDED, plain HTTP 504, and the upstream stream is reset.
#[tokio::test(start_paused = true)]
async fn stream_idle_timeout_before_the_response_head() {
    let backend = SilentBackend::start().await;
    let strait = start_strait(&config_with_stream_idle_timeout(&backend.url(), "2s")).await;
    let addr = strait.entrypoint("web").unwrap();
    let mut h2 = raw::h2_connect(addr).await;

    let head = raw::grpc_request(addr, "/strait.echo.v1.Echo/Unary")
        .body(())
        .unwrap();
    let started = Instant::now();
    let (response, _) = h2.send_request(head, true).unwrap();
    let response = response.await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(response.headers()["grpc-status"], "4");
    let message = response.headers()["grpc-message"].to_str().unwrap();
    assert!(message.contains("stream_idle_timeout"), "{message}");

    let head = http::Request::get(format!("http://{addr}/quiet"))
        .body(())
        .unwrap();
    let (response, _) = h2.send_request(head, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 504);
    assert_eventually!(backend.resets() == vec![Reason::CANCEL, Reason::CANCEL]);
    assert_eq!(idle_timeouts(&strait), 2.0);
}

/// DATA from the client counts as activity: a client stream that keeps sending is not cut,
/// however long it waits for the response; once it stops, the timer runs out. Real clock,
/// DATA every 200 ms against a 1 s timeout.
#[tokio::test]
async fn client_data_keeps_a_stream_alive() {
    let backend = SilentBackend::start().await;
    let strait = start_strait(&config_with_stream_idle_timeout(&backend.url(), "1s")).await;
    let addr = strait.entrypoint("web").unwrap();
    let mut h2 = raw::h2_connect(addr).await;
    let head = raw::grpc_request(addr, "/strait.echo.v1.Echo/ClientStream")
        .body(())
        .unwrap();
    let (mut response, mut body) = h2.send_request(head, false).unwrap();
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    while started.elapsed() < Duration::from_millis(2500) {
        ticks.tick().await;
        body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), false)
            .unwrap();
        assert!(
            futures_util::FutureExt::now_or_never(&mut response).is_none(),
            "cut after {:?} although the client kept sending",
            started.elapsed()
        );
    }
    let response = response.await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "4");
    assert_eq!(idle_timeouts(&strait), 1.0);
    drop(body);
}

/// Once the response streams, DATA either way re-arms the timer: a bidirectional stream
/// trading a message every 200 ms for 2.5 s outlives a 1 s `stream_idle_timeout`.
#[tokio::test]
async fn a_busy_stream_outlives_the_idle_timeout() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&config_with_stream_idle_timeout(&backend.url(), "1s")).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    while started.elapsed() < Duration::from_millis(2500) {
        ticks.tick().await;
        tx.send(EchoRequest {
            payload: "ping".into(),
            repeat: 0,
        })
        .await
        .unwrap();
        replies.message().await.unwrap().expect("a reply");
    }
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
    assert_eq!(idle_timeouts(&strait), 0.0);
}
