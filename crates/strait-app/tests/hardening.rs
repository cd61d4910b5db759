//! Attack resistance: every mitigation stops the offending client (GOAWAY ENHANCE_YOUR_CALM,
//! a refused request or a closed connection) while a well-behaved gRPC client on another
//! connection keeps completing calls; nothing invalid reaches a backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strait_grpc::echo::EchoRequest;
use strait_test::backend::TestBackend;
use strait_test::http_echo::HttpEcho;
use strait_test::{assert_eventually, echo_client, http1, start_strait, Running};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const PROTOCOL_ERROR: u32 = 0x1;
const REFUSED_STREAM: u32 = 0x7;

/// gRPC calls go to a tonic echo backend, everything else to an HTTP echo that counts.
struct Setup {
    strait: Running,
    grpc: TestBackend,
    http: HttpEcho,
}

impl Setup {
    /// `entrypoint` lines go into entrypoint `web` (indented by 4).
    async fn start(entrypoint: &str) -> Setup {
        Self::start_with(entrypoint, "h2c").await
    }

    async fn start_with(entrypoint: &str, http_scheme: &str) -> Setup {
        let grpc = TestBackend::start().await;
        let http = HttpEcho::start().await;
        let yaml = format!(
            "admin: {{ address: 127.0.0.1:0 }}\n\
             entrypoints:\n  web:\n    address: 127.0.0.1:0\n{entrypoint}\
             routers:\n  grpc: {{ match: {{ grpc_service: strait.echo.v1.Echo }}, service: grpc }}\n  \
             admin: {{ match: {{ path_prefix: /admin }}, service: grpc }}\n  \
             http: {{ service: http }}\n\
             services:\n  grpc:\n    servers: ['{}']\n  http:\n    servers: ['{}']\n",
            grpc.url(),
            http.url(http_scheme),
        );
        let strait = start_strait(&yaml).await;
        Setup { strait, grpc, http }
    }

    fn addr(&self) -> SocketAddr {
        self.strait.entrypoint("web").unwrap()
    }

    /// `strait_limit_exceeded_total{entrypoint="web",limit=...}`.
    async fn exceeded(&self, limit: &str) -> f64 {
        let (_, metrics) = http1(self.strait.admin().unwrap(), "GET", "/metrics", &[]).await;
        let prefix =
            format!("strait_limit_exceeded_total{{entrypoint=\"web\",limit=\"{limit}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or(0.0)
    }

    /// A gRPC client on its own connection that calls in a loop until stopped.
    async fn bystander(&self) -> Bystander {
        let mut client = echo_client(self.addr()).await;
        client.unary(EchoRequest::default()).await.unwrap();
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client.unary(EchoRequest::default()).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    // Pacing only, so the attack gets the CPU too.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        Bystander {
            ok,
            failed,
            stop,
            task,
        }
    }
}

struct Bystander {
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Bystander {
    /// Completes a few more calls after the attack, then checks that none failed.
    async fn still_served(self) {
        let seen = self.ok.load(Ordering::Relaxed);
        assert_eventually!(
            self.ok.load(Ordering::Relaxed) >= seen + 5,
            Duration::from_secs(10),
            "the well-behaved client stalled"
        );
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        assert_eq!(
            self.failed.load(Ordering::Relaxed),
            0,
            "well-behaved calls failed"
        );
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK "literal without indexing, new name" (no Huffman), for names and values up to 126.
fn literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00];
    hpack_len(&mut out, name.len());
    out.extend_from_slice(name);
    hpack_len(&mut out, value.len());
    out.extend_from_slice(value);
    out
}

fn hpack_len(out: &mut Vec<u8>, mut len: usize) {
    if len < 127 {
        out.push(len as u8);
        return;
    }
    out.push(127);
    len -= 127;
    while len >= 128 {
        out.push((len % 128 + 128) as u8);
        len /= 128;
    }
    out.push(len as u8);
}

/// `GET /` over http with `:authority`, from the HPACK static table.
fn get_block() -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x84];
    block.extend(literal(b":authority", b"strait.test"));
    block
}

/// A connection that has sent the preface and an empty SETTINGS frame.
async fn raw_h2(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(PREFACE).await.unwrap();
    tcp.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    tcp
}

