//! gRPC wire rules: status codes, `grpc-timeout`, trailers-only replies, and the demo echo and
//! health services that `strait run` without a config proxies to.

pub mod echo;
mod reply;
mod timeout;

pub use reply::{code_for_http_status, encode_message, is_grpc, status_trailers, trailers_only};
pub use strait_core::Code;
pub use timeout::{encode_timeout, parse_timeout, GRPC_TIMEOUT};
