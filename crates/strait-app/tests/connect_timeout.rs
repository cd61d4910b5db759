//! A service's `connect_timeout`: a backend whose TCP connect never completes (its accept
//! backlog is full) or whose TLS handshake never starts (it accepts and says nothing) fails
//! the request with UNAVAILABLE once the timeout passes, the error names the endpoint and the
//! setting, and the proxy keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use strait_grpc::echo::EchoRequest;
use strait_test::backend::TestBackend;
use strait_test::{echo_client, start_strait, Running};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tonic::{Code, Request};

/// Router `slow` (catch-all) to service `b` with server `url` and `connect_timeout`; router
/// `healthy` (requests with `x-route: healthy`) to the h2c server `healthy`.
fn config(url: &str, connect_timeout: &str, healthy: &str, log: &Path) -> String {
    format!(
        "access_log: {{ path: '{}' }}\n\
         entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         routers:\n  slow: {{ service: b }}\n\
         \x20 healthy: {{ match: {{ headers: {{ x-route: healthy }} }}, service: h }}\n\
         services:\n  b:\n    servers: ['{url}']\n    connect_timeout: {connect_timeout}\n\
         \x20 h:\n    servers: ['{healthy}']\n",
        log.display(),
    )
}

/// Starts strait in front of `url`, makes one call that must time out, checks the error
/// the access log records (`want`), and that the healthy router still answers.
async fn times_out(url: &str, want: &str) -> Running {
    let healthy = TestBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let strait = start_strait(&config(url, "200ms", &healthy.url(), &log)).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    let status = client.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "upstream connect error");
    let line = strait_test::access_log_line(&log, "timed out").await;
    assert!(line.contains(want), "{line}");
    assert!(line.contains("\"grpc_status\":\"UNAVAILABLE\""), "{line}");

    let mut request = Request::new(EchoRequest {
        payload: "still here".into(),
        repeat: 0,
    });
    request
        .metadata_mut()
        .insert("x-route", "healthy".parse().unwrap());
    let reply = client.unary(request).await.unwrap();
    assert_eq!(&reply.into_inner().payload[..], b"still here");
    assert_eq!(healthy.calls(), 1);
    strait
}

/// A TLS backend that accepts the TCP connection and never answers the ClientHello: the
/// timeout covers the handshake too.
#[tokio::test]
async fn a_tls_backend_that_never_answers_times_out() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let want = format!(
        "connecting to endpoint https://{addr} timed out after 200ms (the service's \
         connect_timeout, which includes the TLS handshake)"
    );
    let _strait = times_out(&format!("https://{addr}"), &want).await;
    held.abort();
}

/// A listener whose accept backlog is full: the kernel drops further SYNs, so the TCP
/// connect itself never completes.
#[tokio::test]
async fn a_full_accept_backlog_times_out_the_tcp_connect() {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let _filled = fill_backlog(addr).await;
    let want = format!(
        "connecting to endpoint h2c://{addr} timed out after 200ms (the service's connect_timeout)"
    );
    let _strait = times_out(&format!("h2c://{addr}"), &want).await;
    drop(listener);
}

/// Connects to `addr` (never accepted) until a connect no longer completes, which is when
/// the backlog is full; returns the connections that fill it. A connect with room completes
/// in the kernel at once, so one that waits a whole second has found none.
async fn fill_backlog(addr: SocketAddr) -> Vec<TcpStream> {
    let mut filled = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => filled.push(stream),
            Ok(Err(e)) => panic!("connect to the unaccepting listener failed: {e}"),
            Err(_) => {
                assert!(
                    !filled.is_empty(),
                    "the first connect to {addr} did not complete"
                );
                return filled;
            }
        }
    }
    panic!("the accept backlog of {addr} never filled");
}
