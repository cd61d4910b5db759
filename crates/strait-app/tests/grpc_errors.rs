//! Errors strait makes itself: trailers-only gRPC responses with the right code for gRPC
//! requests, short plain-text statuses for everything else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use h2::Reason;
use strait_grpc::echo::EchoRequest;
use strait_test::backend::TestBackend;
use strait_test::raw::{self, SilentBackend};
use strait_test::{closed_port, echo_client, single_service_config, start_strait};
use tonic::Code;

fn hello() -> EchoRequest {
    EchoRequest {
        payload: "hi".into(),
        repeat: 0,
    }
}

/// Sends one gRPC request over raw HTTP/2 and returns the response head and whether the
/// stream ended with it (trailers-only).
async fn raw_grpc_call(addr: std::net::SocketAddr, path: &str) -> (http::response::Parts, bool) {
    let mut h2 = raw::h2_connect(addr).await;
    let head = raw::grpc_request(addr, path).body(()).unwrap();
    let (response, _) = h2.send_request(head, true).unwrap();
    let response = response.await.unwrap();
    let (parts, body) = response.into_parts();
    (parts, body.is_end_stream())
}

#[tokio::test]
async fn backend_down_is_unavailable_as_a_grpc_response() {
    let url = format!("h2c://127.0.0.1:{}", closed_port().await);
    let strait = start_strait(&single_service_config(&[url])).await;
    let addr = strait.entrypoint("web").unwrap();

    let status = echo_client(addr).await.unary(hello()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "upstream connect error");

    let (head, trailers_only) = raw_grpc_call(addr, "/strait.echo.v1.Echo/Unary").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["content-type"], "application/grpc");
    assert_eq!(head.headers["grpc-status"], "14");
    assert!(trailers_only, "the error must be a trailers-only response");
}

#[tokio::test]
async fn no_route_is_unimplemented() {
    let backend = TestBackend::start().await;
    let yaml = format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         routers:\n  orders: {{ match: {{ grpc_service: shop.Orders }}, service: b }}\n\
         services:\n  b: {{ servers: ['{}'] }}\n",
        backend.url()
    );
    let strait = start_strait(&yaml).await;
    let addr = strait.entrypoint("web").unwrap();

    let status = echo_client(addr).await.unary(hello()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(
        status.message().contains("no router"),
        "{}",
        status.message()
    );
    assert_eq!(backend.calls(), 0);

    let (head, trailers_only) = raw_grpc_call(addr, "/other.Service/Call").await;
    assert_eq!(head.headers["grpc-status"], "12");
    assert!(trailers_only);
}

#[tokio::test]
async fn upstream_reset_before_response_is_unavailable() {
    let backend = SilentBackend::resetting(Reason::INTERNAL_ERROR).await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let addr = strait.entrypoint("web").unwrap();

    let status = echo_client(addr).await.unary(hello()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(backend.request_count(), 1);
}

#[tokio::test]
async fn plain_http_errors_are_http_statuses() {
    let url = format!("http://127.0.0.1:{}", closed_port().await);
    let yaml = format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         routers:\n  api: {{ match: {{ path_prefix: /api/ }}, service: b }}\n\
         services:\n  b: {{ servers: ['{url}'] }}\n"
    );
    let strait = start_strait(&yaml).await;
    let addr = strait.entrypoint("web").unwrap();
    let mut h2 = raw::h2_connect(addr).await;

    for (path, status) in [("/nothing-here", 404), ("/api/x", 502)] {
        let head = http::Request::get(format!("http://{addr}{path}"))
            .body(())
            .unwrap();
        let (response, _) = h2.send_request(head, true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert!(response.headers().get("grpc-status").is_none());
    }
}
