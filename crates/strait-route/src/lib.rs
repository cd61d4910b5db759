//! Routing and filters: an immutable table, compiled once per config, that picks a router for
//! each request by host, path, gRPC service and method, HTTP method, headers and query, and
//! hands back the router's runtime: its service, policy and filters.

mod fault;
mod filter;
mod matcher;
mod route;
mod table;

pub use fault::{FaultInjector, Injected};
pub use filter::{Filter, FilterContext, Filters, Flow};
pub use route::{Fallback, Route};
pub use table::RouteTable;
