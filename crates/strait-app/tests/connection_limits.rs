//! The connection layer of a service's circuit breakers: with `max_connections` reached,
//! requests wait for a stream (HTTP/2) or a connection (HTTP/1.1) to free up instead of
//! opening another; past `max_pending` waiting requests they are turned away at once with
//! UNAVAILABLE / 503.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use strait_grpc::echo::EchoRequest;
use strait_test::backend::{hanging, TestBackend};
use strait_test::http_echo::HttpEcho;
use strait_test::{assert_eventually, echo_client, http1, start_strait, Running};

const WAIT: Duration = Duration::from_secs(10);

fn config(server: &str, limits: &str) -> String {
    format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         routers:\n  all: {{ service: b }}\n\
         services:\n  b:\n    servers: ['{server}']\n    circuit_breakers: {{ {limits} }}\n"
    )
}

fn pending(strait: &Running) -> usize {
    strait.proxy().services()[0].endpoints()[0].pending_requests()
}

#[tokio::test]
async fn http2_requests_wait_for_a_stream_on_the_one_allowed_connection() {
    let backend = TestBackend::start_with_max_streams(Some(2)).await;
    let strait = start_strait(&config(
        &backend.url(),
        "max_connections: 1, max_pending: 2",
    ))
    .await;
    let client = echo_client(strait.entrypoint("web").unwrap()).await;
    // One call first, so strait has read the backend's SETTINGS (2 streams).
    client.clone().unary(EchoRequest::default()).await.unwrap();

    let hung: Vec<_> = (0..2)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.unary(hanging()).await })
        })
        .collect();
    assert_eventually!(
        backend.calls() == 3,
        WAIT,
        "hanging calls not at the backend"
    );

    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.unary(EchoRequest::default()).await })
        })
        .collect();
    assert_eventually!(pending(&strait) == 2, WAIT, "calls not waiting");

    let status = tokio::time::timeout(WAIT, client.clone().unary(EchoRequest::default()))
        .await
        .expect("the call past max_pending is answered at once")
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("max_pending"), "{status:?}");
    assert_eq!(backend.calls(), 3, "nothing more reached the backend");
    let metrics = strait.metrics().encode();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("strait_rejected_requests_total")
                && l.contains("reason=\"max_pending\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );

    for call in hung {
        call.abort();
    }
    for call in waiting {
        tokio::time::timeout(WAIT, call)
            .await
            .expect("a waiting call completes once a stream frees up")
            .unwrap()
            .unwrap();
    }
    assert_eq!(pending(&strait), 0);
    assert_eq!(backend.calls(), 5);
    assert_eq!(backend.connections(), 1, "the limit is one connection");
}

/// An HTTP/1.1 endpoint limited to one connection and one waiting request, with one request
/// held at the backend on that connection and a second one waiting for it.
async fn one_held_one_waiting() -> (HttpEcho, Running, HttpCall, HttpCall) {
    let backend = HttpEcho::start().await;
    let strait = start_strait(&config(
        &backend.url("http"),
        "max_connections: 1, max_pending: 1",
    ))
    .await;
    let addr = strait.entrypoint("web").unwrap();

    let held = tokio::spawn(http1(addr, "GET", "/held", &[("x-test", "hang")]));
    assert_eventually!(
        backend.requests() == 1,
        WAIT,
        "held request not at the backend"
    );
    let waiting = tokio::spawn(http1(addr, "GET", "/waiting", &[]));
    assert_eventually!(pending(&strait) == 1, WAIT, "request not waiting");
    (backend, strait, held, waiting)
}

type HttpCall = tokio::task::JoinHandle<(u16, String)>;

#[tokio::test]
async fn http1_requests_wait_for_the_one_allowed_connection() {
    let (backend, strait, held, waiting) = one_held_one_waiting().await;
    let addr = strait.entrypoint("web").unwrap();

    let (status, body) = tokio::time::timeout(WAIT, http1(addr, "GET", "/rejected", &[]))
        .await
        .expect("the request past max_pending is answered at once");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("max_pending"), "{body}");
    assert_eq!(backend.requests(), 1, "nothing more reached the backend");

    backend.release_held();
    for request in [held, waiting] {
        let (status, body) = tokio::time::timeout(WAIT, request)
            .await
            .expect("answered once the connection is free")
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(backend.requests(), 2);
    assert_eq!(backend.connections(), 1, "the limit is one connection");
}

/// Waiting requests whose clients go away give their places back.
#[tokio::test]
async fn abandoned_waiting_requests_leave_the_queue() {
    let (backend, strait, _held, waiting) = one_held_one_waiting().await;
    let addr = strait.entrypoint("web").unwrap();
    waiting.abort();
    assert_eventually!(
        pending(&strait) == 0,
        WAIT,
        "abandoned request kept its place"
    );

    // Its place is free for another request, which then gets the connection.
    let next = tokio::spawn(http1(addr, "GET", "/next", &[]));
    assert_eventually!(pending(&strait) == 1, WAIT, "request not waiting");
    backend.release_held();
    let (status, body) = tokio::time::timeout(WAIT, next).await.unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend.connections(), 1);
}
