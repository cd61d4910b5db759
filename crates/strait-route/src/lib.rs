//! The router: an immutable table, compiled once per config, that picks a router for each
//! request by host, path, gRPC service and method, HTTP method, headers and query.

mod fault;
mod matcher;
mod table;

pub use fault::{FaultInjector, Injected};
pub use table::{Route, RouteTable};
