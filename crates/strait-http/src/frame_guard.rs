//! HTTP/2 flood protection below the HTTP/2 engine: an IO wrapper that reads the 9-byte
//! frame headers of a client connection as they pass (payloads are skipped, nothing is
//! copied or allocated per frame) and counts frames by kind over time. When a client goes
//! over a limit it gets GOAWAY(ENHANCE_YOUR_CALM) naming the highest stream it opened, and
//! the connection closes after a short linger, so that the GOAWAY is read rather than lost
//! to a TCP reset. It also closes HTTP/2 connections that send no complete request headers
//! within `header_read_timeout` (slowloris).
//!
//! The outgoing frame headers are followed too, only to know where frames end: the GOAWAY
//! is written between two of the engine's frames, never inside one.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use strait_config::{Http2Settings, Limits};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::farewell::Farewell;
use crate::limits::{Enforcer, Limit};

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
/// RFC 9113 §7.
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// An IO that speaks HTTP/2 from its first byte (after TLS with ALPN h2, h2c with prior
/// knowledge, or the rest of an `Upgrade: h2c` connection), guarded.
pub(crate) struct FrameGuard<I> {
    io: I,
    inbound: Parser,
    outbound: Parser,
    buckets: [Bucket; 6],
    max_continuation: u32,
    /// CONTINUATION frames since the open HEADERS frame; `None` outside a header block.
    continuation: Option<u32>,
    /// Bytes of the open header block, and whether it went over the header list limit.
    block_bytes: u64,
    block_over: bool,
    max_header_list: u64,
    highest_stream: u32,
    /// Until the first request's headers are complete.
    headers_deadline: Option<Pin<Box<Sleep>>>,
    state: State,
    enforcer: Arc<Enforcer>,
    client: SocketAddr,
}

enum State {
    Open,
    /// Over a limit: the GOAWAY goes out at the next frame boundary, then the linger.
    GoAway(Farewell),
    Closed,
}

/// Follows frame boundaries in one direction of a connection.
#[derive(Default)]
struct Parser {
    /// Preface bytes still to come (inbound only).
    preface: usize,
    head: [u8; 9],
    have: usize,
    payload: usize,
}

#[derive(Clone, Copy)]
struct Head {
    length: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

/// A token bucket holding one second's worth of frames.
struct Bucket {
    rate: Option<u32>,
    tokens: f64,
    last: Option<Instant>,
    limit: Limit,
}

// === impl FrameGuard ===

impl<I> FrameGuard<I> {
    /// `started` is when the connection was accepted: its first request's headers are due
    /// `header_read_timeout` later.
    pub(crate) fn new(
        io: I,
        limits: &Limits,
        http2: &Http2Settings,
        started: Instant,
        enforcer: Arc<Enforcer>,
        client: SocketAddr,
    ) -> FrameGuard<I> {
        let rates = &limits.http2_frames_per_second;
        FrameGuard {
            io,
            inbound: Parser {
                preface: PREFACE.len(),
                ..Parser::default()
            },
            outbound: Parser::default(),
            buckets: [
                Bucket::new(rates.rst_stream, Limit::RapidReset),
                Bucket::new(rates.settings, Limit::SettingsFlood),
                Bucket::new(rates.ping, Limit::PingFlood),
                Bucket::new(rates.window_update, Limit::WindowUpdateFlood),
                Bucket::new(rates.priority, Limit::PriorityFlood),
                Bucket::new(rates.empty_data, Limit::EmptyDataFlood),
            ],
            max_continuation: limits
                .continuation_frames(http2.max_header_list_size, http2.max_frame_size),
            continuation: None,
            block_bytes: 0,
            block_over: false,
            max_header_list: u64::from(strait_config::engine_header_list_size(
                http2.max_header_list_size,
            )),
            highest_stream: 0,
            headers_deadline: Some(Box::pin(tokio::time::sleep_until(
                started + limits.header_read_timeout,
            ))),
            state: State::Open,
            enforcer,
            client,
        }
    }

    /// Looks at bytes the client sent; `Err` with the limit they go over.
    fn inspect(&mut self, bytes: &[u8]) -> Result<(), Limit> {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.inbound.preface > 0 {
                let at = PREFACE.len() - self.inbound.preface;
                let n = self.inbound.preface.min(rest.len());
                // Not HTTP/2 after all: the engine will refuse it; nothing to count.
                if rest[..n] != PREFACE[at..at + n] {
                    return Ok(());
                }
                self.inbound.preface -= n;
                rest = &rest[n..];
                continue;
            }
            let (used, head) = self.inbound.step(rest);
            rest = &rest[used..];
            if let Some(head) = head {
                self.frame(head)?;
            }
        }
        Ok(())
    }

    fn frame(&mut self, head: Head) -> Result<(), Limit> {
        let bucket = match head.kind {
            HEADERS => {
                if head.stream % 2 == 1 {
                    self.highest_stream = self.highest_stream.max(head.stream);
                }
                self.block_bytes = head.length as u64;
                self.continuation = Some(0);
                self.header_block(head);
                return Ok(());
            }
            CONTINUATION => {
                let count = self.continuation.unwrap_or(0) + 1;
                if count > self.max_continuation {
                    return Err(Limit::ContinuationFrames);
                }
                self.continuation = Some(count);
                self.block_bytes += head.length as u64;
                self.header_block(head);
                return Ok(());
            }
            DATA if head.length == 0 && head.flags & END_STREAM == 0 => 5,
            RST_STREAM => 0,
            SETTINGS => 1,
            PING => 2,
            WINDOW_UPDATE => 3,
            PRIORITY => 4,
            _ => return Ok(()),
        };
        self.buckets[bucket].take()
    }

