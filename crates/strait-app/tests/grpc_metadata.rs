//! Headers, trailers and rich error details pass through strait byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strait_grpc::echo::EchoRequest;
use strait_test::backend::{self, in_mode, TestBackend};
use strait_test::{echo_client, single_service_config, start_strait};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

fn request(mode: Option<&str>, repeat: u32) -> Request<EchoRequest> {
    let request = Request::new(EchoRequest {
        payload: "x".into(),
        repeat,
    });
    match mode {
        Some(mode) => in_mode(request, mode),
        None => request,
    }
}

fn assert_rich_failure(status: &tonic::Status) {
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "precondition failed: ünïcode and 100%");
    assert_eq!(
        status.details(),
        &backend::details()[..],
        "grpc-status-details-bin changed"
    );
    let bin = status
        .metadata()
        .get_bin("x-trailer-bin")
        .expect("-bin trailer arrives");
    assert_eq!(bin.to_bytes().unwrap(), backend::TRAILER_BIN);
    assert_eq!(status.metadata().get("x-trailer").unwrap(), "trailer-value");
}

#[tokio::test]
async fn request_and_response_metadata_including_bin() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    let binary: &[u8] = &[0, 159, 146, 150, 255, 10];
    let mut call = request(None, 0);
    call.metadata_mut()
        .insert("x-echo-text", "plain".parse().unwrap());
    call.metadata_mut()
        .insert_bin("x-echo-bin", MetadataValue::from_bytes(binary));
    let response = client.unary(call).await.unwrap();

    assert_eq!(response.metadata().get("x-echo-text").unwrap(), "plain");
    let echoed = response.metadata().get_bin("x-echo-bin").unwrap();
    assert_eq!(echoed.to_bytes().unwrap(), binary);

    let seen = backend.last_metadata();
    assert_eq!(
        seen.get_bin("x-echo-bin").unwrap().to_bytes().unwrap(),
        binary
    );
    assert_eq!(
        seen.get("te").map(|v| v.to_str().unwrap()),
        Some("trailers")
    );
}

/// A unary error is a trailers-only response: status, message, details and metadata all in
/// the headers frame.
#[tokio::test]
async fn trailers_only_error_with_details_is_byte_exact() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    let status = client.unary(request(Some("details"), 0)).await.unwrap_err();
    assert_rich_failure(&status);
}

/// An error after messages travels in real trailers.
#[tokio::test]
async fn error_in_trailers_after_messages_is_byte_exact() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    let mut stream = client
        .server_stream(request(Some("fail-after"), 3))
        .await
        .unwrap()
        .into_inner();
    for i in 0..3 {
        assert_eq!(stream.message().await.unwrap().unwrap().index, i);
    }
    let status = stream.message().await.unwrap_err();
    assert_rich_failure(&status);
}

/// Trailers reach the client through the raw HTTP/2 frames too: grpc-status 0 in a real
/// trailers frame after the data.
#[tokio::test]
async fn ok_status_arrives_in_trailers() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let addr = strait.entrypoint("web").unwrap();

    let mut h2 = strait_test::raw::h2_connect(addr).await;
    let message = [0u8, 0, 0, 0, 3, 0x0a, 0x01, b'z'];
    let head = strait_test::raw::grpc_request(addr, "/strait.echo.v1.Echo/Unary")
        .body(())
        .unwrap();
    let (response, mut body) = h2.send_request(head, false).unwrap();
    body.send_data(bytes::Bytes::copy_from_slice(&message), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("grpc-status").is_none(),
        "not trailers-only"
    );
    let mut recv = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        let _ = recv.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    assert_eq!(data[5..], message[5..], "reply payload");
    let trailers = recv.trailers().await.unwrap().expect("a trailers frame");
    assert_eq!(trailers["grpc-status"], "0");
}
