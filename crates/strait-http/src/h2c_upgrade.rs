//! `Upgrade: h2c` (RFC 7540 §3.2), which curl's `--http2` uses on `http://` URLs and no major
//! proxy supports. After the 101, the upgrade request itself is stream 1 of the new HTTP/2
//! connection. The HTTP/2 engine has no way to adopt a stream it did not read, so we hand it
//! one: the request is encoded as a HEADERS frame for stream 1 and spliced into the inbound
//! bytes right after the client's preface and first SETTINGS frame, where the client would
//! have put it. The frame uses HPACK literals without indexing, so the decoder's dynamic table
//! stays in step with the client's encoder.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use strait_core::{Body, DrainWatch};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tracing::debug;

use crate::limits::Enforcer;
use crate::normalize::is_hop_by_hop;
use crate::plaintext::{Refusal, PREFACE};
use crate::{ConnInfo, Handler};

/// The largest frame a peer may send before it has seen our SETTINGS.
const DEFAULT_MAX_FRAME: usize = 16_384;
/// How long the client has to send its preface after our 101.
const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

const FRAME_HEADERS: u8 = 0x1;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_ACK: u8 = 0x1;

/// If `request` asks to upgrade to h2c and can, answers 101 and serves the rest of the
/// connection as HTTP/2 in a new task. A request with a body is served as HTTP/1.1: the
/// upgrade would have to buffer it whole; so is every request where the entrypoint's
/// `protocols` leave out h2c.
pub(crate) fn take<H: Handler>(
    request: &mut Request<Incoming>,
    handler: &H,
    conn: &Arc<ConnInfo>,
    drain: &DrainWatch,
    enforcer: &Arc<Enforcer>,
) -> Option<Response<Body>> {
    if !wants_h2c(request) {
        return None;
    }
    if !conn.listener.protocols.h2c() {
        // `protocols: [http/1.1]`: served as the HTTP/1.1 request it also is.
        enforcer.protocol_refused(Refusal::H2cUpgrade);
        debug!(
            entrypoint = %conn.entrypoint,
            client = %conn.remote,
            "ignored `Upgrade: h2c`: the entrypoint's `protocols` are [http/1.1]"
        );
        return None;
    }
    let stream_one = headers_frames(&request_parts(request));
    let on_upgrade = hyper::upgrade::on(request);
    let (handler, conn, drain) = (handler.clone(), conn.clone(), drain.clone());
    let enforcer = enforcer.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                debug!(client = %conn.remote, error = %e, "h2c upgrade did not complete");
                return;
            }
        };
        let mut io = TokioIo::new(upgraded);
        let prefix = match tokio::time::timeout(PREFACE_TIMEOUT, read_preface(&mut io)).await {
            Ok(Ok(mut prefix)) => {
                prefix.extend_from_slice(&stream_one);
                prefix.freeze()
            }
            Ok(Err(e)) => {
                debug!(client = %conn.remote, error = %e, "bad HTTP/2 preface after h2c upgrade");
                return;
            }
            Err(_) => {
                debug!(client = %conn.remote, "no HTTP/2 preface within 10s of h2c upgrade");
                return;
            }
        };
        let io = crate::h2::guarded(
            Prefixed { prefix, inner: io },
            &conn,
            tokio::time::Instant::now(),
            &enforcer,
        );
        // Counted once, as the HTTP/1.1 connection it was.
        crate::h2::serve_h2(io, handler, conn, drain, enforcer, ()).await;
    });
    let mut response = Response::new(strait_core::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("h2c"));
    Some(response)
}

fn wants_h2c(request: &Request<Incoming>) -> bool {
    let headers = request.headers();
    let has_token = |name: http::header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let no_body = !headers.contains_key(TRANSFER_ENCODING)
        && headers
            .get(CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
    request.version() == Version::HTTP_11
        && has_token(UPGRADE, "h2c")
        && has_token(CONNECTION, "upgrade")
        && has_token(CONNECTION, "http2-settings")
        && headers.get_all("http2-settings").iter().count() == 1
        && no_body
}

fn request_parts(request: &Request<Incoming>) -> Parts {
    let mut clone = Request::new(());
    *clone.method_mut() = request.method().clone();
    *clone.uri_mut() = request.uri().clone();
    *clone.headers_mut() = request.headers().clone();
    clone.into_parts().0
}

/// Reads the client's connection preface and its first frame, which must be SETTINGS.
async fn read_preface<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<BytesMut> {
    let mut buf = BytesMut::zeroed(PREFACE.len() + 9);
    io.read_exact(&mut buf).await?;
    if &buf[..PREFACE.len()] != PREFACE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not the HTTP/2 client preface",
        ));
    }
    let header = &buf[PREFACE.len()..];
    let length =
        usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    if header[3] != FRAME_SETTINGS || header[4] & FLAG_ACK != 0 || length > DEFAULT_MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "first HTTP/2 frame is not SETTINGS",
        ));
    }
    let start = buf.len();
    buf.resize(start + length, 0);
    io.read_exact(&mut buf[start..]).await?;
    Ok(buf)
}

