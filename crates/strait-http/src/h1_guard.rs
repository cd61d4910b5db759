//! HTTP/1.1 request smuggling protection below the HTTP/1 engine: an IO wrapper that follows
//! the request heads and body framing of a client connection as its bytes pass, and refuses a
//! request that carries both `Content-Length` and `Transfer-Encoding` with 400 and a closed
//! connection. hyper would read such a body as chunked, drop the `Content-Length` and close
//! after answering, but it would still serve and forward the request; RFC 9112 §6.1 allows
//! either, and refusing leaves nothing ambiguous to forward.
//!
//! Bytes pass unchanged and are never held back; a head is copied only when it spans reads.
//! The read that completes an offending head is not handed to hyper, so hyper never sees a
//! complete head of it: it gets end-of-stream instead and closes without answering, after the
//! 400 went out. What the scanner does not understand (something hyper refuses itself, or an
//! `Upgrade`/`CONNECT` request, after which the connection may switch protocols) stops it for
//! the rest of the connection; it never refuses anything but the conflict.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

use crate::farewell::Farewell;
use crate::limits::{Enforcer, Limit};

/// The answer to a request with both `Content-Length` and `Transfer-Encoding`.
const REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 100\r\n\
connection: close\r\n\
\r\n\
request has both Content-Length and Transfer-Encoding (RFC 9112 section 6.1); send only one of them\n";

/// Bytes of one head kept while it spans reads: above hyper's own limit on a head (its read
/// buffer, 8 KiB + 100 × 4 KiB), so that no head hyper accepts goes unchecked.
const MAX_HEAD: usize = 512 << 10;
/// A head buffer that grew beyond this is given back once the head is done.
const KEEP_HEAD: usize = 16 << 10;
/// Header lines httparse gets room for: hyper refuses a request with more than 100 (431), so a
/// head with more is never served either.
const MAX_HEADERS: usize = 128;

/// An HTTP/1.1 client connection (plaintext, or after TLS without ALPN h2), guarded.
pub(crate) struct H1Guard<I> {
    io: I,
    scanner: Scanner,
    state: State,
    enforcer: Arc<Enforcer>,
    client: SocketAddr,
}

enum State {
    Open,
    /// A conflicting head came: the 400 goes out, our side is shut, then the linger.
    Refusing(Farewell),
    Closed,
}

/// Follows the framing of the requests on one connection.
pub(crate) struct Scanner {
    state: Scan,
    /// The head so far, while it spans reads; empty between heads.
    head: Vec<u8>,
    /// Whether the current line of the head holds nothing but CRs so far.
    line_empty: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// Between requests, or inside a head.
    Head,
    /// `Content-Length` body bytes still to come.
    Body(u64),
    /// A chunk-size line: the size so far, whether it has a digit, and whether the digits
    /// are over (extensions and whitespace follow, skipped up to the LF).
    ChunkSize { size: u64, digits: bool, past: bool },
    /// Chunk data bytes still to come.
    ChunkData(u64),
    /// The CRLF after a chunk's data; whether the CR came.
    ChunkEnd { cr: bool },
    /// Trailer lines after the last chunk; whether the current one is empty so far.
    Trailers { empty: bool },
    /// Not followed any further.
    Off,
}

/// What a head says about the request.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    /// Both `Content-Length` and `Transfer-Encoding`.
    Conflict,
    /// Where the scan goes on.
    Next(Scan),
}

// === impl H1Guard ===