/// Reads frames until one of `kind` arrives: its stream id and payload. `None` when the
/// connection ends first.
async fn next_frame<R: AsyncRead + Unpin>(read: &mut R, kind: u8) -> Option<(u32, Vec<u8>)> {
    let read_frames = async {
        loop {
            let mut head = [0u8; 9];
            read.read_exact(&mut head).await.ok()?;
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0; len];
            read.read_exact(&mut payload).await.ok()?;
            if head[3] == kind {
                let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
                return Some((stream, payload));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_frames)
        .await
        .expect("no frame and no close within 20 s")
}

fn error_code(payload: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(payload[at..at + 4].try_into().unwrap())
}

/// Sends `setup` then `unit` over and over from a task, and returns the GOAWAY error code
/// the attacker reads.
async fn flood(
    addr: SocketAddr,
    setup: Vec<u8>,
    unit: impl Fn(u32) -> Vec<u8> + Send + 'static,
) -> u32 {
    let (mut read, mut write) = raw_h2(addr).await.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(&setup).await.ok()?;
        for i in 0..200_000u32 {
            write.write_all(&unit(i)).await.ok()?;
        }
        Some(())
    });
    let (_, payload) = next_frame(&mut read, GOAWAY)
        .await
        .expect("a GOAWAY before the close");
    writer.abort();
    error_code(&payload, 4)
}

async fn goaway_for_flood(
    limits: &str,
    limit: &str,
    setup: Vec<u8>,
    unit: impl Fn(u32) -> Vec<u8> + Send + 'static,
) {
    let setup_strait = Setup::start(limits).await;
    let bystander = setup_strait.bystander().await;
    let code = flood(setup_strait.addr(), setup, unit).await;
    assert_eq!(code, ENHANCE_YOUR_CALM, "{limit}");
    assert!(
        setup_strait.exceeded(limit).await >= 1.0,
        "{limit} not counted"
    );
    bystander.still_served().await;
}

#[tokio::test]
async fn rapid_reset_gets_goaway() {
    goaway_for_flood(
        "    limits: { http2_frames_per_second: { rst_stream: 10 } }\n",
        "rapid_reset",
        Vec::new(),
        |i| {
            let stream = 2 * i + 1;
            let mut out = frame(HEADERS, END_HEADERS | END_STREAM, stream, &get_block());
            out.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
            out
        },
    )
    .await;
}

#[tokio::test]
async fn settings_flood_gets_goaway() {
    goaway_for_flood("", "settings_flood", Vec::new(), |_| {
        frame(SETTINGS, 0, 0, &[])
    })
    .await;
}

#[tokio::test]
async fn ping_flood_gets_goaway() {
    goaway_for_flood("", "ping_flood", Vec::new(), |i| {
        frame(PING, 0, 0, &u64::from(i).to_be_bytes())
    })
    .await;
}

#[tokio::test]
async fn window_update_flood_gets_goaway() {
    goaway_for_flood(
        "    limits: { http2_frames_per_second: { window_update: 1000 } }\n",
        "window_update_flood",
        Vec::new(),
        |_| frame(WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()),
    )
    .await;
}

#[tokio::test]
async fn priority_flood_gets_goaway() {
    goaway_for_flood("", "priority_flood", Vec::new(), |i| {
        frame(PRIORITY, 0, 2 * (i % 1000) + 1, &[0, 0, 0, 0, 16])
    })
    .await;
}

#[tokio::test]
async fn empty_data_flood_gets_goaway() {
    // POST / with a body to come.
    let mut block = vec![0x83, 0x86, 0x84];
    block.extend(literal(b":authority", b"strait.test"));
    goaway_for_flood(
        "",
        "empty_data_flood",
        frame(HEADERS, END_HEADERS, 1, &block),
        |_| frame(DATA, 0, 1, &[]),
    )
    .await;
}

