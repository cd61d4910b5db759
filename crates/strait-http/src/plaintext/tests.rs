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

/// Waits until the server's socket holds the client's first bytes (a peek waits for them).
async fn arrived(server: &TcpStream) {
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(WAIT, server.peek(&mut first))
        .await
        .expect("the client's bytes never came")
        .unwrap();
    assert_eq!(n, 1, "the client closed instead");
}

/// An empty SETTINGS frame: what a client sends right after its preface.
const SETTINGS: &[u8] = &[0, 0, 0, 0x4, 0, 0, 0, 0, 0];

/// Reads everything the server sends until it closes.
async fn read_to_close(client: &mut TcpStream) -> Vec<u8> {
    let mut read = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut read))
        .await
        .expect("the server never closed")
        .unwrap();
    read
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
    arrived(&server).await;

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
    arrived(&server).await;
    let before = cpu_ticks();
    let waited = tokio::time::timeout(Duration::from_millis(500), sniff(&server)).await;
    let used = cpu_ticks() - before;
    assert!(waited.is_err(), "decided on `P` alone: {waited:?}");
    assert!(used < 10, "the sniff spun: {used} ticks of CPU in 500 ms");
}

/// A client's usual first segment: the whole preface with its SETTINGS. Decided at once
/// (no second wait) and nothing consumed.
#[tokio::test]
async fn a_preface_in_one_segment_is_h2c_and_stays_unread() {
    let (mut client, mut server) = pair().await;
    let first = [PREFACE.as_slice(), SETTINGS].concat();
    client.write_all(&first).await.unwrap();
    arrived(&server).await;
    let sniffed = {
        let mut sniffing = pin!(sniff(&server));
        match poll_once(sniffing.as_mut()).await {
            Poll::Ready(sniffed) => sniffed,
            Poll::Pending => tokio::time::timeout(WAIT, sniffing).await.unwrap(),
        }
    };
    assert_eq!(sniffed, Sniffed::H2c);
    let mut read = vec![0u8; first.len()];
    server.read_exact(&mut read).await.unwrap();
    assert_eq!(read, first);
}

/// A whole HTTP/1.1 request in one segment: HTTP/1.1, nothing consumed.
#[tokio::test]
async fn a_request_in_one_segment_is_http1_and_stays_unread() {
    let (mut client, mut server) = pair().await;
    client.write_all(POST).await.unwrap();
    let sniffed = tokio::time::timeout(WAIT, sniff(&server)).await.unwrap();
    assert_eq!(sniffed, Sniffed::Http1);
    let mut read = vec![0u8; POST.len()];
    server.read_exact(&mut read).await.unwrap();
    assert_eq!(read, POST);
}

/// A first segment that stops deep inside the preface and then leaves it (`PRI * HTTP/`,
/// then `1.1`): undecided, then HTTP/1.1 on the byte that differs.
#[tokio::test]
async fn a_segment_inside_the_preface_that_later_leaves_it_is_http1() {
    let (mut client, mut server) = pair().await;
    let (first, rest) = b"PRI * HTTP/1.1\r\nHost: a\r\n\r\n".split_at(11);
    client.write_all(first).await.unwrap();
    arrived(&server).await;
    let sniffed = {
        let mut sniffing = pin!(sniff(&server));
        assert!(
            poll_once(sniffing.as_mut()).await.is_pending(),
            "decided on a strict prefix of the preface"
        );
        client.write_all(rest).await.unwrap();
        tokio::time::timeout(WAIT, sniffing).await.unwrap()
    };
    assert_eq!(sniffed, Sniffed::Http1);
    let mut read = vec![0u8; first.len() + rest.len()];
    server.read_exact(&mut read).await.unwrap();
    assert_eq!(read, [first, rest].concat());
}

/// A client that closes while the sniff already waits for the rest of the preface: the
/// waiting sniff wakes and ends.
#[tokio::test]
async fn a_client_that_closes_while_the_sniff_waits_ends_it() {
    let (mut client, server) = pair().await;
    client.write_all(b"PRI").await.unwrap();
    arrived(&server).await;
    let mut sniffing = pin!(sniff(&server));
    assert!(poll_once(sniffing.as_mut()).await.is_pending());
    client.shutdown().await.unwrap();
    let sniffed = tokio::time::timeout(WAIT, sniffing).await.unwrap();
    assert_eq!(sniffed, Sniffed::Closed);
}

