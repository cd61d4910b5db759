//! Upstream connections are shared: HTTP/2 streams multiplex up to the backend's
//! SETTINGS_MAX_CONCURRENT_STREAMS and a new connection opens only past it; HTTP/1.1
//! connections are kept and reused. Every request is balanced on its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use strait_grpc::echo::EchoRequest;
use strait_test::backend::{hanging, TestBackend};
use strait_test::http_echo::HttpEcho;
use strait_test::{assert_eventually, echo_client, single_service_config, start_strait};

#[tokio::test]
async fn a_new_connection_opens_when_the_backend_stream_limit_is_reached() {
    let backend = TestBackend::start_with_max_streams(Some(10)).await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let client = echo_client(strait.entrypoint("web").unwrap()).await;

    // One call first, so strait has read the backend's SETTINGS.
    client.clone().unary(EchoRequest::default()).await.unwrap();
    assert_eq!(backend.connections(), 1);

    let calls: Vec<_> = (0..25)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.unary(hanging()).await })
        })
        .collect();
    assert_eventually!(backend.calls() == 26);
    assert_eq!(
        backend.connections(),
        3,
        "25 open streams at 10 per connection"
    );
    for call in calls {
        call.abort();
    }
    assert_eventually!(backend.cancelled() == 25);

    // The freed connections take new streams again without opening more.
    client.clone().unary(EchoRequest::default()).await.unwrap();
    assert_eq!(backend.connections(), 3);
}

#[tokio::test]
async fn requests_are_balanced_one_by_one_with_weights() {
    let light = TestBackend::start().await;
    let heavy = TestBackend::start().await;
    let yaml = format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\nrouters:\n  all: {{ service: b }}\n\
         services:\n  b:\n    load_balancer: weighted\n    servers:\n      - {{ url: '{}', weight: 1 }}\n      - {{ url: '{}', weight: 3 }}\n",
        light.url(),
        heavy.url()
    );
    let strait = start_strait(&yaml).await;
    // One client connection: a connection-level balancer would send everything to one
    // backend.
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;
    for _ in 0..40 {
        client.unary(EchoRequest::default()).await.unwrap();
    }
    assert_eq!((light.calls(), heavy.calls()), (10, 30));
}

#[tokio::test]
async fn http1_upstream_connections_are_reused() {
    let backend = HttpEcho::start().await;
    let strait = start_strait(&single_service_config(&[backend.url("http")])).await;
    let addr = strait.entrypoint("web").unwrap();
    let mut h2 = strait_test::raw::h2_connect(addr).await;
    for i in 0..10 {
        let head = http::Request::get(format!("http://{addr}/r{i}"))
            .body(())
            .unwrap();
        let (response, _) = h2.send_request(head, true).unwrap();
        let mut body = response.await.unwrap().into_body();
        while let Some(chunk) = body.data().await {
            chunk.unwrap();
        }
    }
    assert_eq!(backend.requests(), 10);
    assert_eq!(backend.connections(), 1);
}

/// A backend that accepts TCP and hangs up at once: requests keep failing fast, but strait
/// does not open a connection for each of them (exponential backoff with jitter).
#[tokio::test]
async fn failing_connects_back_off() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let strait = start_strait(&single_service_config(&[format!("h2c://{addr}")])).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;
    for _ in 0..20 {
        let status = client.unary(EchoRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }
    // Waits of at least 50, 100, 200, 400 ms... after each failure: 20 quick calls fit in a
    // handful of attempts even on a slow machine.
    let attempts = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=5).contains(&attempts),
        "{attempts} connects for 20 calls"
    );
}

/// Service connection lifecycle: an HTTP/2 connection past `max_connection_age` takes no new
/// requests (the next one opens a new connection), and idle connections close after
/// `idle_timeout`, for both protocols.
#[tokio::test]
async fn service_connections_age_out_and_idle_out() {
    let grpc = TestBackend::start().await;
    let yaml = format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\nrouters:\n  all: {{ service: b }}\n\
         services:\n  b:\n    servers: ['{}']\n    max_connection_age: 200ms\n",
        grpc.url()
    );
    let strait = start_strait(&yaml).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;
    client.unary(EchoRequest::default()).await.unwrap();
    assert_eq!(grpc.connections(), 1);
    let endpoint = strait.proxy().services()[0].endpoints()[0].clone();
    assert_eventually!(
        endpoint.open_connections() == 0,
        std::time::Duration::from_secs(10),
        "aged connection kept"
    );
    client.unary(EchoRequest::default()).await.unwrap();
    assert_eq!(grpc.connections(), 2);

    let http = HttpEcho::start().await;
    let yaml = format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\nrouters:\n  all: {{ service: b }}\n\
         services:\n  b:\n    servers: ['{}']\n    idle_timeout: 200ms\n",
        http.url("http")
    );
    let strait = start_strait(&yaml).await;
    let addr = strait.entrypoint("web").unwrap();
    let (status, _) = strait_test::http1(addr, "GET", "/one", &[]).await;
    assert_eq!(status, 200);
    let endpoint = strait.proxy().services()[0].endpoints()[0].clone();
    assert_eq!(endpoint.open_connections(), 1, "pooled after the response");
    assert_eventually!(
        endpoint.open_connections() == 0,
        std::time::Duration::from_secs(10),
        "idle connection kept"
    );
    let (status, _) = strait_test::http1(addr, "GET", "/two", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(http.connections(), 2);
}

/// A backend that sends GOAWAY while a stream is open: that stream finishes on the old
/// connection, the next request goes to a new one, and no call fails.
#[tokio::test]
async fn upstream_goaway_lets_streams_finish_and_moves_new_ones() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            tokio::spawn(async move {
                let mut connection = h2::server::handshake(socket).await.unwrap();
                while let Some(Ok((_request, mut respond))) = connection.accept().await {
                    if first {
                        // Going away: no new streams here, but this one is answered.
                        connection.graceful_shutdown();
                    }
                    let head = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(())
                        .unwrap();
                    let mut stream = respond.send_response(head, false).unwrap();
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    stream
                        .send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), false)
                        .unwrap();
                    stream.send_trailers(trailers).unwrap();
                }
            });
        }
    });
    let strait = start_strait(&single_service_config(&[format!("h2c://{addr}")])).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;
    for _ in 0..3 {
        client.unary(EchoRequest::default()).await.unwrap();
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "after the GOAWAY, one new connection"
    );
}