#[tokio::test]
async fn continuation_flood_gets_goaway() {
    goaway_for_flood(
        "",
        "max_continuation_frames",
        frame(HEADERS, 0, 1, &[0x82]),
        |_| frame(CONTINUATION, 0, 1, &[0x82]),
    )
    .await;
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Thirty-two clients each send a 1 MiB header list (16 KiB frames); none of it is kept.
#[tokio::test]
async fn a_one_mib_header_list_attack_keeps_memory_bounded() {
    let setup = Setup::start("").await;
    let bystander = setup.bystander().await;
    let before = rss_kib();
    let mut attackers = Vec::new();
    for _ in 0..32 {
        let addr = setup.addr();
        attackers.push(tokio::spawn(async move {
            let (mut read, mut write) = raw_h2(addr).await.into_split();
            // One header whose 1 MiB value spans 64 frames: nothing can be decoded before
            // the end, so an engine without a bound would buffer all of it.
            let mut block = get_block();
            block.push(0x00);
            hpack_len(&mut block, 5);
            block.extend_from_slice(b"x-big");
            hpack_len(&mut block, 1 << 20);
            block.resize(block.len() + (1 << 20), b'a');
            let writer = tokio::spawn(async move {
                let mut chunks = block.chunks(16 << 10).peekable();
                let mut kind = HEADERS;
                while let Some(chunk) = chunks.next() {
                    let flags = if chunks.peek().is_none() {
                        END_HEADERS
                    } else {
                        0
                    };
                    write.write_all(&frame(kind, flags, 1, chunk)).await.ok()?;
                    kind = CONTINUATION;
                }
                Some(())
            });
            let goaway = next_frame(&mut read, GOAWAY).await;
            writer.abort();
            goaway.map(|(_, payload)| error_code(&payload, 4))
        }));
    }
    for attacker in attackers {
        let code = attacker.await.unwrap().expect("a GOAWAY");
        assert!(
            code == ENHANCE_YOUR_CALM || code == 0x9,
            "GOAWAY {code}: expected ENHANCE_YOUR_CALM (or COMPRESSION_ERROR from the engine)"
        );
    }
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 16 << 10,
        "32 MiB of header lists grew memory by {grown} KiB"
    );
    bystander.still_served().await;
}

/// A header list over `http2.max_header_list_size` in one frame: 431 or RST_STREAM, never
/// forwarded; the connection keeps serving.
#[tokio::test]
async fn an_oversized_header_list_is_refused_not_forwarded() {
    let setup = Setup::start("    http2: { max_header_list_size: 4KiB }\n").await;
    let mut tcp = raw_h2(setup.addr()).await;
    let mut block = get_block();
    block.extend(literal(b"x-big", &vec![b'a'; 6000]));
    tcp.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
        .await
        .unwrap();
    let (mut read, _write) = tcp.into_split();
    let reply = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut head = [0u8; 9];
            read.read_exact(&mut head).await.ok()?;
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0; len];
            read.read_exact(&mut payload).await.ok()?;
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
            if stream == 1 && (head[3] == HEADERS || head[3] == RST_STREAM) {
                return Some(head[3]);
            }
        }
    })
    .await
    .unwrap();
    assert!(reply.is_some(), "stream 1 got neither 431 nor RST_STREAM");
    assert!(setup.exceeded("max_header_list_size").await >= 1.0);
    assert_eq!(setup.http.requests(), 0);
}

#[tokio::test]
async fn an_oversized_single_header_gets_431() {
    let setup = Setup::start("    limits: { max_header_size: 1KiB }\n").await;
    let (status, body) = http1(setup.addr(), "GET", "/", &[("x-big", &"a".repeat(2000))]).await;
    assert_eq!(status, 431, "{body}");
    assert!(body.contains("x-big"), "{body}");
    assert_eq!(setup.http.requests(), 0);
    assert_eq!(setup.exceeded("max_header_size").await, 1.0);
    let mut client = echo_client(setup.addr()).await;
    let mut request = tonic::Request::new(EchoRequest::default());
    request
        .metadata_mut()
        .insert("x-big", "a".repeat(2000).parse().unwrap());
    let status = client.unary(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
}

/// Each header block missing, slow or partial is cut at `header_read_timeout`; the
/// bystander, which sent its headers in time, is never cut.
#[tokio::test]
async fn slowloris_connections_are_closed_at_the_header_read_timeout() {
    let setup = Setup::start("    limits: { header_read_timeout: 300ms }\n").await;
    let bystander = setup.bystander().await;
    let addr = setup.addr();
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let h2_no_headers = raw_h2(addr).await;
    let mut h1_partial = TcpStream::connect(addr).await.unwrap();
    h1_partial
        .write_all(b"GET / HTTP/1.1\r\nHost: strait.test\r\nX-Slow: ")
        .await
        .unwrap();
    // Headers begun but never finished: HEADERS without END_HEADERS.
    let mut h2_partial = raw_h2(addr).await;
    h2_partial
        .write_all(&frame(HEADERS, 0, 1, &[0x82]))
        .await
        .unwrap();

    let closed = |mut tcp: TcpStream| async move {
        let mut sink = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink))
            .await
            .is_ok()
    };
    for tcp in silent {
        assert!(closed(tcp).await, "a silent connection was kept");
    }
    assert!(
        closed(h2_no_headers).await,
        "h2 connection without headers kept"
    );
    assert!(closed(h1_partial).await, "partial HTTP/1.1 head kept");
    assert!(closed(h2_partial).await, "partial HTTP/2 header block kept");
    assert!(setup.exceeded("header_read_timeout").await >= 53.0);
    bystander.still_served().await;
}

