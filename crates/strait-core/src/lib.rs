//! Types every strait crate shares: the body that flows through the proxy, the request head
//! the phases read, the error that says where a failure happened and whether a retry is safe,
//! and the drain signal.

mod body;
mod code;
mod drain;
mod error;
mod head;

pub use body::{boxed, empty, full, Body};
pub use code::Code;
pub use drain::{Drain, DrainWatch};
pub use error::{h2_reason, BoxError, ErrorKind, ProxyError, Side};
pub use head::RequestHead;
