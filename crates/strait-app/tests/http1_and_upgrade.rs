//! One plaintext port serves HTTP/1.1, h2c with prior knowledge and h2c via `Upgrade`, and
//! translates between HTTP/1.1 and HTTP/2 in both directions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;

use strait_test::http_echo::HttpEcho;
use strait_test::{single_service_config, start_strait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes `request` on a fresh connection and reads until the server closes it.
async fn http1_exchange(addr: SocketAddr, request: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

fn curl(args: &[&str]) -> String {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D", "-"])
        .args(args)
        .output()
        .expect("curl is installed (apt-get install -y curl)");
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn http1_get_to_http1_backend_with_forwarding_headers() {
    let backend = HttpEcho::start().await;
    let strait = start_strait(&single_service_config(&[backend.url("http")])).await;
    let addr = strait.entrypoint("web").unwrap();

    let response = http1_exchange(
        addr,
        "GET /hello?x=1 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close, x-hop\r\n\
         x-hop: secret\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 192.0.2.9\r\nx-keep: yes\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("x-backend-version: HTTP/1.1"),
        "{response}"
    );
    assert!(response.contains("uri: /hello?x=1\n"), "{response}");
    assert!(response.contains("host: api.example.com\n"), "{response}");
    assert!(response.contains("x-keep: yes\n"), "{response}");
    assert!(
        response.contains("x-forwarded-for: 192.0.2.9, 127.0.0.1\n"),
        "{response}"
    );
    assert!(response.contains("x-forwarded-proto: http\n"), "{response}");
    assert!(
        response.contains("forwarded: for=127.0.0.1;proto=http;host=\"api.example.com\"\n"),
        "{response}"
    );
    assert!(
        !response.contains("x-hop"),
        "a header named in Connection leaked: {response}"
    );
    assert!(!response.contains("keep-alive: timeout"), "{response}");
}

#[tokio::test]
async fn http1_chunked_post_to_h2c_backend() {
    let backend = HttpEcho::start().await;
    let strait = start_strait(&single_service_config(&[backend.url("h2c")])).await;
    let addr = strait.entrypoint("web").unwrap();

    let response = http1_exchange(
        addr,
        "POST /upload HTTP/1.1\r\nHost: files.test\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("x-backend-version: HTTP/2.0"),
        "{response}"
    );
    assert!(response.contains("method: POST\n"), "{response}");
    assert!(
        response.contains("uri: http://files.test/upload\n"),
        "{response}"
    );
    assert!(
        response.ends_with("\n\nhello world") || response.contains("\n\nhello world"),
        "{response}"
    );
    assert!(
        !response.contains("transfer-encoding: chunked\n"),
        "hop-by-hop header reached the backend: {response}"
    );
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let backend = HttpEcho::start().await;
    let strait = start_strait(&single_service_config(&[backend.url("http")])).await;
    let addr = strait.entrypoint("web").unwrap();

    let response = http1_exchange(
        addr,
        "GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.matches("HTTP/1.1 200 OK").count(), 2, "{response}");
    assert!(response.contains("uri: /one") && response.contains("uri: /two"));
    assert_eq!(backend.requests(), 2);
}

#[tokio::test]
async fn h2_client_to_http1_backend() {
    let backend = HttpEcho::start().await;
    let strait = start_strait(&single_service_config(&[backend.url("http")])).await;
    let addr = strait.entrypoint("web").unwrap();
    let output = tokio::task::spawn_blocking(move || {
        curl(&[
            "--http2-prior-knowledge",
            "-d",
            "payload",
            &format!("http://{addr}/h2-to-h1"),
        ])
    })
    .await
    .unwrap();
    assert!(output.starts_with("HTTP/2 200"), "{output}");
    assert!(output.contains("x-backend-version: HTTP/1.1"), "{output}");
    assert!(output.contains("uri: /h2-to-h1\n"), "{output}");
    assert!(output.ends_with("\n\npayload"), "{output}");
}

/// `curl --http2` on an http:// URL sends `Upgrade: h2c`; strait switches and answers the
/// upgrade request itself over HTTP/2, then serves more requests on that connection.
#[tokio::test]
async fn upgrade_h2c_with_curl() {
    let backend = HttpEcho::start().await;
    let strait = start_strait(&single_service_config(&[backend.url("h2c")])).await;
    let addr = strait.entrypoint("web").unwrap();
    let output = tokio::task::spawn_blocking(move || {
        curl(&[
            "--http2",
            "-H",
            "x-custom: kept",
            &format!("http://{addr}/first?q=1"),
            &format!("http://{addr}/second"),
        ])
    })
    .await
    .unwrap();
    assert!(
        output.starts_with("HTTP/1.1 101 Switching Protocols"),
        "{output}"
    );
    assert_eq!(output.matches("HTTP/2 200").count(), 2, "{output}");
    assert!(output.contains("uri: http://127.0.0.1"), "{output}");
    assert!(output.contains("/first?q=1\n"), "{output}");
    assert!(output.contains("/second\n"), "{output}");
    assert!(output.contains("x-custom: kept\n"), "{output}");
    assert!(!output.contains("http2-settings:"), "{output}");
    assert!(!output.contains("upgrade: h2c\n"), "{output}");
    assert_eq!(backend.requests(), 2);
}

/// A request with a body is not upgraded (it would have to be buffered whole): it is served
/// over HTTP/1.1.
#[tokio::test]
async fn upgrade_with_body_is_served_as_http1() {
    let backend = HttpEcho::start().await;
    let strait = start_strait(&single_service_config(&[backend.url("h2c")])).await;
    let addr = strait.entrypoint("web").unwrap();
    let output = tokio::task::spawn_blocking(move || {
        curl(&["--http2", "-d", "body", &format!("http://{addr}/post")])
    })
    .await
    .unwrap();
    assert!(output.starts_with("HTTP/1.1 200"), "{output}");
    assert!(output.ends_with("\n\nbody"), "{output}");
}

#[tokio::test]
async fn prior_knowledge_with_curl() {
    let backend = HttpEcho::start().await;
    let strait = start_strait(&single_service_config(&[backend.url("h2c")])).await;
    let addr = strait.entrypoint("web").unwrap();
    let output = tokio::task::spawn_blocking(move || {
        curl(&["--http2-prior-knowledge", &format!("http://{addr}/pk")])
    })
    .await
    .unwrap();
    assert!(output.starts_with("HTTP/2 200"), "{output}");
    assert!(output.contains("x-backend-version: HTTP/2.0"), "{output}");
}