#[tokio::test]
async fn connections_per_ip_and_per_entrypoint_are_capped() {
    let setup = Setup::start("    limits: { max_connections_per_ip: 3 }\n").await;
    let bystander = setup.bystander().await;
    let _a = raw_h2(setup.addr()).await;
    let _b = raw_h2(setup.addr()).await;
    let mut over = TcpStream::connect(setup.addr()).await.unwrap();
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), over.read_to_end(&mut sink))
        .await
        .expect("the fourth connection from one IP was kept")
        .ok();
    assert_eq!(setup.exceeded("max_connections_per_ip").await, 1.0);
    bystander.still_served().await;

    let setup = Setup::start("    limits: { max_connections: 2 }\n").await;
    let bystander = setup.bystander().await;
    let _a = raw_h2(setup.addr()).await;
    let mut over = TcpStream::connect(setup.addr()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), over.read_to_end(&mut sink))
        .await
        .expect("the third connection was kept")
        .ok();
    assert_eq!(setup.exceeded("max_connections").await, 1.0);
    bystander.still_served().await;
}

#[tokio::test]
async fn streams_over_max_concurrent_streams_are_refused() {
    let setup = Setup::start("    http2: { max_concurrent_streams: 2 }\n").await;
    let (mut read, mut write) = raw_h2(setup.addr()).await.into_split();
    // Wait for the server's SETTINGS so the limit is in force, then ack it.
    next_frame(&mut read, SETTINGS).await.unwrap();
    write
        .write_all(&frame(SETTINGS, 0x1, 0, &[]))
        .await
        .unwrap();
    let mut post = vec![0x83, 0x86, 0x84];
    post.extend(literal(b":authority", b"strait.test"));
    for stream in [1, 3, 5] {
        write
            .write_all(&frame(HEADERS, END_HEADERS, stream, &post))
            .await
            .unwrap();
    }
    let (stream, payload) = next_frame(&mut read, RST_STREAM).await.unwrap();
    assert_eq!((stream, error_code(&payload, 0)), (5, REFUSED_STREAM));
}

#[tokio::test]
async fn request_bodies_over_the_limit_get_413_or_resource_exhausted() {
    let setup =
        Setup::start("    limits: { max_request_body: 1KiB, max_grpc_request_body: 1KiB }\n").await;
    let mut tcp = TcpStream::connect(setup.addr()).await.unwrap();
    tcp.write_all(b"POST /upload HTTP/1.1\r\nHost: strait.test\r\nContent-Length: 2000\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert_eq!(setup.http.requests(), 0);

    // Chunked, so the size shows only while streaming.
    let mut tcp = TcpStream::connect(setup.addr()).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 800, "a".repeat(800));
    tcp.write_all(
        format!(
            "POST /upload HTTP/1.1\r\nHost: strait.test\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");

    let mut client = echo_client(setup.addr()).await;
    let big = EchoRequest {
        payload: vec![7; 4096].into(),
        ..EchoRequest::default()
    };
    let status = client.unary(big).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    client.unary(EchoRequest::default()).await.unwrap();
    assert!(setup.exceeded("max_request_body").await >= 3.0);
}

#[tokio::test]
async fn grpc_bodies_are_unlimited_by_default() {
    let setup = Setup::start("    limits: { max_request_body: 1KiB }\n").await;
    let mut client = echo_client(setup.addr()).await;
    let big = EchoRequest {
        payload: vec![7; 64 << 10].into(),
        ..EchoRequest::default()
    };
    client.unary(big).await.unwrap();
}

/// Requests that could desynchronise a proxy and a backend: each is refused with 400 and
/// the connection closed; the backend never sees any of them.
#[tokio::test]
async fn http1_smuggling_attempts_never_reach_the_backend() {
    let setup = Setup::start_with("", "http").await;
    let cases: &[(&str, &str)] = &[
        (
            "invalid chunk size",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
        ),
        (
            "two different Content-Lengths",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        (
            "Transfer-Encoding not ending in chunked",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "space before the colon",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nabcde",
        ),
        ("NUL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-Nul: a\0b\r\n\r\n"),
        (
            "invalid Content-Length",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nabcde",
        ),
    ];
    for (what, request) in cases {
        let mut tcp = TcpStream::connect(setup.addr()).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut response))
            .await
            .unwrap_or_else(|_| panic!("{what}: connection kept open"))
            .ok();
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 400"), "{what}: {response}");
        assert_eq!(setup.http.requests(), 0, "{what} reached the backend");
    }
}