impl<I> H1Guard<I> {
    pub(crate) fn new(io: I, enforcer: Arc<Enforcer>, client: SocketAddr) -> H1Guard<I> {
        H1Guard {
            io,
            scanner: Scanner::new(),
            state: State::Open,
            enforcer,
            client,
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> H1Guard<I> {
    /// Drives a refused connection towards its close: the 400, our side shut, the linger.
    /// `Ready(())` once it is done.
    fn poll_refuse(&mut self, cx: &mut Context<'_>, scratch: &mut ReadBuf<'_>) -> Poll<()> {
        let State::Refusing(farewell) = &mut self.state else {
            return Poll::Ready(());
        };
        ready!(farewell.poll(&mut self.io, cx, scratch));
        self.state = State::Closed;
        Poll::Ready(())
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "client connection closed: it sent a request with both Content-Length and Transfer-Encoding",
    )
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for H1Guard<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if matches!(this.state, State::Open) {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            if this.scanner.scan(&buf.filled()[before..]) {
                return Poll::Ready(Ok(()));
            }
            // Nothing of this read reaches hyper: it never sees the head complete.
            buf.set_filled(before);
            this.enforcer.fired(Limit::Http1Framing, this.client);
            debug!(
                client = %this.client,
                "refused an HTTP/1.1 request with both Content-Length and Transfer-Encoding (400, connection closed)"
            );
            this.state = State::Refusing(Farewell::new(Bytes::from_static(REFUSAL)));
        }
        ready!(this.poll_refuse(cx, buf));
        // End of stream: hyper closes the connection.
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for H1Guard<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.state {
            State::Open => Pin::new(&mut this.io).poll_write(cx, buf),
            // What hyper still writes (an earlier pipelined answer) is dropped: the 400 is
            // the last thing on the connection.
            State::Refusing(_) => Poll::Ready(Ok(buf.len())),
            State::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.state {
            State::Open => Pin::new(&mut this.io).poll_write_vectored(cx, bufs),
            State::Refusing(_) => Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum())),
            State::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.state {
            State::Open => Pin::new(&mut this.io).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.state {
            State::Open => Pin::new(&mut this.io).poll_shutdown(cx),
            // Already shut by poll_refuse.
            _ => Poll::Ready(Ok(())),
        }
    }
}

// === impl Scanner ===

impl Scanner {
    pub(crate) fn new() -> Scanner {
        Scanner {
            state: Scan::Head,
            head: Vec::new(),
            line_empty: true,
        }
    }

    /// Follows `bytes`, the next ones the client sent; `false` when they complete a head
    /// with both `Content-Length` and `Transfer-Encoding` (the scan stops there).
    pub(crate) fn scan(&mut self, bytes: &[u8]) -> bool {
        let mut at = 0;
        while at < bytes.len() {
            match self.state {
                Scan::Off => return true,
                Scan::Head => match self.head(&bytes[at..]) {
                    Some(used) => at += used,
                    None => {
                        self.stop();
                        return false;
                    }
                },
                Scan::Body(left) => {
                    let n = skip(left, bytes.len() - at);
                    at += n;
                    self.state = match left - n as u64 {
                        0 => Scan::Head,
                        left => Scan::Body(left),
                    };
                }
                Scan::ChunkData(left) => {
                    let n = skip(left, bytes.len() - at);
                    at += n;
                    self.state = match left - n as u64 {
                        0 => Scan::ChunkEnd { cr: false },
                        left => Scan::ChunkData(left),
                    };
                }
                Scan::ChunkSize { .. } | Scan::ChunkEnd { .. } | Scan::Trailers { .. } => {
                    self.state = chunk_byte(self.state, bytes[at]);
                    at += 1;
                }
            }
        }
        true
    }

    /// Head bytes: how many of `bytes` it used, or `None` on a conflict.
    fn head(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut start = 0;
        if self.head.is_empty() {
            // Empty lines before a request are skipped, by hyper too.
            let Some(first) = bytes.iter().position(|&b| b != b'\r' && b != b'\n') else {
                return Some(bytes.len());
            };
            start = first;
            self.line_empty = true;
        }
        let mut line = start;
        while let Some(lf) = bytes[line..].iter().position(|&b| b == b'\n') {
            let lf = line + lf;
            let empty = self.line_empty && bytes[line..lf].iter().all(|&b| b == b'\r');
            self.line_empty = true;
            line = lf + 1;
            if !empty {
                continue;
            }
            // The head ends here; copied only when it began in an earlier read.
            let framing = if self.head.is_empty() {
                framing(&bytes[start..line])
            } else if self.head.len() + (line - start) > MAX_HEAD {
                Framing::Next(Scan::Off)
            } else {
                self.head.extend_from_slice(&bytes[start..line]);
                framing(&self.head)
            };
            self.head.clear();
            if self.head.capacity() > KEEP_HEAD {
                self.head = Vec::new();
            }
            match framing {
                Framing::Conflict => return None,
                Framing::Next(Scan::Off) => self.stop(),
                Framing::Next(next) => self.state = next,
            }
            return Some(line);
        }
        if bytes[line..].iter().any(|&b| b != b'\r') {
            self.line_empty = false;
        }
        if self.head.len() + (bytes.len() - start) > MAX_HEAD {
            // hyper refuses it as too large.
            self.stop();
        } else {
            self.head.extend_from_slice(&bytes[start..]);
        }
        Some(bytes.len())
    }

    fn stop(&mut self) {
        self.state = Scan::Off;
        self.head = Vec::new();
    }
}

/// How many of `available` bytes belong to the `left` still to come.
fn skip(left: u64, available: usize) -> usize {
    usize::try_from(left).map_or(available, |left| left.min(available))
}

/// One byte of chunk framing outside chunk data.
fn chunk_byte(state: Scan, b: u8) -> Scan {
    match state {
        Scan::ChunkSize { digits: false, .. } if b == b'\n' => Scan::Off,
        Scan::ChunkSize { size: 0, .. } if b == b'\n' => Scan::Trailers { empty: true },
        Scan::ChunkSize { size, .. } if b == b'\n' => Scan::ChunkData(size),
        Scan::ChunkSize {
            size,
            digits,
            past: false,
        } => match char::from(b).to_digit(16) {
            Some(d) => match size.checked_mul(16) {
                Some(size) => Scan::ChunkSize {
                    size: size | u64::from(d),
                    digits: true,
                    past: false,
                },
                // hyper refuses it.
                None => Scan::Off,
            },
            None => Scan::ChunkSize {
                size,
                digits,
                past: true,
            },
        },
        Scan::ChunkEnd { cr: false } if b == b'\r' => Scan::ChunkEnd { cr: true },
        Scan::ChunkEnd { .. } if b == b'\n' => Scan::ChunkSize {
            size: 0,
            digits: false,
            past: false,
        },
        // hyper refuses anything else after chunk data.
        Scan::ChunkEnd { .. } => Scan::Off,
        Scan::Trailers { empty: true } if b == b'\n' => Scan::Head,
        Scan::Trailers { .. } if b == b'\n' => Scan::Trailers { empty: true },
        Scan::Trailers { empty } if b == b'\r' => Scan::Trailers { empty },
        Scan::Trailers { .. } => Scan::Trailers { empty: false },
        other => other,
    }
}

/// Reads a complete head the way hyper does (httparse, default rules) for what decides where
/// the request ends.
fn framing(head: &[u8]) -> Framing {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        // hyper refuses what does not parse.
        _ => return Framing::Next(Scan::Off),
    }
    let mut length = None;
    let mut bad_length = false;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut upgrade = false;
    for header in request.headers.iter() {
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            match content_length(header.value) {
                Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
                _ => bad_length = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
            // Like hyper: the last encoding of the last header decides.
            chunked = header
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
        }
    }
    if transfer_encoding && (length.is_some() || bad_length) {
        return Framing::Conflict;
    }
    // The connection may switch protocols after this request.
    if upgrade || request.method == Some("CONNECT") {
        return Framing::Next(Scan::Off);
    }
    Framing::Next(match (transfer_encoding, length) {
        (true, _) if chunked && request.version == Some(1) => Scan::ChunkSize {
            size: 0,
            digits: false,
            past: false,
        },
        // hyper refuses it.
        (true, _) => Scan::Off,
        _ if bad_length => Scan::Off,
        (false, None | Some(0)) => Scan::Head,
        (false, Some(n)) => Scan::Body(n),
    })
}

/// A `Content-Length` value as hyper takes it: digits only.
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let d = char::from(b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use strait_telemetry::Metrics;
    use tokio::io::AsyncReadExt;

    const CL_BODY: &[u8] = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    const CHUNKED: &[u8] = b"POST /b HTTP/1.1\r\nHost: a\r\ntransfer-encoding: gzip, Chunked\r\n\r\n\
        5;name=value;x=\"q\"\r\nhello\r\n10 \r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n";
    const GET: &[u8] = b"\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n";
    const BARE_LF: &[u8] = b"POST /d HTTP/1.1\nHost: a\nContent-Length: 2\n\nhi";

    fn pipelined(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// Feeds `bytes` one at a time; `Some(i)` if byte `i` completed a conflicting head.
    fn byte_at_a_time(bytes: &[u8]) -> (Scanner, Option<usize>) {
        let mut scanner = Scanner::new();
        for (i, b) in bytes.iter().enumerate() {
            if !scanner.scan(std::slice::from_ref(b)) {
                return (scanner, Some(i));
            }
        }
        (scanner, None)
    }

    /// Feeds `bytes` in two reads split at every point; the verdict must not depend on it.
    fn every_split(bytes: &[u8]) -> Vec<bool> {
        (0..=bytes.len())
            .map(|at| {
                let mut scanner = Scanner::new();
                scanner.scan(&bytes[..at]) && scanner.scan(&bytes[at..])
            })
            .collect()
    }

    #[test]
    fn legitimate_requests_are_followed_to_their_end() {
        let all = pipelined(&[CL_BODY, CHUNKED, GET, CL_BODY, BARE_LF, GET]);
        let (scanner, conflict) = byte_at_a_time(&all);
        assert_eq!(conflict, None);
        assert_eq!(scanner.state, Scan::Head, "lost the request boundaries");
        assert!(scanner.head.is_empty());
        assert!(every_split(&all).into_iter().all(|ok| ok));
        let mut whole = Scanner::new();
        assert!(whole.scan(&all));
        assert_eq!(whole.state, Scan::Head);
    }

    #[test]
    fn content_length_with_transfer_encoding_is_a_conflict() {
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: a\r\ncontent-length: 4\r\n\r\n",
            b"POST / HTTP/1.1\nTRANSFER-ENCODING: identity\nCONTENT-LENGTH: 0\n\n",
            b"POST / HTTP/1.1\r\nContent-Length: x\r\ntransfer-encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.0\r\ncontent-Length: 4\r\nTransfer-encoding: chunked\r\n\r\n",
        ];
        for case in cases {
            let (_, conflict) = byte_at_a_time(case);
            // Found at the last byte of the head, whichever line ends it uses.
            let end = (case.windows(4).position(|w| w == b"\r\n\r\n")).map_or_else(
                || case.windows(2).position(|w| w == b"\n\n").unwrap() + 1,
                |at| at + 3,
            );
            assert_eq!(conflict, Some(end), "{}", String::from_utf8_lossy(case));
            assert!(every_split(case).into_iter().all(|ok| !ok));
        }
    }

    #[test]
    fn a_conflict_after_pipelined_requests_is_found() {
        let bad = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        for first in [CHUNKED, CL_BODY, GET] {
            let all = pipelined(&[first, bad]);
            let (_, conflict) = byte_at_a_time(&all);
            assert_eq!(conflict, Some(all.len() - 1));
            assert!(every_split(&all).into_iter().all(|ok| !ok));
        }
        // The body of a chunked request is not a head, even when it looks like one.
        let inner = "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n";
        let hidden = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n",
            inner.len()
        );
        let (scanner, conflict) = byte_at_a_time(hidden.as_bytes());
        assert_eq!((scanner.state, conflict), (Scan::Head, None));
    }

    #[test]
    fn upgrades_and_what_hyper_refuses_stop_the_scan() {
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        ];
        let bad = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for case in cases {
            let (scanner, conflict) = byte_at_a_time(&pipelined(&[case, bad]));
            assert_eq!(conflict, None);
            assert_eq!(scanner.state, Scan::Off);
        }
    }

