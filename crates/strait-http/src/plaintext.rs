//! A plaintext connection's protocol, told from its first bytes without consuming them, and
//! the answer to a client that speaks one its entrypoint's `protocols` leave out.
//!
//! The common case costs one `peek`: a client's first segment is either not a prefix of the
//! HTTP/2 preface (HTTP/1.1) or holds all of it (h2c). Only a first segment that stops inside
//! the preface (a lone `P` of a `POST` is one) waits for more, and then without consuming
//! anything, so the connection is still served from the socket itself, with no wrapper.

use std::io;
use std::os::fd::AsFd;

use bytes::{BufMut, Bytes, BytesMut};
use strait_config::PlaintextProtocols;
use strait_telemetry::Protocol;
use tokio::io::{Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::farewell::Farewell;

/// The HTTP/2 client connection preface.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// GOAWAY debug data beyond this is cut; the message fits whatever the entrypoint's name.
const MAX_DEBUG_DATA: usize = 1024;
const HTTP_1_1_REQUIRED: u32 = 0xd;

/// What the first bytes of a plaintext connection say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// The whole HTTP/2 preface: h2c with prior knowledge.
    H2c,
    /// Bytes that leave the preface: HTTP/1.1 (or what hyper will refuse as such).
    Http1,
    /// The client closed, or the socket failed, before its bytes said which.
    Closed,
}

/// What becomes of a plaintext connection once its first bytes are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Served in this protocol.
    Serve(Protocol),
    /// Told why it is not served, then closed.
    Refuse(Refusal),
    /// Closed at once: there is no one to answer.
    Close,
}

/// A protocol a client spoke that its entrypoint's `protocols` leave out. The name is the
/// `reason` label of `strait_protocol_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The HTTP/2 preface on `protocols: [http/1.1]`: GOAWAY `HTTP_1_1_REQUIRED`.
    H2cPriorKnowledge,
    /// HTTP/1.1 on `protocols: [h2c]`: 505.
    Http1,
    /// `Upgrade: h2c` on `protocols: [http/1.1]`: the request is served over HTTP/1.1.
    H2cUpgrade,
}

/// Waits until the first bytes on `stream` leave the HTTP/2 preface or complete it, and
/// consumes none of them. The caller bounds it (`header_read_timeout`).
pub(crate) async fn sniff(stream: &TcpStream) -> Sniffed {
    let mut first = [0u8; PREFACE.len()];
    let n = match stream.peek(&mut first).await {
        Ok(n) => n,
        Err(_) => return Sniffed::Closed,
    };
    match decide(&first[..n]) {
        Some(sniffed) => sniffed,
        // Boxed: only this rare path pays for its state.
        None => Box::pin(rest_of_preface(stream, n))
            .await
            .unwrap_or(Sniffed::Closed),
    }
}

/// What to do with a connection whose first bytes said `sniffed`, on an entrypoint that
/// serves `protocols`.
pub(crate) fn verdict(sniffed: Sniffed, protocols: PlaintextProtocols) -> Verdict {
    match sniffed {
        Sniffed::H2c if protocols.h2c() => Verdict::Serve(Protocol::H2c),
        Sniffed::H2c => Verdict::Refuse(Refusal::H2cPriorKnowledge),
        Sniffed::Http1 if protocols.http11() => Verdict::Serve(Protocol::H1),
        Sniffed::Http1 => Verdict::Refuse(Refusal::Http1),
        Sniffed::Closed => Verdict::Close,
    }
}

/// What `bytes`, all the client sent so far, say; `None` while they are a strict prefix of
/// the preface.
fn decide(bytes: &[u8]) -> Option<Sniffed> {
    if bytes.is_empty() {
        // A peek of nothing: the client closed.
        Some(Sniffed::Closed)
    } else if !PREFACE.starts_with(bytes) {
        Some(Sniffed::Http1)
    } else if bytes.len() == PREFACE.len() {
        Some(Sniffed::H2c)
    } else {
        None
    }
}

