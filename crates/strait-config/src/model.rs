//! The validated, immutable config model. Everything here has already been checked: names
//! resolve, URLs parse, durations are durations. The runtime builds its tables from these types
//! and never re-validates.

use std::net::SocketAddr;
use std::time::Duration;

use indexmap::IndexMap;

/// A whole config file, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// Admin listener; `None` when the file has no `admin:` section.
    pub admin: Option<Admin>,
    /// In file order.
    pub entrypoints: IndexMap<String, Entrypoint>,
    /// In file order.
    pub routers: IndexMap<String, Router>,
    /// In file order.
    pub services: IndexMap<String, Service>,
}

#[derive(Clone, Debug)]
pub struct Admin {
    pub address: SocketAddr,
}

#[derive(Clone, Debug)]
pub struct Entrypoint {
    pub address: SocketAddr,
}

#[derive(Clone, Debug)]
pub struct Router {
    /// Entrypoint names this router serves; every name exists. Empty in the file (key absent)
    /// means all entrypoints, and is expanded here to the full list in file order.
    pub entrypoints: Vec<String>,
    pub matcher: Match,
    /// Name of a service that exists.
    pub service: String,
    /// Explicit priority; higher wins. `None`: ordered by specificity.
    pub priority: Option<i64>,
    /// Caps the deadline of every request on this router (and is the deadline for requests
    /// that carry none). `None`: no timeout.
    pub timeout: Option<Duration>,
}

/// All present conditions must hold. An empty match matches every request.
#[derive(Clone, Debug, Default)]
pub struct Match {
    pub host: Option<HostMatch>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    /// Fully qualified service, e.g. `shop.OrderService` (matches path `/shop.OrderService/*`).
    pub grpc_service: Option<String>,
    /// Method name, e.g. `PlaceOrder` (matches path `/*/PlaceOrder`).
    pub grpc_method: Option<String>,
    /// Any of these methods; empty means any method.
    pub methods: Vec<http::Method>,
    pub headers: Vec<(http::HeaderName, ValueMatch)>,
    pub query: Vec<(String, ValueMatch)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    /// Lower-cased, without port.
    Exact(String),
    /// `*.example.com` stored as the suffix `.example.com` (lower-cased); matches any name
    /// that ends with it and has at least one more label in front.
    Wildcard(String),
}

#[derive(Clone, Debug)]
pub enum ValueMatch {
    Exact(String),
    Regex(regex::Regex),
    Present,
}

#[derive(Clone, Debug)]
pub struct Service {
    /// At least one.
    pub servers: Vec<Server>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub url: UpstreamUrl,
    /// 1 when not given; never 0.
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub scheme: UpstreamScheme,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamScheme {
    /// `h2c://`: HTTP/2 with prior knowledge, plaintext.
    H2c,
    /// `http://`: HTTP/1.1, plaintext.
    Http,
}
