//! A request body that can be sent more than once: the first attempt reads the client's body
//! and keeps what it read (up to a cap); a later attempt replays that, then goes on reading
//! the client's body where the last attempt stopped. A body that outgrew the cap cannot be
//! replayed, and the retry loop knows it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as _, Frame, SizeHint};
use strait_core::{Body, BoxError};

/// The shared state behind every attempt's body.
#[derive(Debug)]
struct Shared {
    /// The client's body; `None` once it ended.
    source: Option<Body>,
    /// Data read so far, in order, while within the cap.
    kept: VecDeque<Bytes>,
    kept_bytes: usize,
    trailers: Option<HeaderMap>,
    /// More than `cap` bytes were read: what was kept is not the whole body.
    overflowed: bool,
    /// A later attempt may still need the data; once false nothing more is kept.
    keeping: bool,
    cap: usize,
    /// Which attempt may read; an older attempt's body stops (the retry loop dropped its
    /// stream already, but a pipe task may still hold it).
    generation: u64,
    /// The client's body ended with an error.
    failed: bool,
}

/// Makes attempt bodies.
#[derive(Clone, Debug)]
pub struct Replay {
    shared: Arc<Mutex<Shared>>,
}

/// One attempt's view of the request body.
#[derive(Debug)]
pub struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
    generation: u64,
    /// Next kept chunk to replay.
    position: usize,
    /// Ends at once: the client sent no body.
    empty: bool,
    done: bool,
}

impl Replay {
    /// Wraps `body`, keeping up to `cap` bytes for replay.
    pub fn new(body: Body, cap: usize) -> Replay {
        Replay {
            shared: Arc::new(Mutex::new(Shared {
                source: Some(body),
                kept: VecDeque::new(),
                kept_bytes: 0,
                trailers: None,
                overflowed: false,
                keeping: true,
                cap,
                generation: 0,
                failed: false,
            })),
        }
    }

    /// A body for the next attempt; the previous attempt's body stops yielding.
    pub fn body(&self) -> Body {
        let mut shared = self.lock();
        shared.generation += 1;
        let empty = shared.source.as_ref().is_some_and(|b| b.is_end_stream())
            && shared.kept.is_empty()
            && shared.trailers.is_none();
        strait_core::boxed(ReplayBody {
            shared: self.shared.clone(),
            generation: shared.generation,
            position: 0,
            empty,
            done: false,
        })
    }

    /// True while every byte read so far was kept: another attempt can send the same body.
    pub fn can_replay(&self) -> bool {
        let shared = self.lock();
        !shared.overflowed && !shared.failed
    }

    /// No more attempts will be made: stop keeping data and free what was kept.
    pub fn finish(&self) {
        let mut shared = self.lock();
        shared.keeping = false;
        shared.kept.clear();
        shared.kept_bytes = 0;
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }
}

/// The state behind `Replay` and its bodies; a panic while it was held leaves nothing half
/// done that the next holder could not handle, so poisoning is ignored.
fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl http_body::Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done || this.empty {
            return Poll::Ready(None);
        }
        let mut shared = lock(&this.shared);
        if shared.generation != this.generation {
            this.done = true;
            return Poll::Ready(Some(Err("request body moved to a newer attempt".into())));
        }
        // Replay what an earlier attempt kept.
        if let Some(chunk) = shared.kept.get(this.position) {
            this.position += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
        }
        let Some(source) = shared.source.as_mut() else {
            this.done = true;
            return Poll::Ready(shared.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        };
        match Pin::new(source).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                shared.source = None;
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                shared.failed = true;
                shared.source = None;
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if shared.keeping && !shared.overflowed {
                        if shared.kept_bytes + data.len() <= shared.cap {
                            shared.kept_bytes += data.len();
                            shared.kept.push_back(data.clone());
                            this.position = shared.kept.len();
                        } else {
                            shared.overflowed = true;
                            shared.kept.clear();
                            shared.kept_bytes = 0;
                        }
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    shared.trailers = Some(trailers.clone());
                    shared.source = None;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    /// True as soon as nothing is left: the kept data replayed and the client's body at its
    /// end. Saying so early lets the last DATA frame carry END_STREAM instead of an empty
    /// DATA frame of its own (one frame less per request; some peers count empty frames).
    fn is_end_stream(&self) -> bool {
        if self.empty || self.done {
            return true;
        }
        let shared = lock(&self.shared);
        shared.generation == self.generation
            && self.position >= shared.kept.len()
            && shared.trailers.is_none()
            && shared
                .source
                .as_ref()
                .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    fn body(chunks: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        strait_core::boxed(StreamBody::new(futures_util::stream::iter(frames)))
    }

    async fn read(body: Body) -> Result<Vec<u8>, BoxError> {
        Ok(body.collect().await?.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn a_second_attempt_gets_the_same_bytes() {
        let replay = Replay::new(body(&[b"hello ", b"world"]), 1024);
        assert_eq!(read(replay.body()).await.unwrap(), b"hello world");
        assert!(replay.can_replay());
        assert_eq!(read(replay.body()).await.unwrap(), b"hello world");
    }

    #[tokio::test]
    async fn a_retry_mid_body_replays_then_continues() {
        let replay = Replay::new(body(&[b"a", b"b", b"c"]), 1024);
        let mut first = replay.body();
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "a");
        let second = replay.body();
        // The first attempt's body is stale now.
        assert!(first.frame().await.unwrap().is_err());
        assert_eq!(read(second).await.unwrap(), b"abc");
    }

    #[tokio::test]
    async fn past_the_cap_it_cannot_replay() {
        let replay = Replay::new(body(&[b"0123456789", b"0123456789"]), 15);
        assert_eq!(read(replay.body()).await.unwrap().len(), 20);
        assert!(!replay.can_replay());
    }

    #[tokio::test]
    async fn finish_stops_keeping() {
        let replay = Replay::new(body(&[b"abc"]), 1024);
        replay.finish();
        assert_eq!(read(replay.body()).await.unwrap(), b"abc");
        assert!(replay.lock().kept.is_empty());
    }

    #[tokio::test]
    async fn the_end_is_known_with_the_last_chunk() {
        let replay = Replay::new(strait_core::full("abc"), 1024);
        let mut first = replay.body();
        assert!(!first.is_end_stream());
        first.frame().await.unwrap().unwrap();
        assert!(first.is_end_stream(), "no empty frame needed to end it");
        // A retry replays, and knows its end the same way.
        let mut second = replay.body();
        assert!(!second.is_end_stream());
        second.frame().await.unwrap().unwrap();
        assert!(second.is_end_stream());
    }

    #[tokio::test]
    async fn an_empty_body_is_end_of_stream() {
        let replay = Replay::new(strait_core::empty(), 1024);
        assert!(replay.body().is_end_stream());
        assert!(replay.body().is_end_stream());
    }
}
