//! Connection lifecycle: maximum age with a graceful GOAWAY, keepalive on the upstream leg,
//! and a panic costing one request only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use strait_grpc::echo::EchoRequest;
use strait_test::backend::TestBackend;
use strait_test::{assert_eventually, echo_client, http1, start_strait};
use tokio::net::TcpListener;

fn config(backend: &str, entrypoint_extra: &str, service_extra: &str) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0 }}\n\
         entrypoints:\n  web:\n    address: 127.0.0.1:0\n{entrypoint_extra}\
         routers:\n  all: {{ service: b }}\n\
         services:\n  b:\n    servers: ['{backend}']\n{service_extra}"
    )
}

/// The `/metrics` text and the client connections accepted so far, over all labels.
async fn connections_opened(strait: &strait_test::Running) -> (String, f64) {
    let (_, metrics) = http1(strait.admin().unwrap(), "GET", "/metrics", &[]).await;
    let opened = metrics
        .lines()
        .filter(|l| l.starts_with("strait_connections_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    (metrics, opened)
}

#[tokio::test]
async fn a_panic_costs_one_request_only() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&config(&backend.url(), "", "")).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    let mut faulty = tonic::Request::new(EchoRequest::default());
    faulty
        .metadata_mut()
        .insert("x-strait-fault-panic", "1".parse().unwrap());
    let status = client.unary(faulty).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal);
    assert_eq!(status.message(), "internal error in strait");

    // The same connection keeps serving.
    client.unary(EchoRequest::default()).await.unwrap();
    let (_, metrics) = http1(strait.admin().unwrap(), "GET", "/metrics", &[]).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("strait_panics_total{router=\"all\"} 1")),
        "{metrics}"
    );
}

/// An idle client connection past its maximum age gets a graceful GOAWAY and closes; the
/// client reconnects without a failed call.
#[tokio::test]
async fn max_connection_age_goaways_idle_connections() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&config(
        &backend.url(),
        "    max_connection_age: 300ms\n    max_connection_age_grace: 5s\n",
        "",
    ))
    .await;
    let addr = strait.entrypoint("web").unwrap();

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (_send, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    assert_eventually!(
        connection.is_finished(),
        Duration::from_secs(10),
        "idle connection not aged out"
    );
    // A clean GOAWAY, not a broken connection.
    connection.await.unwrap().unwrap();

    let mut client = echo_client(addr).await;
    for _ in 0..5 {
        client.unary(EchoRequest::default()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (metrics, opened) = connections_opened(&strait).await;
    assert!(
        opened >= 3.0,
        "the client kept one connection for 1 s: {metrics}"
    );
}

/// A backend that accepts a stream and then freezes (answers no PING) is detected by the
/// upstream keepalive: the call fails instead of hanging forever.
#[tokio::test]
async fn upstream_keepalive_detects_a_frozen_backend() {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let frozen = listener.local_addr().unwrap();
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut connection = h2::server::handshake(socket).await.unwrap();
        let stream = connection.accept().await.unwrap().unwrap();
        accepted_tx.send(()).await.unwrap();
        // Frozen: the connection is never polled again, so PINGs go unanswered.
        std::future::pending::<()>().await;
        drop((connection, stream));
    });
    let strait = start_strait(&config(
        &format!("h2c://{frozen}"),
        "",
        "    http2: { keepalive_interval: 200ms, keepalive_timeout: 300ms }\n",
    ))
    .await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;
    let call = tokio::spawn(async move { client.unary(EchoRequest::default()).await });
    accepted_rx.recv().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the frozen backend was noticed")
        .unwrap();
    assert_eq!(result.unwrap_err().code(), tonic::Code::Unavailable);
}

/// `idle_timeout` retires a connection with nothing open, never one with an open stream,
/// however quiet that stream is.
#[tokio::test]
async fn idle_timeout_spares_connections_with_open_streams() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&config(&backend.url(), "    idle_timeout: 300ms\n", "")).await;
    let addr = strait.entrypoint("web").unwrap();

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (_send, connection) = h2::client::handshake(tcp).await.unwrap();
    let idle = tokio::spawn(connection);
    assert_eventually!(
        idle.is_finished(),
        Duration::from_secs(10),
        "idle connection kept"
    );
    idle.await.unwrap().unwrap();

    let mut client = echo_client(addr).await;
    let (tx, mut replies) = strait_test::open_bidi(&mut client).await;
    // Three idle timeouts of silence on an open stream.
    tokio::time::sleep(Duration::from_millis(900)).await;
    tx.send(EchoRequest::default()).await.unwrap();
    assert!(
        replies.message().await.unwrap().is_some(),
        "the quiet stream survived"
    );
    // The connection was never told to go away: a new call still uses it.
    client.unary(EchoRequest::default()).await.unwrap();
    let (metrics, opened) = connections_opened(&strait).await;
    assert_eq!(opened, 2.0, "the busy connection was replaced: {metrics}");
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
}
