//! How a plaintext entrypoint tells HTTP/1.1 from h2c when the first bytes arrive slowly, and
//! `protocols`: an entrypoint locked to HTTP/1.1 or to h2c refuses the other protocol clearly
//! (GOAWAY `HTTP_1_1_REQUIRED`, 505), ignores `Upgrade: h2c` where h2c is off, counts each
//! refusal by reason, and keeps serving what it allows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use h2::Reason;
use strait_test::http_echo::HttpEcho;
use strait_test::{http1, start_strait, Running};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One plaintext entrypoint `web` with `lines` in it (indented by 4), routing everything to
/// `backend` (an h2c:// or http:// URL).
fn config(lines: &str, backend: &str) -> String {
    format!(
        "entrypoints:\n  web:\n    address: 127.0.0.1:0\n{lines}\
         routers:\n  all: {{ service: backend }}\n\
         services:\n  backend:\n    servers: ['{backend}']\n"
    )
}

async fn start(lines: &str) -> (Running, HttpEcho, SocketAddr) {
    let backend = HttpEcho::start().await;
    let strait = start_strait(&config(lines, &backend.url("h2c"))).await;
    let addr = strait.entrypoint("web").unwrap();
    (strait, backend, addr)
}

/// The value of the sample `series` (name and labels exactly), 0 when absent.
fn sample(strait: &Running, series: &str) -> u64 {
    strait
        .metrics()
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// `strait_protocol_refused_total{entrypoint="web",reason=...}`.
fn refused(strait: &Running, reason: &str) -> u64 {
    sample(
        strait,
        &format!("strait_protocol_refused_total{{entrypoint=\"web\",reason=\"{reason}\"}}"),
    )
}

/// Writes `request` on a fresh connection and reads until the server closes it.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// A raw HTTP/2 client whose connection ends with the error it was given, if any.
async fn h2_connection_error(addr: SocketAddr) -> h2::Error {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (_send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the connection ended")
        .expect_err("the connection was refused")
}

/// A GET over HTTP/2 on `io`; the status.
async fn h2_get<T>(io: T, addr: SocketAddr) -> u16
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, connection) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::get(format!("http://{addr}/h2"))
        .body(())
        .unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    response.await.unwrap().status().as_u16()
}

/// A TCP stream whose client already wrote the preface itself: the first 24 bytes the HTTP/2
/// client writes (its own copy of the preface) are dropped.
struct PrefaceSent {
    tcp: TcpStream,
    skip: usize,
}

impl AsyncRead for PrefaceSent {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for PrefaceSent {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.skip > 0 {
            let n = self.skip.min(buf.len());
            self.skip -= n;
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

// === Sniffing slow first bytes ===

/// `P` is a prefix of the HTTP/2 preface, and of `POST`, `PUT` and `PATCH`: a client whose
/// first segment is just that gets its request served as HTTP/1.1 once the rest comes.
#[tokio::test]
async fn a_request_whose_first_segment_is_p_is_served_as_http1() {
    let (strait, _backend, addr) = start("").await;
    for method in ["POST", "PUT", "PATCH"] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"P").await.unwrap();
        // The client's pause; strait must not take it for HTTP/2 meanwhile (an HTTP/2
        // server would send its SETTINGS at once).
        let mut early = [0u8; 64];
        let answered = tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut early)).await;
        assert!(
            answered.is_err(),
            "{method}: strait answered `P` alone: {answered:?}"
        );
        let rest = format!(
            "{} /orders HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\
             Connection: close\r\n\r\nhello",
            &method[1..]
        );
        tcp.write_all(rest.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tcp.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 200 OK\r\n"),
            "{method}: {response}"
        );
        assert!(
            response.contains(&format!("method: {method}\n")),
            "{response}"
        );
        assert!(response.ends_with("\n\nhello"), "{response}");
    }
    assert_eq!(
        sample(
            &strait,
            "strait_connections_total{entrypoint=\"web\",protocol=\"h1\"}"
        ),
        3
    );
}

/// The preface one byte at a time, a pause after each: h2c once it is complete.
#[tokio::test]
async fn the_preface_a_byte_at_a_time_is_served_as_h2c() {
    let (strait, _backend, addr) = start("").await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    for byte in PREFACE {
        tcp.write_all(&[*byte]).await.unwrap();
        // The slow client's pause, not a synchronisation.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = h2_get(PrefaceSent { tcp, skip: 24 }, addr).await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(
            &strait,
            "strait_connections_total{entrypoint=\"web\",protocol=\"h2c\"}"
        ),
        1
    );
}

/// A client that stops inside the preface is closed at `header_read_timeout`, and counted
/// as that limit.
#[tokio::test]
async fn a_client_that_stalls_mid_preface_is_closed_at_the_header_read_timeout() {
    let (strait, _backend, addr) = start("    limits: { header_read_timeout: 200ms }\n").await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&PREFACE[..10]).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the stalled client was not closed");
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(
        sample(
            &strait,
            "strait_limit_exceeded_total{entrypoint=\"web\",limit=\"header_read_timeout\"}"
        ),
        1
    );
}

// === protocols: [http/1.1] ===