/// Content-Length with Transfer-Encoding, in either order and any casing: hyper alone would
/// read the body as chunked, drop the Content-Length and serve the request; strait's
/// HTTP/1.1 guard answers 400 with `connection: close` and closes the connection before the
/// head reaches hyper, so the backend never sees it. Other clients are still served.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused_and_closed() {
    let setup = Setup::start_with("", "http").await;
    let cases = [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 4\r\n\r\n\
         0\r\n\r\n",
    ];
    for request in cases {
        let mut tcp = TcpStream::connect(setup.addr()).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let response = until_closed(&mut tcp).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
        assert!(has_header(&response, "connection: close"), "{response}");
        assert!(!response.contains("/smuggled"), "{response}");
    }
    assert_eq!(
        setup.http.requests(),
        0,
        "a CL+TE request reached the backend"
    );
    assert!(setup.exceeded("http1_framing").await >= 2.0);

    let (status, _) = http1(setup.addr(), "GET", "/fine", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(setup.http.requests(), 1);
}

/// On a keep-alive connection the guard follows the chunked body of a good request and
/// catches the CL+TE request after it.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused_after_a_chunked_request() {
    let setup = Setup::start_with("", "http").await;
    let mut tcp = TcpStream::connect(setup.addr()).await.unwrap();
    tcp.write_all(
        b"POST /first HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    .await
    .unwrap();
    let first = one_response(&mut tcp).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.contains("hello"), "{first}");

    tcp.write_all(
        b"POST /second HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n\
          0\r\n\r\n",
    )
    .await
    .unwrap();
    let second = until_closed(&mut tcp).await;
    assert!(second.starts_with("HTTP/1.1 400"), "{second}");
    assert!(has_header(&second, "connection: close"), "{second}");
    assert_eq!(setup.http.requests(), 1);
}

/// Reads until the server closes the connection (cleanly: a reset fails the test).
async fn until_closed(tcp: &mut TcpStream) -> String {
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut response))
        .await
        .expect("the connection was kept open")
        .expect("the connection was reset instead of closed");
    String::from_utf8_lossy(&response).into_owned()
}

