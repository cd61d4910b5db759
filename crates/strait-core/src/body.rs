use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

use crate::BoxError;

/// The body type above the connection layer, in both directions. Errors stay boxed so the
/// cause chain (an `h2::Error` with its reset reason, say) reaches whoever decides what the
/// peer sees.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

pub fn empty() -> Body {
    boxed(Empty::<Bytes>::new())
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    boxed(Full::new(bytes.into()))
}
