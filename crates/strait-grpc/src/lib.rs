//! gRPC wire rules: status codes, `grpc-timeout`, trailers-only replies, and the demo echo and
//! health services that `strait run` without a config proxies to.

mod code;
pub mod echo;
mod reply;
mod timeout;

pub use code::Code;
pub use reply::{encode_message, is_grpc, trailers_only};
pub use timeout::{encode_timeout, parse_timeout, GRPC_TIMEOUT};