/// Reads one response with a `content-length` or chunked body from a kept-alive connection.
async fn one_response(tcp: &mut TcpStream) -> String {
    let mut response = Vec::new();
    let read = async {
        loop {
            let text = String::from_utf8_lossy(&response).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                });
                let done = match length {
                    Some(length) => body.len() >= length,
                    None => body.ends_with("0\r\n\r\n"),
                };
                if done {
                    return text;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-response: {text}");
            response.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("no complete response")
}

fn has_header(response: &str, header: &str) -> bool {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().any(|l| l.eq_ignore_ascii_case(header))
}

/// HTTP/2 requests the protocol calls malformed: the stream is reset with PROTOCOL_ERROR
/// (or the connection closed with it) and nothing reaches the backend.
#[tokio::test]
async fn malformed_http2_requests_never_reach_the_backend() {
    let setup = Setup::start("").await;
    let authority = literal(b":authority", b"strait.test");
    let with = |extra: &[u8], before: bool| {
        let mut block = Vec::new();
        if before {
            block.extend_from_slice(extra);
        }
        block.extend([0x82, 0x86, 0x84]);
        block.extend(&authority);
        if !before {
            block.extend_from_slice(extra);
        }
        block
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "uppercase header name",
            with(&literal(b"X-Upper", b"1"), false),
        ),
        ("pseudo-header after a regular one", {
            let mut block = vec![0x82, 0x86];
            block.extend(literal(b"x-regular", b"1"));
            block.push(0x84);
            block
        }),
        (
            "unknown pseudo-header",
            with(&literal(b":foo", b"1"), false),
        ),
        (
            "connection header",
            with(&literal(b"connection", b"keep-alive"), false),
        ),
        (
            "transfer-encoding header",
            with(&literal(b"transfer-encoding", b"chunked"), false),
        ),
        (
            "te other than trailers",
            with(&literal(b"te", b"gzip"), false),
        ),
        (
            "CR LF in a value",
            with(&literal(b"x-a", b"1\r\nx-injected: 1"), false),
        ),
        ("NUL in a value", with(&literal(b"x-a", b"1\x002"), false)),
        ("missing :path", {
            let mut block = vec![0x82, 0x86];
            block.extend(&authority);
            block
        }),
    ];
    for (what, block) in cases {
        let (mut read, mut write) = raw_h2(setup.addr()).await.into_split();
        write
            .write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
            .await
            .unwrap();
        let code = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let mut head = [0u8; 9];
                read.read_exact(&mut head).await.ok()?;
                let len =
                    usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
                let mut payload = vec![0; len];
                read.read_exact(&mut payload).await.ok()?;
                match head[3] {
                    RST_STREAM => return Some(error_code(&payload, 0)),
                    GOAWAY => return Some(error_code(&payload, 4)),
                    HEADERS => return Some(u32::MAX),
                    _ => {}
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(code, Some(PROTOCOL_ERROR), "{what}");
        drop(write);
    }
    assert_eq!(setup.http.requests(), 0);
    assert_eq!(setup.grpc.calls(), 0);
}

/// `/public/../admin` is routed (and forwarded) as `/admin`, and `//admin` too.
#[tokio::test]
async fn paths_are_normalized_before_routing() {
    let setup = Setup::start_with("", "http").await;
    // The `admin` router sends /admin to the gRPC backend; everything else goes to the
    // HTTP echo, which counts.
    for path in ["/public/../admin/x", "//admin/x", "/public/%2e%2e/admin/x"] {
        http1(setup.addr(), "GET", path, &[]).await;
        assert_eq!(setup.http.requests(), 0, "{path} dodged the admin router");
    }
    let (status, body) = http1(setup.addr(), "GET", "/a/./b//c/../d?q=1", &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains("uri: /a/b/d?q=1"), "{body}");

    let off = Setup::start_with(
        "    path_normalization: { dot_segments: false, merge_slashes: false }\n",
        "http",
    )
    .await;
    let (status, body) = http1(off.addr(), "GET", "/a//b", &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains("uri: /a//b"), "{body}");
}

/// A flood on an `Upgrade: h2c` connection is caught like any other.
#[tokio::test]
async fn floods_after_an_h2c_upgrade_get_goaway() {
    let setup = Setup::start("").await;
    let (mut read, mut write) = TcpStream::connect(setup.addr()).await.unwrap().into_split();
    write
        .write_all(
            b"GET / HTTP/1.1\r\nHost: strait.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
              Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        read.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let writer = tokio::spawn(async move {
        write.write_all(PREFACE).await.ok()?;
        write.write_all(&frame(SETTINGS, 0, 0, &[])).await.ok()?;
        for i in 0..100_000u64 {
            write
                .write_all(&frame(PING, 0, 0, &i.to_be_bytes()))
                .await
                .ok()?;
        }
        Some(())
    });
    let (_, payload) = next_frame(&mut read, GOAWAY).await.expect("a GOAWAY");
    writer.abort();
    // The GOAWAY names stream 1, the upgrade request.
    assert_eq!(error_code(&payload, 0), 1);
    assert_eq!(error_code(&payload, 4), ENHANCE_YOUR_CALM);
}
