//! Cancellation crosses the proxy at once in both directions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use h2::Reason;
use strait_test::backend::{hanging, TestBackend};
use strait_test::raw::{self, SilentBackend};
use strait_test::{assert_eventually, echo_client, single_service_config, start_strait};

/// The client resets its stream; the backend receives RST_STREAM(CANCEL).
#[tokio::test]
async fn client_reset_reaches_the_backend_as_cancel() {
    let backend = SilentBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let addr = strait.entrypoint("web").unwrap();

    let mut h2 = raw::h2_connect(addr).await;
    let head = raw::grpc_request(addr, "/strait.echo.v1.Echo/Bidi")
        .body(())
        .unwrap();
    let (_response, mut body) = h2.send_request(head, false).unwrap();
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false)
        .unwrap();
    assert_eventually!(backend.request_count() == 1);

    body.send_reset(Reason::CANCEL);
    assert_eventually!(backend.resets() == vec![Reason::CANCEL]);
}

/// Unary call in flight, request fully sent: the client resets and the backend is told.
#[tokio::test]
async fn client_reset_after_request_end_reaches_the_backend() {
    let backend = SilentBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let addr = strait.entrypoint("web").unwrap();

    let mut h2 = raw::h2_connect(addr).await;
    let head = raw::grpc_request(addr, "/strait.echo.v1.Echo/Unary")
        .body(())
        .unwrap();
    let (_response, mut body) = h2.send_request(head, false).unwrap();
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    assert_eventually!(backend.request_count() == 1);

    body.send_reset(Reason::CANCEL);
    assert_eventually!(backend.resets() == vec![Reason::CANCEL]);
}

/// The client disconnects: every stream it had open is reset upstream.
#[tokio::test]
async fn client_disconnect_resets_upstream_streams() {
    let backend = SilentBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let addr = strait.entrypoint("web").unwrap();

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h2, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut keep = Vec::new();
    for _ in 0..3 {
        let head = raw::grpc_request(addr, "/strait.echo.v1.Echo/Bidi")
            .body(())
            .unwrap();
        keep.push(h2.send_request(head, false).unwrap());
    }
    assert_eventually!(backend.request_count() == 3);

    connection.abort();
    drop((h2, keep));
    assert_eventually!(backend.resets().len() == 3);
    assert!(
        backend.resets().iter().all(|r| *r == Reason::CANCEL),
        "{:?}",
        backend.resets()
    );
}

/// A tonic client drops a call the backend is still working on: the tonic handler is
/// cancelled.
#[tokio::test]
async fn tonic_call_dropped_cancels_the_backend_handler() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    let request = hanging();
    let call = tokio::spawn(async move { client.unary(request).await });
    assert_eventually!(backend.calls() == 1);
    call.abort();
    assert_eventually!(backend.cancelled() == 1);
}

/// The backend resets mid-stream: the client's stream is reset too.
#[tokio::test]
async fn upstream_reset_mid_stream_reaches_the_client() {
    // A raw backend that answers headers and one message, then resets when told to.
    let (reset_now, reset_signal) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::handshake(socket).await.unwrap();
        let (_request, mut respond) = conn.accept().await.unwrap().unwrap();
        let response = http::Response::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let mut stream = respond.send_response(response, false).unwrap();
        stream
            .send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false)
            .unwrap();
        let drive = async { while conn.accept().await.is_some() {} };
        tokio::select! {
            _ = drive => {}
            _ = reset_signal => {
                stream.send_reset(Reason::INTERNAL_ERROR);
                while conn.accept().await.is_some() {}
            }
        }
    });
    let strait = start_strait(&single_service_config(&[format!("h2c://{upstream}")])).await;
    let addr = strait.entrypoint("web").unwrap();

    let mut h2 = raw::h2_connect(addr).await;
    let head = raw::grpc_request(addr, "/strait.echo.v1.Echo/ServerStream")
        .body(())
        .unwrap();
    let (response, _) = h2.send_request(head, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("grpc-status").is_none(),
        "{response:?}"
    );
    let mut body = response.into_body();
    let first = body.data().await.unwrap().unwrap();
    assert_eq!(&first[..], &[0, 0, 0, 0, 0]);
    reset_now.send(()).unwrap();
    let err = match body.data().await {
        Some(Err(e)) => e,
        other => panic!("expected a reset, got {other:?}"),
    };
    assert_eq!(err.reason(), Some(Reason::INTERNAL_ERROR), "{err}");
}

/// An HTTP/1.1 client that hangs up while waiting for its response: the upstream stream is
/// reset too, mid-body or after the request ended.
#[tokio::test]
async fn http1_client_hanging_up_resets_the_upstream_stream() {
    use tokio::io::AsyncWriteExt;

    let backend = SilentBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let addr = strait.entrypoint("web").unwrap();

    // Mid-body: chunked request, one chunk sent, then the socket closes.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    assert_eventually!(backend.request_count() == 1);
    drop(tcp);
    assert_eventually!(backend.resets().len() == 1);

    // After the request: a complete GET, then the socket closes.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /wait HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eventually!(backend.request_count() == 2);
    drop(tcp);
    assert_eventually!(backend.resets().len() == 2);
    assert!(
        backend.resets().iter().all(|r| *r == Reason::CANCEL),
        "{:?}",
        backend.resets()
    );
}
