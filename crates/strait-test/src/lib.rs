//! Test helpers: real tonic backends with observable behaviour, a raw HTTP/2 backend that
//! never answers, a running strait, and `assert_eventually!`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod backend;
pub mod http_echo;
pub mod raw;
pub mod tls;

use std::net::SocketAddr;

use strait_config::Format;
use strait_grpc::echo::EchoClient;
use tonic::transport::Channel;

pub use strait_app::Running;

/// Waits until `$cond` holds, polling every 10 ms, failing after `$timeout` (default 10 s)
/// with the message given.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr $(,)?) => {
        $crate::assert_eventually!($cond, std::time::Duration::from_secs(10), stringify!($cond))
    };
    ($cond:expr, $timeout:expr, $($msg:tt)+) => {{
        let deadline = tokio::time::Instant::now() + $timeout;
        loop {
            if $cond {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("condition not met within {:?}: {}", $timeout, format!($($msg)+));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }};
}

/// Starts strait on the current runtime from YAML text.
pub async fn start_strait(yaml: &str) -> Running {
    let config = match strait_config::parse_str(yaml, Format::Yaml, "test.yaml") {
        Ok(config) => config,
        Err(errors) => panic!(
            "test config is invalid:\n{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    };
    strait_app::start(config).await.expect("strait starts")
}

/// The usual test setup: one plaintext entrypoint `web` on a free port, one catch-all router
/// to service `backend` with the given server URLs.
pub fn single_service_config(servers: &[String]) -> String {
    let servers: String = servers
        .iter()
        .map(|s| format!("      - url: {s}\n"))
        .collect();
    format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         routers:\n  all: {{ service: backend }}\n\
         services:\n  backend:\n    servers:\n{servers}"
    )
}

/// An echo client over one h2c connection to `addr`, with room for large messages.
pub async fn echo_client(addr: SocketAddr) -> EchoClient<Channel> {
    EchoClient::new(channel(addr).await)
        .max_decoding_message_size(strait_grpc::echo::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(strait_grpc::echo::MAX_MESSAGE_SIZE)
}

/// Opens a bidirectional stream on `client` and exchanges one message on it; the stream
/// stays open while the sender lives.
pub async fn open_bidi(
    client: &mut EchoClient<Channel>,
) -> (
    tokio::sync::mpsc::Sender<strait_grpc::echo::EchoRequest>,
    tonic::Streaming<strait_grpc::echo::EchoReply>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(strait_grpc::echo::EchoRequest::default())
        .await
        .unwrap();
    replies.message().await.unwrap().unwrap();
    (tx, replies)
}

/// One h2c connection to `addr`.
pub async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to strait")
}

/// Waits (up to 10 s) for a line of the access log at `log` that contains `text`, and
/// returns it.
pub async fn access_log_line(log: &std::path::Path, text: &str) -> String {
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    assert_eventually!(
        read().contains(text),
        std::time::Duration::from_secs(10),
        "no access-log line has {text:?}:\n{}",
        read()
    );
    read()
        .lines()
        .find(|l| l.contains(text))
        .unwrap()
        .to_owned()
}

/// A TCP port on 127.0.0.1 with nothing listening (bound, then released).
pub async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    listener.local_addr().unwrap().port()
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); returns the status code
/// and the body.
pub async fn http1(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}
