//! The last words to a client a guard refuses: one message (a GOAWAY frame, a 400), our
//! side of the connection shut, then a short linger that reads and drops what the client
//! still sends, so the message is read rather than lost to a TCP reset. Shared by the HTTP/2
//! frame guard and the HTTP/1.1 guard.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a refused client has, from the refusal, to read the message before the
/// connection closes, and how much it may still send meanwhile.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

pub(crate) struct Farewell {
    message: Bytes,
    sent: usize,
    shut: bool,
    drained: usize,
    deadline: Pin<Box<Sleep>>,
}

impl Farewell {
    pub(crate) fn new(message: Bytes) -> Farewell {
        Farewell {
            message,
            sent: 0,
            shut: false,
            drained: 0,
            deadline: Box::pin(tokio::time::sleep(LINGER)),
        }
    }

    /// Some of the message went out: nothing of the engine's may follow it any more.
    pub(crate) fn started(&self) -> bool {
        self.sent > 0
    }

    /// Writes the message, shuts our side, then reads and drops until the client closes,
    /// the linger ends, or it sent too much. `Ready` once the connection is done.
    /// `scratch` is any read buffer; what is read into it is dropped again.
    pub(crate) fn poll<I: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut I,
        cx: &mut Context<'_>,
        scratch: &mut ReadBuf<'_>,
    ) -> Poll<()> {
        loop {
            if self.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            if self.sent < self.message.len() {
                match Pin::new(&mut *io).poll_write(cx, &self.message[self.sent..]) {
                    Poll::Ready(Ok(n)) if n > 0 => self.sent += n,
                    Poll::Ready(_) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            if !self.shut {
                match Pin::new(&mut *io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
                if Pin::new(&mut *io).poll_shutdown(cx).is_pending() {
                    return Poll::Pending;
                }
                self.shut = true;
            }
            if self.drained > LINGER_BYTES {
                return Poll::Ready(());
            }
            let before = scratch.filled().len();
            match Pin::new(&mut *io).poll_read(cx, scratch) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if scratch.filled().len() > before => {
                    self.drained += scratch.filled().len() - before;
                    scratch.set_filled(before);
                }
                // End of stream or an error: the client is gone.
                Poll::Ready(_) => return Poll::Ready(()),
            }
        }
    }
}