/// Stream 1 as HEADERS (+ CONTINUATION) frames, END_STREAM set: the request had no body.
fn headers_frames(parts: &Parts) -> Bytes {
    let mut block = Vec::with_capacity(256);
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes().to_vec())
        .or_else(|| parts.headers.get(HOST).map(|h| h.as_bytes().to_vec()));
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .as_bytes();
    hpack_literal(&mut block, b":method", parts.method.as_str().as_bytes());
    hpack_literal(&mut block, b":scheme", b"http");
    if let Some(authority) = &authority {
        hpack_literal(&mut block, b":authority", authority);
    }
    hpack_literal(&mut block, b":path", path);
    for (name, value) in &parts.headers {
        if name == HOST || name == "http2-settings" || is_hop_by_hop(name, &parts.headers) {
            continue;
        }
        if name == http::header::TE && value.as_bytes() != b"trailers" {
            continue;
        }
        hpack_literal(&mut block, name.as_str().as_bytes(), value.as_bytes());
    }

    let mut frames =
        BytesMut::with_capacity(block.len() + 9 * (1 + block.len() / DEFAULT_MAX_FRAME));
    let mut chunks = block.chunks(DEFAULT_MAX_FRAME).peekable();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let (kind, mut flags) = if first {
            (FRAME_HEADERS, FLAG_END_STREAM)
        } else {
            (FRAME_CONTINUATION, 0)
        };
        if last {
            flags |= FLAG_END_HEADERS;
        }
        let len = chunk.len();
        frames.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
        frames.extend_from_slice(&1u32.to_be_bytes());
        frames.extend_from_slice(chunk);
        first = false;
    }
    frames.freeze()
}

/// "Literal Header Field without Indexing — New Name" (RFC 7541 §6.2.2), no Huffman.
fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_int(out, name.len(), 7);
    out.extend_from_slice(name);
    hpack_int(out, value.len(), 7);
    out.extend_from_slice(value);
}

/// RFC 7541 §5.1 integer with an N-bit prefix; the prefix's other bits (H) are zero.
fn hpack_int(out: &mut Vec<u8>, mut value: usize, prefix_bits: u32) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(value as u8);
        return;
    }
    out.push(max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// An IO that first yields `prefix`, then reads from `inner`.
struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_integers_follow_rfc_7541_examples() {
        let mut out = Vec::new();
        hpack_int(&mut out, 10, 5);
        assert_eq!(out, [10]);
        out.clear();
        hpack_int(&mut out, 1337, 5);
        assert_eq!(out, [31, 154, 10]);
        out.clear();
        hpack_int(&mut out, 127, 7);
        assert_eq!(out, [127, 0]);
    }

    #[test]
    fn large_header_blocks_split_into_continuation_frames() {
        let mut request = Request::get("http://example.com/big");
        for i in 0..4 {
            request = request.header(format!("x-big-{i}"), "v".repeat(8000));
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        let frames = headers_frames(&parts);
        let mut offset = 0;
        let mut kinds = Vec::new();
        while offset < frames.len() {
            let len = usize::from(frames[offset]) << 16
                | usize::from(frames[offset + 1]) << 8
                | usize::from(frames[offset + 2]);
            assert!(len <= DEFAULT_MAX_FRAME);
            kinds.push((frames[offset + 3], frames[offset + 4]));
            assert_eq!(&frames[offset + 5..offset + 9], &[0, 0, 0, 1]);
            offset += 9 + len;
        }
        assert_eq!(offset, frames.len());
        assert_eq!(kinds.first(), Some(&(FRAME_HEADERS, FLAG_END_STREAM)));
        assert_eq!(kinds.last().unwrap().1 & FLAG_END_HEADERS, FLAG_END_HEADERS);
        assert!(kinds[1..].iter().all(|(k, _)| *k == FRAME_CONTINUATION));
    }
}
