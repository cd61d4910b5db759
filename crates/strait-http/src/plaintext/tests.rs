#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

const POST: &[u8] = b"POST /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
const WAIT: Duration = Duration::from_secs(10);

/// A connected client socket and the server's side of it.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

/// Polls `future` once.
async fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    let mut future = Some(future);
    std::future::poll_fn(|cx| Poll::Ready(future.take().unwrap().poll(cx))).await
}

/// Waits until the server's socket holds `n` bytes, which the client wrote alone.
async fn arrived(server: &TcpStream, n: usize) {
    let mut buf = vec![0u8; n];
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.peek(&mut buf).await.unwrap() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} bytes never came"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn first_bytes_decide_once_they_leave_or_complete_the_preface() {
    assert_eq!(decide(b""), Some(Sniffed::Closed));
    assert_eq!(decide(b"P"), None);
    assert_eq!(decide(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r"), None);
    assert_eq!(decide(PREFACE), Some(Sniffed::H2c));
    assert_eq!(decide(b"PO"), Some(Sniffed::Http1));
    assert_eq!(decide(b"PUT / HTTP/1.1\r\n"), Some(Sniffed::Http1));
    assert_eq!(decide(b"PRI * HTTP/1.1\r\n"), Some(Sniffed::Http1));
    assert_eq!(decide(b"GET / HTTP/1.1\r\n"), Some(Sniffed::Http1));
}

/// A `POST` whose first segment is its `P`: still undecided then, HTTP/1.1 once the rest
/// comes, and nothing was consumed.
#[tokio::test]
async fn a_lone_p_waits_for_the_rest_of_the_request() {
    let (mut client, mut server) = pair().await;
    client.write_all(&POST[..1]).await.unwrap();
    arrived(&server, 1).await;

    let sniffed = {
        let mut sniffing = pin!(sniff(&server));
        assert!(
            poll_once(sniffing.as_mut()).await.is_pending(),
            "decided on `P` alone"
        );
        client.write_all(&POST[1..]).await.unwrap();
        tokio::time::timeout(WAIT, sniffing).await.unwrap()
    };
    assert_eq!(sniffed, Sniffed::Http1);

    let mut request = vec![0u8; POST.len()];
    server.read_exact(&mut request).await.unwrap();
    assert_eq!(request, POST);
}

/// The preface a byte at a time: undecided until its last byte, then h2c.
#[tokio::test]
async fn the_preface_a_byte_at_a_time_is_h2c() {
    let (mut client, mut server) = pair().await;
    let sniffed = {
        let mut sniffing = pin!(sniff(&server));
        for (i, byte) in PREFACE.iter().enumerate() {
            client.write_all(&[*byte]).await.unwrap();
            if i + 1 < PREFACE.len() {
                // A correct sniff never decides on a strict prefix, however the bytes
                // arrive; the wait is the slow client's pause.
                let early =
                    tokio::time::timeout(Duration::from_millis(10), sniffing.as_mut()).await;
                assert!(early.is_err(), "decided after {} bytes: {early:?}", i + 1);
            }
        }
        tokio::time::timeout(WAIT, sniffing).await.unwrap()
    };
    assert_eq!(sniffed, Sniffed::H2c);

    let mut preface = [0u8; 24];
    server.read_exact(&mut preface).await.unwrap();
    assert_eq!(&preface, PREFACE);
}

/// A client that closes inside the preface will never decide: the sniff ends instead of
/// spinning on the closed socket's readiness.
#[tokio::test]
async fn a_client_that_closes_mid_preface_ends_the_sniff() {
    let (mut client, server) = pair().await;
    client.write_all(b"PRI * HT").await.unwrap();
    client.shutdown().await.unwrap();
    let sniffed = tokio::time::timeout(WAIT, sniff(&server)).await.unwrap();
    assert_eq!(sniffed, Sniffed::Closed);
}

#[tokio::test]
async fn a_client_that_closes_at_once_is_closed() {
    let (client, server) = pair().await;
    drop(client);
    let sniffed = tokio::time::timeout(WAIT, sniff(&server)).await.unwrap();
    assert_eq!(sniffed, Sniffed::Closed);
}

/// Waiting for more bytes sleeps in the reactor: over half a second with `P` buffered the
/// thread uses next to no CPU (a peek loop would use all it gets).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn waiting_for_the_rest_of_the_preface_does_not_spin() {
    /// This thread's user + system time, in clock ticks (10 ms on Linux).
    fn cpu_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the `(comm)`: state is the first, utime the 12th, stime the 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    let (mut client, server) = pair().await;
    client.write_all(b"P").await.unwrap();
    arrived(&server, 1).await;
    let before = cpu_ticks();
    let waited = tokio::time::timeout(Duration::from_millis(500), sniff(&server)).await;
    let used = cpu_ticks() - before;
    assert!(waited.is_err(), "decided on `P` alone: {waited:?}");
    assert!(used < 10, "the sniff spun: {used} ticks of CPU in 500 ms");
}

#[test]
fn h2c_on_an_http1_entrypoint_gets_settings_then_goaway_http_1_1_required() {
    let answer = Refusal::H2cPriorKnowledge.answer("web").unwrap();
    // SETTINGS, empty, on stream 0.
    assert_eq!(&answer[..9], &[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    let goaway = &answer[9..];
    let len = usize::from(goaway[0]) << 16 | usize::from(goaway[1]) << 8 | usize::from(goaway[2]);
    assert_eq!(goaway.len(), 9 + len);
    assert_eq!(&goaway[3..9], &[0x7, 0, 0, 0, 0, 0]);
    assert_eq!(&goaway[9..13], &[0, 0, 0, 0], "last stream");
    assert_eq!(&goaway[13..17], &[0, 0, 0, 0xd], "HTTP_1_1_REQUIRED");
    let debug = std::str::from_utf8(&goaway[17..]).unwrap();
    assert!(debug.contains("entrypoint `web`"), "{debug}");
    assert!(debug.contains("`protocols` are [http/1.1]"), "{debug}");

    // However long the name, the frame stays far below the smallest max frame size.
    let long = "e".repeat(20_000);
    let answer = Refusal::H2cPriorKnowledge.answer(&long).unwrap();
    assert_eq!(answer.len(), 9 + 17 + MAX_DEBUG_DATA);
}

#[test]
fn http1_on_an_h2c_entrypoint_gets_a_505_that_names_the_setting() {
    let answer = Refusal::Http1.answer("grpc").unwrap();
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(&answer).unwrap() else {
        panic!("incomplete head");
    };
    assert_eq!(response.code, Some(505));
    let header = |name: &str| {
        let found = response.headers.iter().find(|h| h.name == name).unwrap();
        std::str::from_utf8(found.value).unwrap()
    };
    assert_eq!(header("connection"), "close");
    assert_eq!(header("content-type"), "text/plain; charset=utf-8");
    let body = std::str::from_utf8(&answer[head..]).unwrap();
    assert_eq!(header("content-length"), body.len().to_string());
    assert!(body.contains("entrypoint `grpc`"), "{body}");
    assert!(body.contains("`protocols` are [h2c]"), "{body}");
    assert!(Refusal::H2cUpgrade.answer("web").is_none());
}
