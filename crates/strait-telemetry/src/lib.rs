//! What strait tells its operators: the metric families behind `/metrics`, the access log (one
//! JSON object a line for each request or stream), the body wrappers that see how a stream
//! ended, and the diagnostic log. Diagnostic logs go to stderr, filtered by `STRAIT_LOG` (the
//! `RUST_LOG` syntax, default `info`), coloured only on a terminal.

mod access_log;
mod body;
mod logging;
mod metrics;
mod record;
mod request_id;

pub use access_log::{AccessLog, DEFAULT_CAPACITY};
pub use body::{decode_grpc_message, grpc_status_of, CountingBody, End, ObservedBody, Outcome};
pub use logging::init_logging;
pub use metrics::{
    BreakerState, ConnectionGuard, EndpointMetrics, EntrypointStreams, HandshakeResult, Metrics,
    StreamGuard, UpstreamConnGuard, UpstreamStreamGuard,
};
pub use record::{parse_grpc_path, Protocol, RequestRecord};
pub use request_id::{request_id, X_REQUEST_ID};