#[tokio::test]
async fn h2c_on_an_http1_only_entrypoint_gets_goaway_http_1_1_required() {
    let (strait, backend, addr) = start("    protocols: [http/1.1]\n").await;

    let err = h2_connection_error(addr).await;
    assert_eq!(err.reason(), Some(Reason::HTTP_1_1_REQUIRED), "{err}");
    assert!(err.is_go_away() && err.is_remote(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("entrypoint `web` serves only HTTP/1.1"),
        "{message}"
    );
    assert!(message.contains("`protocols`"), "{message}");
    assert_eq!(refused(&strait, "h2c_prior_knowledge"), 1);

    // A request on the refused connection fails too, and reaches no backend.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::get(format!("http://{addr}/"))
        .body(())
        .unwrap();
    let sent = match send.send_request(request, true) {
        Ok((response, _)) => response.await.map(|_| ()),
        Err(e) => Err(e),
    };
    let err = sent.expect_err("a request over h2c was served");
    assert_eq!(err.reason(), Some(Reason::HTTP_1_1_REQUIRED), "{err}");
    assert_eq!(refused(&strait, "h2c_prior_knowledge"), 2);

    // HTTP/1.1 is still served.
    let (status, body) = http1(addr, "GET", "/still", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend.requests(), 1);
    assert_eq!(refused(&strait, "http1"), 0);
}

/// `curl --http2` sends `Upgrade: h2c`; where h2c is off the request is served over
/// HTTP/1.1 and no 101 is sent.
#[tokio::test]
async fn upgrade_h2c_is_ignored_on_an_http1_only_entrypoint() {
    let (strait, backend, addr) = start("    protocols: [http/1.1]\n").await;
    let response = exchange(
        addr,
        b"GET /up HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(!response.contains("Switching Protocols"), "{response}");
    assert!(response.contains("uri: http://api.test/up\n"), "{response}");
    assert!(!response.contains("http2-settings:"), "{response}");
    assert_eq!(backend.requests(), 1);
    assert_eq!(refused(&strait, "h2c_upgrade"), 1);
    assert_eq!(refused(&strait, "h2c_prior_knowledge"), 0);
}

// === protocols: [h2c] ===

#[tokio::test]
async fn http1_on_an_h2c_only_entrypoint_gets_a_505_naming_the_setting() {
    let (strait, backend, addr) = start("    protocols: [h2c]\n").await;

    let response = exchange(addr, b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n").await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 505 HTTP Version Not Supported\r\n"),
        "{response}"
    );
    assert!(head.contains("\r\nconnection: close"), "{response}");
    assert!(
        head.contains(&format!("\r\ncontent-length: {}", body.len())),
        "{response}"
    );
    assert!(
        body.contains("entrypoint `web` serves only HTTP/2 with prior knowledge"),
        "{body}"
    );
    assert!(body.contains("add http/1.1 to `protocols`"), "{body}");
    assert_eq!(refused(&strait, "http1"), 1);

    // An upgrade request is HTTP/1.1 too; a POST whose first segment is `P` as well.
    let response = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 505 "), "{response}");
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"P").await.unwrap();
    let mut early = [0u8; 64];
    let answered = tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut early)).await;
    assert!(answered.is_err(), "strait answered `P` alone: {answered:?}");
    tcp.write_all(b"OST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.unwrap();
    assert!(response.starts_with(b"HTTP/1.1 505 "), "{response:?}");
    assert_eq!(refused(&strait, "http1"), 3);
    assert_eq!(backend.requests(), 0);

    // h2c with prior knowledge is served.
    let tcp = TcpStream::connect(addr).await.unwrap();
    assert_eq!(h2_get(tcp, addr).await, 200);
    assert_eq!(backend.requests(), 1);
}

/// `curl --http2-prior-knowledge` is served on an h2c-only entrypoint, and plain curl is
/// told why it is not.
#[tokio::test]
async fn curl_sees_the_505_and_prior_knowledge_works() {
    let (_strait, _backend, addr) = start("    protocols: [h2c]\n").await;
    let curl = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let output = std::process::Command::new("curl")
                .args(["-sS", "--max-time", "20", "-D", "-"])
                .args(&args)
                .output()
                .expect("curl is installed (apt-get install -y curl)");
            String::from_utf8_lossy(&output.stdout).into_owned()
        })
    };
    let url = format!("http://{addr}/curl");
    let plain = curl(vec![url.clone()]).await.unwrap();
    assert!(plain.starts_with("HTTP/1.1 505"), "{plain}");
    assert!(plain.contains("`protocols`"), "{plain}");
    let h2 = curl(vec!["--http2-prior-knowledge".to_owned(), url])
        .await
        .unwrap();
    assert!(h2.starts_with("HTTP/2 200"), "{h2}");
}

// === Reload ===

/// `protocols` applies to connections accepted after a reload, on the same socket.
#[tokio::test]
async fn a_reload_locks_and_unlocks_the_entrypoint() {
    let backend = HttpEcho::start().await;
    let url = backend.url("h2c");
    let strait = start_strait(&config("", &url)).await;
    let addr = strait.entrypoint("web").unwrap();
    let parse = |yaml: String| {
        strait_config::parse_str(&yaml, strait_config::Format::Yaml, "reload.yaml").unwrap()
    };

    let tcp = TcpStream::connect(addr).await.unwrap();
    assert_eq!(h2_get(tcp, addr).await, 200);

    strait
        .reload(parse(config("    protocols: [http/1.1]\n", &url)))
        .await
        .unwrap();
    assert_eq!(strait.entrypoint("web"), Some(addr));
    let err = h2_connection_error(addr).await;
    assert_eq!(err.reason(), Some(Reason::HTTP_1_1_REQUIRED), "{err}");

    strait.reload(parse(config("", &url))).await.unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    assert_eq!(h2_get(tcp, addr).await, 200);
    assert_eq!(refused(&strait, "h2c_prior_knowledge"), 1);
}