    /// After a HEADERS or CONTINUATION frame.
    fn header_block(&mut self, head: Head) {
        if !self.block_over && self.block_bytes > self.max_header_list {
            // Over the engine's bound (an HPACK block never decodes smaller than it is,
            // padding aside): the engine answers it, 431 or GOAWAY, and admission never sees
            // it; counted here, once per block, so the metric shows it. Blocks under the
            // bound but over `max_header_list_size` are counted by admission.
            self.enforcer.fired(Limit::HeaderListSize, self.client);
            self.block_over = true;
        }
        if head.flags & END_HEADERS != 0 {
            self.continuation = None;
            self.block_bytes = 0;
            self.block_over = false;
            self.headers_deadline = None;
        }
    }

    fn trip(&mut self, limit: Limit) {
        self.enforcer.fired(limit, self.client);
        let mut frame = [0u8; 17];
        frame[2] = 8; // length
        frame[3] = 0x7; // GOAWAY
        frame[9..13].copy_from_slice(&self.highest_stream.to_be_bytes());
        frame[13..17].copy_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        self.state = State::GoAway(Farewell::new(Bytes::copy_from_slice(&frame)));
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> FrameGuard<I> {
    /// Drives a tripped connection towards its close: the GOAWAY at a frame boundary, then
    /// our side shut, then the linger. `Ready(())` once the connection is done.
    fn poll_wind_down(&mut self, cx: &mut Context<'_>, scratch: &mut ReadBuf<'_>) -> Poll<()> {
        let State::GoAway(farewell) = &mut self.state else {
            return Poll::Ready(());
        };
        // Inside one of the engine's frames: it finishes that frame through poll_write
        // first.
        if !farewell.started() && !self.outbound.at_boundary() {
            return Poll::Pending;
        }
        ready!(farewell.poll(&mut self.io, cx, scratch));
        self.state = State::Closed;
        Poll::Ready(())
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "client connection closed: it went over a limit",
    )
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for FrameGuard<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if matches!(this.state, State::Open) {
            if let Some(deadline) = &mut this.headers_deadline {
                if deadline.as_mut().poll(cx).is_ready() {
                    this.enforcer.fired(Limit::HeaderReadTimeout, this.client);
                    this.state = State::Closed;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no complete request headers within header_read_timeout",
                    )));
                }
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            let new = &buf.filled()[before..];
            match this.inspect(new) {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(limit) => {
                    // What came with the offending frame is not passed on.
                    buf.set_filled(before);
                    this.trip(limit);
                }
            }
        }
        ready!(this.poll_wind_down(cx, buf));
        Poll::Ready(Err(closed()))
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for FrameGuard<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match &this.state {
            State::Open => {
                let n = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
                this.outbound.skip(&buf[..n]);
                Poll::Ready(Ok(n))
            }
            State::GoAway(farewell) if !farewell.started() && !this.outbound.at_boundary() => {
                // Finish the frame in flight, and nothing after it.
                let n = this.outbound.to_boundary().min(buf.len());
                let n = ready!(Pin::new(&mut this.io).poll_write(cx, &buf[..n]))?;
                this.outbound.skip(&buf[..n]);
                Poll::Ready(Ok(n))
            }
            // Whatever the engine still writes is dropped: the GOAWAY is the last frame.
            // Refusing it would make the engine drop the connection before the linger.
            State::GoAway(_) => Poll::Ready(Ok(buf.len())),
            State::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !matches!(this.state, State::Open) {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return Pin::new(this).poll_write(cx, first);
        }
        let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for slice in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(slice.len());
            this.outbound.skip(&slice[..take]);
            left -= take;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.state {
            State::Open => Pin::new(&mut this.io).poll_flush(cx),
            State::Closed => Poll::Ready(Err(closed())),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.state {
            State::Open => Pin::new(&mut this.io).poll_shutdown(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}

// === impl Parser ===

impl Parser {
    /// Consumes the start of `bytes`: payload to skip, or frame header bytes. Returns how
    /// many bytes it used and the frame header it completed, if any.
    fn step(&mut self, bytes: &[u8]) -> (usize, Option<Head>) {
        if self.payload > 0 {
            let n = self.payload.min(bytes.len());
            self.payload -= n;
            return (n, None);
        }
        let n = (9 - self.have).min(bytes.len());
        self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
        self.have += n;
        if self.have < 9 {
            return (n, None);
        }
        self.have = 0;
        let h = &self.head;
        let head = Head {
            length: usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        };
        self.payload = head.length;
        (n, Some(head))
    }

    /// Follows `bytes` without looking at the frames.
    fn skip(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (used, _) = self.step(bytes);
            bytes = &bytes[used..];
        }
    }

    fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload == 0
    }

    /// Bytes that can be written before the next point where the frame length is known or
    /// the frame ends.
    fn to_boundary(&self) -> usize {
        if self.have > 0 {
            9 - self.have
        } else {
            self.payload
        }
    }
}

// === impl Bucket ===

impl Bucket {
    fn new(rate: Option<u32>, limit: Limit) -> Bucket {
        Bucket {
            rate,
            tokens: rate.map_or(0.0, f64::from),
            last: None,
            limit,
        }
    }

    /// One frame: `Err` when the bucket is empty.
    fn take(&mut self) -> Result<(), Limit> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let rate = f64::from(rate);
        let now = Instant::now();
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * rate;
            self.tokens = (self.tokens + refill).min(rate);
        }
        self.last = Some(now);
        if self.tokens < 1.0 {
            return Err(self.limit);
        }
        self.tokens -= 1.0;
        Ok(())
    }
}