/// A client that resets (RST, not FIN) while the sniff waits: the socket's error ends it.
#[tokio::test]
async fn a_client_that_resets_mid_preface_ends_the_sniff() {
    let (mut client, server) = pair().await;
    client.write_all(b"PRI * HT").await.unwrap();
    arrived(&server).await;
    let mut sniffing = pin!(sniff(&server));
    assert!(poll_once(sniffing.as_mut()).await.is_pending());
    client.set_zero_linger().unwrap();
    drop(client);
    let sniffed = tokio::time::timeout(WAIT, sniffing).await.unwrap();
    assert_eq!(sniffed, Sniffed::Closed);
}

/// A client that resets before sending anything: the failed peek is a close.
#[tokio::test]
async fn a_client_that_resets_at_once_is_closed() {
    let (client, server) = pair().await;
    client.set_zero_linger().unwrap();
    drop(client);
    let sniffed = tokio::time::timeout(WAIT, sniff(&server)).await.unwrap();
    assert_eq!(sniffed, Sniffed::Closed);
}

#[test]
fn protocols_decide_which_clients_are_served_and_which_refused() {
    use PlaintextProtocols::{H2c, Http11, Http11AndH2c};
    let cases = [
        (Sniffed::H2c, Http11AndH2c, Verdict::Serve(Protocol::H2c)),
        (Sniffed::Http1, Http11AndH2c, Verdict::Serve(Protocol::H1)),
        (Sniffed::H2c, H2c, Verdict::Serve(Protocol::H2c)),
        (Sniffed::Http1, H2c, Verdict::Refuse(Refusal::Http1)),
        (Sniffed::Http1, Http11, Verdict::Serve(Protocol::H1)),
        (
            Sniffed::H2c,
            Http11,
            Verdict::Refuse(Refusal::H2cPriorKnowledge),
        ),
    ];
    for (sniffed, protocols, expected) in cases {
        assert_eq!(
            verdict(sniffed, protocols),
            expected,
            "{sniffed:?} on {protocols:?}"
        );
    }
    for protocols in [Http11AndH2c, Http11, H2c] {
        assert_eq!(verdict(Sniffed::Closed, protocols), Verdict::Close);
    }
}

/// The refusal as a client sees it on `protocols: [http/1.1]`: it sent its preface and
/// SETTINGS, and reads our SETTINGS and the GOAWAY whole, then the close (not a reset,
/// though its bytes were never read by an HTTP/2 engine).
#[tokio::test]
async fn a_refused_h2c_client_reads_the_goaway_then_the_close() {
    let (mut client, server) = pair().await;
    client
        .write_all(&[PREFACE.as_slice(), SETTINGS].concat())
        .await
        .unwrap();
    let sniffed = tokio::time::timeout(WAIT, sniff(&server)).await.unwrap();
    let Verdict::Refuse(refusal) = verdict(sniffed, PlaintextProtocols::Http11) else {
        panic!("h2c served on an HTTP/1.1-only entrypoint");
    };
    let answer = refusal.answer("web").unwrap();
    tokio::spawn(farewell(server, answer.clone()));
    assert_eq!(read_to_close(&mut client).await, answer);
}

/// On `protocols: [h2c]`, an HTTP/1.1 client reads the 505 whole, then the close.
#[tokio::test]
async fn a_refused_http1_client_reads_the_505_then_the_close() {
    let (mut client, server) = pair().await;
    client.write_all(POST).await.unwrap();
    let sniffed = tokio::time::timeout(WAIT, sniff(&server)).await.unwrap();
    let Verdict::Refuse(refusal) = verdict(sniffed, PlaintextProtocols::H2c) else {
        panic!("HTTP/1.1 served on an h2c-only entrypoint");
    };
    let answer = refusal.answer("grpc").unwrap();
    tokio::spawn(farewell(server, answer.clone()));
    let read = read_to_close(&mut client).await;
    assert!(
        read.starts_with(b"HTTP/1.1 505 "),
        "{:?}",
        String::from_utf8_lossy(&read)
    );
    assert_eq!(read, answer);
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