    #[test]
    fn the_refusal_declares_its_length() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
        assert!(head.contains("\r\nconnection: close"));
    }

    /// A client connection that delivers its bytes one per read.
    struct Trickle {
        input: Vec<u8>,
        at: usize,
        written: Vec<u8>,
        shut: bool,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(&b) = self.input.get(self.at) {
                buf.put_slice(&[b]);
                self.at += 1;
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    async fn through_guard(input: &[u8]) -> (Vec<u8>, Trickle) {
        let io = Trickle {
            input: input.to_vec(),
            at: 0,
            written: Vec::new(),
            shut: false,
        };
        let enforcer = Arc::new(Enforcer::new(Arc::from("web"), Metrics::new()));
        let mut guard = H1Guard::new(io, enforcer, "127.0.0.1:1".parse().unwrap());
        let mut read = Vec::new();
        guard.read_to_end(&mut read).await.unwrap();
        (read, guard.io)
    }

    #[tokio::test]
    async fn the_guard_passes_legitimate_bytes_unchanged() {
        let all = pipelined(&[CL_BODY, CHUNKED, GET, BARE_LF]);
        let (read, io) = through_guard(&all).await;
        assert_eq!(read, all);
        assert!(io.written.is_empty() && !io.shut);
    }

    #[tokio::test]
    async fn the_guard_answers_a_conflict_with_400_and_end_of_stream() {
        let bad =
            b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let all = pipelined(&[CL_BODY, bad]);
        let (read, io) = through_guard(&all).await;
        // Everything up to the last byte of the offending head, never the head complete.
        let head_end = CL_BODY.len() + bad.len() - 5;
        assert_eq!(read, all[..head_end - 1]);
        assert_eq!(io.written, REFUSAL);
        assert!(io.shut);
        // What followed was read and dropped in the linger.
        assert_eq!(io.at, all.len());
    }
}