/// Waits for bytes beyond the `seen` already peeked, until they decide. tokio's `peek`
/// answers at once while anything is buffered, so a loop of it would spin; instead each
/// round waits for readiness, peeks without blocking, and reports "nothing new" as
/// `WouldBlock`, which makes tokio clear the readiness and wait for the next event.
async fn rest_of_preface(stream: &TcpStream, mut seen: usize) -> io::Result<Sniffed> {
    // A second descriptor for the same socket, for std's peek, which never blocks here: the
    // socket is non-blocking (tokio made it so) and a duplicate shares that. Dropping it
    // closes only the duplicate.
    let peeker = std::net::TcpStream::from(stream.as_fd().try_clone_to_owned()?);
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let ready = stream.ready(Interest::READABLE).await?;
        let peeked = stream.try_io(Interest::READABLE, || match peeker.peek(&mut buf)? {
            n if n > seen => Ok(n),
            _ => Err(io::ErrorKind::WouldBlock.into()),
        });
        match peeked {
            Ok(n) => {
                seen = n;
                if let Some(sniffed) = decide(&buf[..n]) {
                    return Ok(sniffed);
                }
            }
            // Closed is a final readiness that tokio never clears: nothing more will come,
            // and what came is neither a request nor the preface.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && ready.is_read_closed() => {
                return Ok(Sniffed::Closed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

// === impl Refusal ===

impl Refusal {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::H2cPriorKnowledge => "h2c_prior_knowledge",
            Refusal::Http1 => "http1",
            Refusal::H2cUpgrade => "h2c_upgrade",
        }
    }

    /// The protocol the client spoke, for log lines.
    pub(crate) fn spoken(self) -> &'static str {
        match self {
            Refusal::H2cPriorKnowledge => "h2c (HTTP/2 with prior knowledge)",
            Refusal::Http1 => "HTTP/1.1",
            Refusal::H2cUpgrade => "HTTP/1.1 with `Upgrade: h2c`",
        }
    }

    /// What the client reads before the connection closes: for h2c, our SETTINGS (the server
    /// preface a client waits for) and GOAWAY(0, HTTP_1_1_REQUIRED) with the reason as debug
    /// data; for HTTP/1.1, a 505 with `connection: close`. `None` for an upgrade, which is
    /// served instead.
    pub(crate) fn answer(self, entrypoint: &str) -> Option<Bytes> {
        match self {
            Refusal::H2cPriorKnowledge => Some(goaway_http_1_1_required(&format!(
                "entrypoint `{entrypoint}` serves only HTTP/1.1 (its `protocols` are \
                 [http/1.1]); send HTTP/1.1, or add h2c to `protocols`"
            ))),
            Refusal::Http1 => {
                let body = format!(
                    "entrypoint `{entrypoint}` serves only HTTP/2 with prior knowledge (its \
                     `protocols` are [h2c]), not HTTP/1.1; connect with HTTP/2 at once (e.g. curl \
                     --http2-prior-knowledge), or add http/1.1 to `protocols`\n"
                );
                Some(Bytes::from(format!(
                    "HTTP/1.1 505 HTTP Version Not Supported\r\n\
                     content-type: text/plain; charset=utf-8\r\n\
                     content-length: {}\r\n\
                     connection: close\r\n\
                     \r\n\
                     {body}",
                    body.len()
                )))
            }
            Refusal::H2cUpgrade => None,
        }
    }
}

/// An empty SETTINGS frame, then GOAWAY naming no stream, `HTTP_1_1_REQUIRED`, `debug`.
fn goaway_http_1_1_required(debug: &str) -> Bytes {
    let debug = &debug.as_bytes()[..debug.len().min(MAX_DEBUG_DATA)];
    let mut frames = BytesMut::with_capacity(9 + 17 + debug.len());
    frames.put_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    let len = 8 + debug.len();
    frames.put_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, 0x7, 0]);
    frames.put_u32(0); // the connection
    frames.put_u32(0); // last stream: none was processed
    frames.put_u32(HTTP_1_1_REQUIRED);
    frames.put_slice(debug);
    frames.freeze()
}

/// Writes `answer` to a refused client, shuts our side, and lingers reading what it still
/// sends (its preface, its request), so the answer is read rather than lost to a reset.
pub(crate) async fn farewell(mut stream: TcpStream, answer: Bytes) {
    let mut farewell = Farewell::new(answer);
    let mut scratch = [0u8; 4096];
    let mut scratch = ReadBuf::new(&mut scratch);
    std::future::poll_fn(|cx| farewell.poll(&mut stream, cx, &mut scratch)).await;
}

#[cfg(test)]
mod tests;
