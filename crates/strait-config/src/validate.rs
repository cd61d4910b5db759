//! The located tree to the validated [`Config`], collecting every problem rather than
//! stopping at the first, so one `strait check config` run shows all of them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use crate::model::{
    AccessLogTarget, Admin, Config, Entrypoint, HostMatch, Http2Settings, Lifecycle, Match,
    PlaintextProtocols, ProcessLifecycle, Router, Server, Service, UpstreamScheme, UpstreamUrl,
    ValueMatch,
};
use crate::tree::{Key, Loc, Node, NodeKind};
use crate::{parse_duration, Problem};

mod lifecycle;
mod limits;
mod protocols;
mod resilience;
mod tls;

pub(crate) use tls::mode_name;

const TOP_KEYS: &[&str] = &[
    "admin",
    "entrypoints",
    "routers",
    "services",
    "middlewares",
    "access_log",
    "drain_timeout",
    "lifecycle",
];
const ACCESS_LOG_KEYS: &[&str] = &["path"];
const ADMIN_KEYS: &[&str] = &["address", "token_file"];
const ENTRYPOINT_KEYS: &[&str] = &[
    "address",
    "tls",
    "http2",
    "max_connection_age",
    "max_connection_age_grace",
    "idle_timeout",
    "limits",
    "path_normalization",
    "protocols",
];
const ROUTER_KEYS: &[&str] = &[
    "entrypoints",
    "match",
    "service",
    "middlewares",
    "priority",
    "timeout",
    "stream_idle_timeout",
    "traffic_class",
    "retry",
    "circuit_breaker",
    "fallback",
    "fault",
];
const MATCH_KEYS: &[&str] = &[
    "host",
    "path",
    "path_prefix",
    "grpc_service",
    "grpc_method",
    "method",
    "headers",
    "query",
    "client_cert_san",
];
const VALUE_MATCH_KEYS: &[&str] = &["exact", "regex", "present"];
const SERVICE_KEYS: &[&str] = &[
    "servers",
    "connect_timeout",
    "tls",
    "http2",
    "max_connection_age",
    "max_connection_age_grace",
    "idle_timeout",
    "max_requests_per_connection",
    "load_balancer",
    "health_check",
    "panic_mode",
    "outlier_detection",
    "circuit_breakers",
];
const SERVER_KEYS: &[&str] = &["url", "weight"];

/// What strait has always allowed a connect (Envoy's default too): a connect is not a
/// stream, so this is the one timeout on by default.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const ADDRESS_HINT: &str = "use host:port, e.g. 127.0.0.1:8080";
const DURATION_HINT: &str = "durations look like 250ms, 30s, 5m, 1h";
const SCHEME_HINT: &str =
    "use h2c:// for HTTP/2 or http:// for HTTP/1.1 backends, https:// for TLS ones";

type Entries = [(Key, Node)];

/// Validates a whole document. The config is only returned when there are no problems.
/// Relative file paths in it are resolved against `base`, the config file's directory.
pub(crate) fn config(root: &Node, base: &Path) -> (Option<Config>, Vec<Problem>) {
    let mut v = Validator {
        base: base.to_path_buf(),
        problems: Vec::new(),
    };
    let config = v.config(root);
    if v.problems.is_empty() {
        (Some(config), v.problems)
    } else {
        (None, v.problems)
    }
}

struct Validator {
    /// Where relative certificate and CA paths start.
    base: PathBuf,
    problems: Vec<Problem>,
}

/// What a router may refer to: every name defined in the file, valid or not, so that a
/// broken service is reported once, where it is defined, and not again at each router.
struct Names {
    entrypoints: Vec<String>,
    services: Vec<String>,
}

/// A listening socket, for finding two that cannot both bind.
struct Listener {
    loc: Loc,
    address: SocketAddr,
    owner: String,
}

// === impl Validator ===

impl Validator {
    fn config(&mut self, root: &Node) -> Config {
        let mut config = Config {
            admin: None,
            entrypoints: IndexMap::new(),
            routers: IndexMap::new(),
            services: IndexMap::new(),
            access_log: None,
            drain_timeout: lifecycle::DEFAULT_DRAIN_TIMEOUT,
            lifecycle: ProcessLifecycle::default(),
        };
        let top: &Entries = match &root.kind {
            NodeKind::Map(entries) => entries,
            NodeKind::Null => return config,
            _ => {
                self.report(
                    root.loc,
                    format!("expected a mapping at top level, found {}", root.describe()),
                );
                return config;
            }
        };
        self.known_keys(top, TOP_KEYS, "at top level");

        if let Some((_, node)) = get(top, "drain_timeout") {
            if let Some(timeout) = self.drain_timeout(node) {
                config.drain_timeout = timeout;
            }
        }
        if let Some((_, node)) = get(top, "lifecycle") {
            if let Some(lifecycle) = self.process_lifecycle(node) {
                config.lifecycle = lifecycle;
            }
        }
        if let Some((key, node)) = get(top, "access_log") {
            config.access_log = self.access_log(key, node);
        }
        let mut listeners = Vec::new();
        if let Some((key, node)) = get(top, "admin") {
            config.admin = self.admin(key, node, &mut listeners);
        }
        let mut names = Names {
            entrypoints: Vec::new(),
            services: Vec::new(),
        };
        if let Some(entries) = section(self, top, "entrypoints") {
            for (key, node) in entries {
                names.entrypoints.push(key.name.clone());
                if let Some(entrypoint) = self.entrypoint(key, node, &mut listeners) {
                    config.entrypoints.insert(key.name.clone(), entrypoint);
                }
            }
        }
        self.listeners(listeners);
        if let Some(entries) = section(self, top, "services") {
            for (key, node) in entries {
                names.services.push(key.name.clone());
                if let Some(service) = self.service(key, node) {
                    config.services.insert(key.name.clone(), service);
                }
            }
        }
        if let Some(entries) = section(self, top, "middlewares") {
            for (key, _) in entries {
                self.report_hint(
                    key.loc,
                    format!(
                        "unknown middleware `{}`: no middleware kinds are available in this release",
                        key.name
                    ),
                    format!("remove `{}`", key.name),
                );
            }
        }
        if let Some(entries) = section(self, top, "routers") {
            for (key, node) in entries {
                if let Some(router) =
                    self.router(key, node, &names, &config.entrypoints, &config.services)
                {
                    config.routers.insert(key.name.clone(), router);
                }
            }
        }
        config
    }

    /// `access_log: { path: stdout }` or `{ path: logs/access.log }`; the file's directory
    /// must exist.
    fn access_log(&mut self, key: &Key, node: &Node) -> Option<AccessLogTarget> {
        let context = "in `access_log`";
        let entries = self.mapping(node, "`access_log`")?;
        self.known_keys(entries, ACCESS_LOG_KEYS, context);
        let (_, value) = self.required(key, entries, "path", context)?;
        let written = self.string(value, "`path` in `access_log`")?;
        if written == "stdout" {
            return Some(AccessLogTarget::Stdout);
        }
        if written.is_empty() {
            self.report_hint(
                value.loc,
                "empty `path` in `access_log`",
                "use `stdout` or a file path",
            );
            return None;
        }
        let path = tls::resolve(&self.base, written);
        let parent_ok = path.parent().is_some_and(Path::is_dir);
        if !parent_ok || path.is_dir() {
            self.report_hint(
                value.loc,
                format!(
                    "cannot write the access log to `{written}` (resolved to {})",
                    path.display()
                ),
                "the directory must exist and the path must name a file; or use `stdout`",
            );
            return None;
        }
        Some(AccessLogTarget::File(path))
    }

    fn admin(&mut self, key: &Key, node: &Node, listeners: &mut Vec<Listener>) -> Option<Admin> {
        let entries = self.mapping(node, "`admin`")?;
        let context = "in `admin`";
        self.known_keys(entries, ADMIN_KEYS, context);
        let token_file = match get(entries, "token_file") {
            None => Some(None),
            Some((_, value)) => self.file(value, "token_file", context).map(Some),
        };
        // Loopback by default: the admin API can reload and reveals the config.
        let (address, loc) = match get(entries, "address") {
            Some((_, value)) => (self.address(value, "`address` in `admin`")?, value.loc),
            None => (SocketAddr::from(([127, 0, 0, 1], 9901)), key.loc),
        };
        listeners.push(Listener {
            loc,
            address,
            owner: "the admin listener".to_owned(),
        });
        Some(Admin {
            address,
            token_file: token_file?,
        })
    }

    fn entrypoint(
        &mut self,
        key: &Key,
        node: &Node,
        listeners: &mut Vec<Listener>,
    ) -> Option<Entrypoint> {
        let name_ok = self.name(key, "entrypoint");
        let context = format!("in entrypoint `{}`", key.name);
        let entries = self.mapping(node, &format!("entrypoint `{}`", key.name))?;
        self.known_keys(entries, ENTRYPOINT_KEYS, &context);
        // Checked before the address so that its problems are found even when that is wrong.
        let tls = match get(entries, "tls") {
            None => Some(None),
            Some((tls_key, value)) => self.server_tls(&key.name, tls_key, value).map(Some),
        };
        let protocols = match get(entries, "protocols") {
            None => Some(PlaintextProtocols::default()),
            Some((protocols_key, value)) => {
                let has_tls = get(entries, "tls").is_some();
                self.plaintext_protocols(&key.name, protocols_key, value, has_tls)
            }
        };
        let http2 = match get(entries, "http2") {
            None => Some(Http2Settings::default()),
            Some((_, value)) => self.http2(&format!("entrypoint `{}`", key.name), value),
        };
        let lifecycle = self.lifecycle(entries, &context);
        let hardening = self.hardening(entries, http2.as_ref(), &context);
        let (_, value) = self.required(key, entries, "address", &context)?;
        let address = self.address(value, &format!("`address` {context}"))?;
        listeners.push(Listener {
            loc: value.loc,
            address,
            owner: format!("entrypoint `{}`", key.name),
        });
        let entrypoint = Entrypoint {
            address,
            tls: tls?,
            protocols: protocols?,
            http2: http2?,
            lifecycle: lifecycle?,
            limits: hardening.0?,
            path_normalization: hardening.1?,
        };
        name_ok.then_some(entrypoint)
    }

    /// Two listeners clash when they would bind the same port on overlapping addresses; the
    /// later one in the file is the one reported.
    fn listeners(&mut self, mut listeners: Vec<Listener>) {
        listeners.sort_by_key(|listener| listener.loc);
        for (i, listener) in listeners.iter().enumerate() {
            let address = listener.address;
            if address.port() == 0 {
                continue;
            }
            let Some(earlier) = listeners[..i].iter().find(|earlier| {
                earlier.address.port() == address.port()
                    && overlaps(earlier.address.ip(), address.ip())
            }) else {
                continue;
            };
            let message = if earlier.address == address {
                format!("address {address} is already used by {}", earlier.owner)
            } else {
                format!(
                    "address {address} overlaps {} of {}",
                    earlier.address, earlier.owner
                )
            };
            self.problems.push(
                Problem::new(listener.loc, message)
                    .with_hint("give each listener its own port or address"),
            );
        }
    }

    fn service(&mut self, key: &Key, node: &Node) -> Option<Service> {
        let name_ok = self.name(key, "service");
        let context = format!("in service `{}`", key.name);
        let entries = self.mapping(node, &format!("service `{}`", key.name))?;
        self.known_keys(entries, SERVICE_KEYS, &context);
        let (servers_key, list) = self.required(key, entries, "servers", &context)?;
        let items = self.list(list, &format!("`servers` {context}"))?;
        if items.is_empty() {
            self.report_hint(
                list.loc,
                format!("service `{}` has no servers", key.name),
                "add at least one, e.g. - url: h2c://127.0.0.1:50051",
            );
            return None;
        }
        let mut servers: Vec<Server> = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let context = format!("in server {} of service `{}`", i + 1, key.name);
            match self.server(servers_key, item, &context) {
                Some(server) => {
                    if servers.iter().any(|s| s.url == server.url) {
                        self.report_hint(
                            item.loc,
                            format!(
                                "server {} is listed twice in service `{}`",
                                url_text(&server.url),
                                key.name
                            ),
                            "list it once; use `weight` to send it more requests",
                        );
                        ok = false;
                    }
                    servers.push(server);
                }
                None => ok = false,
            }
        }
        let servers_ok = ok;
        let connect_timeout = match get(entries, "connect_timeout") {
            None => Some(DEFAULT_CONNECT_TIMEOUT),
            Some((_, value)) => self.positive_duration(
                value,
                "connect_timeout",
                &context,
                &lifecycle::Zero {
                    effect: "fail every connection before it opens",
                    hint: "leave `connect_timeout` out for the default, 5s",
                },
            ),
        };
        let tls = match get(entries, "tls") {
            None => None,
            Some((tls_key, value)) => {
                let tls = self.upstream_tls(&key.name, value);
                // With a broken URL the service's intent is unknown; that URL's error is enough.
                let https = servers
                    .iter()
                    .any(|server| server.url.scheme == UpstreamScheme::Https);
                if ok && !https {
                    self.report_hint(
                        tls_key.loc,
                        format!(
                            "`tls` in service `{}` has no effect: none of its servers is https://",
                            key.name
                        ),
                        "write the servers as https://host:port, or remove `tls`",
                    );
                    ok = false;
                }
                ok &= tls.is_some();
                tls
            }
        };
        let http2 = match get(entries, "http2") {
            None => Some(Http2Settings::default()),
            Some((http2_key, value)) => {
                self.service_http2(&key.name, http2_key, value, &servers, servers_ok)
            }
        };
        let lifecycle = self.lifecycle(entries, &context);
        let max_requests = self.max_requests_per_connection(entries, &context);
        let resilience = self.service_resilience(&key.name, entries, &servers);
        let resilience = resilience?;
        let service = Service {
            servers,
            connect_timeout: connect_timeout?,
            tls,
            http2: http2?,
            lifecycle: Lifecycle {
                max_requests_per_connection: max_requests?,
                ..lifecycle?
            },
            load_balancer: resilience.load_balancer,
            health_check: resilience.health_check,
            panic_mode: resilience.panic_mode,
            outlier_detection: resilience.outlier_detection,
            limits: resilience.limits,
        };
        (name_ok && ok).then_some(service)
    }

    fn server(&mut self, servers_key: &Key, node: &Node, context: &str) -> Option<Server> {
        let (url_node, weight) = match &node.kind {
            NodeKind::Str(_) => (node, 1),
            NodeKind::Map(entries) => {
                self.known_keys(entries, SERVER_KEYS, context);
                let owner = Key {
                    name: servers_key.name.clone(),
                    loc: node.loc,
                };
                let weight = match get(entries, "weight") {
                    Some((_, value)) => self.weight(value, context),
                    None => Some(1),
                };
                let (_, url) = self.required(&owner, entries, "url", context)?;
                (url, weight?)
            }
            _ => {
                self.report_hint(
                    node.loc,
                    format!(
                        "expected a URL or a mapping {context}, found {}",
                        node.describe()
                    ),
                    "write `- h2c://host:port` or `- { url: h2c://host:port, weight: 2 }`",
                );
                return None;
            }
        };
        let text = self.string(url_node, &format!("`url` {context}"))?;
        match parse_url(text) {
            Ok(url) => Some(Server { url, weight }),
            Err((message, hint)) => {
                self.problems.push(with_optional_hint(
                    Problem::new(url_node.loc, message),
                    hint,
                ));
                None
            }
        }
    }

    fn weight(&mut self, node: &Node, context: &str) -> Option<u32> {
        let NodeKind::Int(weight) = node.kind else {
            self.report(
                node.loc,
                format!(
                    "expected an integer for `weight` {context}, found {}",
                    node.describe()
                ),
            );
            return None;
        };
        if weight < 1 {
            self.report_hint(
                node.loc,
                format!("weight {weight} {context} is less than 1"),
                "weights are 1 or more; remove the server to send it nothing",
            );
            return None;
        }
        match u32::try_from(weight) {
            Ok(weight) => Some(weight),
            Err(_) => {
                self.report(
                    node.loc,
                    format!("weight {weight} {context} is larger than {}", u32::MAX),
                );
                None
            }
        }
    }

    fn router(
        &mut self,
        key: &Key,
        node: &Node,
        names: &Names,
        defined: &IndexMap<String, Entrypoint>,
        services: &IndexMap<String, Service>,
    ) -> Option<Router> {
        let name = &key.name;
        let name_ok = self.name(key, "router");
        let context = format!("in router `{name}`");
        let entries = self.mapping(node, &format!("router `{name}`"))?;
        self.known_keys(entries, ROUTER_KEYS, &context);
        let mut ok = name_ok;

        let entrypoints = match get(entries, "entrypoints") {
            None => Some(names.entrypoints.clone()),
            Some((_, value)) => self.router_entrypoints(name, value, names),
        };
        let matcher = match get(entries, "match") {
            None => Some(Match::default()),
            Some((_, value)) => self.matcher(name, value),
        };
        let service = match self.required(key, entries, "service", &context) {
            None => None,
            Some((_, value)) => self.reference(
                value,
                &format!("`service` {context}"),
                |s| format!("router `{name}` names service `{s}`, which is not defined"),
                &names.services,
                "services",
            ),
        };
        if let Some((_, value)) = get(entries, "middlewares") {
            ok &= self.router_middlewares(name, value);
        }
        let priority = match get(entries, "priority") {
            None => Some(None),
            Some((_, value)) => match value.kind {
                NodeKind::Int(priority) => Some(Some(priority)),
                _ => {
                    self.report(
                        value.loc,
                        format!(
                            "expected an integer for `priority` {context}, found {}",
                            value.describe()
                        ),
                    );
                    None
                }
            },
        };
        let timeout = match get(entries, "timeout") {
            None => Some(None),
            Some((_, value)) => self.timeout(value, &context).map(Some),
        };
        let stream_idle_timeout = self.optional(entries, "stream_idle_timeout", |v, node| {
            v.positive_duration(
                node,
                "stream_idle_timeout",
                &context,
                &lifecycle::Zero {
                    effect: "end every stream the moment it starts",
                    hint: "leave `stream_idle_timeout` out so that quiet streams are never cut",
                },
            )
        });
        if let (Some(entrypoints), Some(matcher), Some((_, match_node))) =
            (&entrypoints, &matcher, get(entries, "match"))
        {
            if matcher.client_cert_san.is_some() {
                ok &= self.client_cert_san_reachable(name, match_node, entrypoints, defined);
            }
        }
        let resilience =
            self.router_resilience(name, entries, service.as_deref(), services, &names.services);
        let resilience = resilience?;
        let router = Router {
            entrypoints: entrypoints?,
            matcher: matcher?,
            service: service?,
            priority: priority?,
            timeout: timeout?,
            stream_idle_timeout: stream_idle_timeout?,
            traffic_class: resilience.traffic_class,
            retry: resilience.retry,
            circuit_breaker: resilience.circuit_breaker,
            fallback: resilience.fallback,
            fault: resilience.fault,
        };
        ok.then_some(router)
    }

    fn router_entrypoints(
        &mut self,
        router: &str,
        node: &Node,
        names: &Names,
    ) -> Option<Vec<String>> {
        let items = self.list(node, &format!("`entrypoints` in router `{router}`"))?;
        if items.is_empty() {
            self.report_hint(
                node.loc,
                format!("router `{router}` has an empty `entrypoints` list"),
                "leave `entrypoints` out to serve the router on every entrypoint",
            );
            return None;
        }
        let mut entrypoints: Vec<String> = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(entrypoint) = self.reference(
                item,
                &format!("`entrypoints` in router `{router}`"),
                |s| format!("router `{router}` names entrypoint `{s}`, which is not defined"),
                &names.entrypoints,
                "entrypoints",
            ) else {
                ok = false;
                continue;
            };
            if entrypoints.contains(&entrypoint) {
                self.report(
                    item.loc,
                    format!("entrypoint `{entrypoint}` is listed twice in router `{router}`"),
                );
                ok = false;
                continue;
            }
            entrypoints.push(entrypoint);
        }
        ok.then_some(entrypoints)
    }

    /// No middleware can be defined in this release, so every name is an error; the list
    /// itself is still checked so that its shape errors are reported too.
    fn router_middlewares(&mut self, router: &str, node: &Node) -> bool {
        let what = format!("`middlewares` in router `{router}`");
        if matches!(node.kind, NodeKind::Null) {
            return true;
        }
        let Some(items) = self.list(node, &what) else {
            return false;
        };
        let mut ok = true;
        for item in items {
            ok = false;
            let Some(name) = self.string(item, &what) else {
                continue;
            };
            self.report_hint(
                item.loc,
                format!("router `{router}` names middleware `{name}`, which is not defined"),
                "no middleware kinds are available in this release; remove it",
            );
        }
        ok
    }

    fn timeout(&mut self, node: &Node, context: &str) -> Option<Duration> {
        let timeout = self.duration(node, "timeout", context)?;
        if timeout.is_zero() {
            self.report_hint(
                node.loc,
                format!("`timeout` {context} is zero, which would fail every request"),
                "leave `timeout` out for no timeout",
            );
            return None;
        }
        Some(timeout)
    }

    /// A duration string, zero included.
    fn duration(&mut self, node: &Node, key: &str, context: &str) -> Option<Duration> {
        let NodeKind::Str(text) = &node.kind else {
            self.report_hint(
                node.loc,
                format!(
                    "expected a duration string for `{key}` {context}, found {}",
                    node.describe()
                ),
                DURATION_HINT,
            );
            return None;
        };
        match parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(err) => {
                self.report_hint(node.loc, err, DURATION_HINT);
                None
            }
        }
    }

    fn matcher(&mut self, router: &str, node: &Node) -> Option<Match> {
        let context = format!("in the match of router `{router}`");
        let entries: &Entries = match &node.kind {
            NodeKind::Null => &[],
            _ => self.mapping(node, &format!("`match` in router `{router}`"))?,
        };
        self.known_keys(entries, MATCH_KEYS, &context);
        let mut matcher = Match::default();
        let mut ok = true;
        for (key, value) in entries {
            let what = format!("`{}` {context}", key.name);
            ok &= match key.name.as_str() {
                "host" => self
                    .checked(value, &what, parse_host)
                    .map(|host| matcher.host = Some(host))
                    .is_some(),
                "path" | "path_prefix" => self
                    .checked(value, &what, |s| check_path(&key.name, s))
                    .map(|path| {
                        if key.name == "path" {
                            matcher.path = Some(path);
                        } else {
                            matcher.path_prefix = Some(path);
                        }
                    })
                    .is_some(),
                "grpc_service" | "grpc_method" => self
                    .checked(value, &what, |s| check_grpc_name(&key.name, s))
                    .map(|name| {
                        if key.name == "grpc_service" {
                            matcher.grpc_service = Some(name);
                        } else {
                            matcher.grpc_method = Some(name);
                        }
                    })
                    .is_some(),
                "method" => self
                    .methods(value, &what)
                    .map(|methods| matcher.methods = methods)
                    .is_some(),
                "headers" => self
                    .headers(value, &context)
                    .map(|headers| matcher.headers = headers)
                    .is_some(),
                "query" => self
                    .query(value, &context)
                    .map(|query| matcher.query = query)
                    .is_some(),
                "client_cert_san" => self
                    .checked(value, &what, check_san)
                    .map(|san| matcher.client_cert_san = Some(san))
                    .is_some(),
                // Unknown keys were reported above.
                _ => false,
            };
        }
        ok.then_some(matcher)
    }

    fn methods(&mut self, node: &Node, what: &str) -> Option<Vec<http::Method>> {
        let single = std::slice::from_ref(node);
        let items = match &node.kind {
            NodeKind::Seq(items) => items.as_slice(),
            NodeKind::Str(_) => single,
            _ => {
                self.report(
                    node.loc,
                    format!(
                        "expected a string or a list of strings for {what}, found {}",
                        node.describe()
                    ),
                );
                return None;
            }
        };
        let mut methods = Vec::new();
        let mut ok = true;
        for item in items {
            match self.checked(item, what, parse_method) {
                Some(method) if !methods.contains(&method) => methods.push(method),
                Some(_) => {}
                None => ok = false,
            }
        }
        ok.then_some(methods)
    }

    fn headers(
        &mut self,
        node: &Node,
        context: &str,
    ) -> Option<Vec<(http::HeaderName, ValueMatch)>> {
        let entries: &Entries = match &node.kind {
            NodeKind::Null => &[],
            _ => self.mapping(node, &format!("`headers` {context}"))?,
        };
        let mut headers: Vec<(http::HeaderName, ValueMatch)> = Vec::new();
        let mut ok = true;
        for (key, value) in entries {
            let name = match http::HeaderName::from_bytes(key.name.as_bytes()) {
                Ok(name) => name,
                Err(_) => {
                    self.report_hint(
                        key.loc,
                        format!("`{}` is not a valid header name", key.name),
                        "header names are letters, digits and !#$%&'*+-.^_`|~",
                    );
                    ok = false;
                    continue;
                }
            };
            if headers.iter().any(|(seen, _)| *seen == name) {
                self.report(
                    key.loc,
                    format!("header `{name}` is matched twice {context}"),
                );
                ok = false;
                continue;
            }
            let what = format!("header `{name}` {context}");
            match self.value_match(value, &what, true) {
                Some(matcher) => headers.push((name, matcher)),
                None => ok = false,
            }
        }
        ok.then_some(headers)
    }

    fn query(&mut self, node: &Node, context: &str) -> Option<Vec<(String, ValueMatch)>> {
        let entries: &Entries = match &node.kind {
            NodeKind::Null => &[],
            _ => self.mapping(node, &format!("`query` {context}"))?,
        };
        let mut query = Vec::new();
        let mut ok = true;
        for (key, value) in entries {
            if key.name.is_empty() {
                self.report(key.loc, format!("empty query parameter name {context}"));
                ok = false;
                continue;
            }
            let what = format!("query parameter `{}` {context}", key.name);
            match self.value_match(value, &what, false) {
                Some(matcher) => query.push((key.name.clone(), matcher)),
                None => ok = false,
            }
        }
        ok.then_some(query)
    }

    /// A string (exact), or a mapping with exactly one of `exact`, `regex`, `present: true`.
    fn value_match(&mut self, node: &Node, what: &str, header: bool) -> Option<ValueMatch> {
        let check_exact = |s: &str| {
            if header && http::HeaderValue::from_str(s).is_err() {
                Err((
                    format!("`{s}` is not a valid header value"),
                    Some("header values are visible ASCII, spaces and tabs".to_owned()),
                ))
            } else {
                Ok(s.to_owned())
            }
        };
        let entries = match &node.kind {
            NodeKind::Str(_) => {
                return self.checked(node, what, check_exact).map(ValueMatch::Exact)
            }
            NodeKind::Map(entries) => entries,
            _ => {
                self.report_hint(
                    node.loc,
                    format!(
                        "expected a string or a mapping for {what}, found {}",
                        node.describe()
                    ),
                    "write a value to match exactly (quote numbers), or one of \
                     { exact: VALUE }, { regex: PATTERN }, { present: true }",
                );
                return None;
            }
        };
        self.known_keys(entries, VALUE_MATCH_KEYS, &format!("in {what}"));
        let forms: Vec<&(Key, Node)> = entries
            .iter()
            .filter(|(key, _)| VALUE_MATCH_KEYS.contains(&key.name.as_str()))
            .collect();
        let [(key, value)] = forms.as_slice() else {
            if forms.is_empty() && entries.len() > forms.len() {
                // Only unknown keys: those errors already say what is wrong.
                return None;
            }
            self.report(
                node.loc,
                format!("{what} needs exactly one of `exact`, `regex` or `present`"),
            );
            return None;
        };
        let what = format!("`{}` of {what}", key.name);
        match key.name.as_str() {
            "exact" => self
                .checked(value, &what, check_exact)
                .map(ValueMatch::Exact),
            "regex" => self
                .checked(value, &what, |s| {
                    regex::Regex::new(s).map_err(|err| {
                        (
                            format!("invalid regex `{s}`: {}", one_line(&err.to_string())),
                            None,
                        )
                    })
                })
                .map(ValueMatch::Regex),
            _ => match value.kind {
                NodeKind::Bool(true) => Some(ValueMatch::Present),
                _ => {
                    self.report_hint(
                        value.loc,
                        format!("{what} must be `true`"),
                        "`present: true` matches when the value is there at all",
                    );
                    None
                }
            },
        }
    }

    /// Resolves a reference to a defined name, with a "did you mean" or the list of names.
    fn reference(
        &mut self,
        node: &Node,
        what: &str,
        message: impl FnOnce(&str) -> String,
        defined: &[String],
        kind: &str,
    ) -> Option<String> {
        let name = self.string(node, what)?;
        if defined.iter().any(|d| d == name) {
            return Some(name.to_owned());
        }
        let hint = if defined.is_empty() {
            format!("no {kind} are defined; add one under `{kind}`")
        } else {
            did_you_mean(name, defined.iter().map(String::as_str))
                .unwrap_or_else(|| format!("defined {kind}: {}", defined.join(", ")))
        };
        self.report_hint(node.loc, message(name), hint);
        None
    }

    /// A string value checked by `check`, whose error is a message and maybe a hint.
    fn checked<T>(
        &mut self,
        node: &Node,
        what: &str,
        check: impl FnOnce(&str) -> Result<T, (String, Option<String>)>,
    ) -> Option<T> {
        let text = self.string(node, what)?;
        match check(text) {
            Ok(value) => Some(value),
            Err((message, hint)) => {
                self.problems
                    .push(with_optional_hint(Problem::new(node.loc, message), hint));
                None
            }
        }
    }

    fn address(&mut self, node: &Node, what: &str) -> Option<SocketAddr> {
        let text = self.string(node, what)?;
        match parse_address(text) {
            Ok(address) => Some(address),
            Err((message, hint)) => {
                self.report_hint(node.loc, message, hint);
                None
            }
        }
    }

    /// Checks a defined name (an entrypoint, router or service key).
    fn name(&mut self, key: &Key, kind: &str) -> bool {
        let valid = !key.name.is_empty()
            && key
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            self.report_hint(
                key.loc,
                format!("invalid {kind} name `{}`", key.name),
                "names use letters, digits, `_`, `.` and `-`",
            );
        }
        valid
    }

    fn known_keys(&mut self, entries: &Entries, known: &[&str], context: &str) {
        for (key, _) in entries {
            if known.contains(&key.name.as_str()) {
                continue;
            }
            let hint = did_you_mean(&key.name, known.iter().copied())
                .unwrap_or_else(|| format!("valid keys are {}", backticked(known)));
            self.report_hint(
                key.loc,
                format!("unknown key `{}` {context}", key.name),
                hint,
            );
        }
    }

    fn required<'n>(
        &mut self,
        owner: &Key,
        entries: &'n Entries,
        name: &str,
        context: &str,
    ) -> Option<(&'n Key, &'n Node)> {
        let found = get(entries, name);
        if found.is_none() {
            self.report(owner.loc, format!("missing `{name}` {context}"));
        }
        found
    }

    fn mapping<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n Entries> {
        match &node.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => {
                self.report(
                    node.loc,
                    format!("expected a mapping for {what}, found {}", node.describe()),
                );
                None
            }
        }
    }

    fn list<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.kind {
            NodeKind::Seq(items) => Some(items),
            _ => {
                self.report(
                    node.loc,
                    format!("expected a list for {what}, found {}", node.describe()),
                );
                None
            }
        }
    }

    fn string<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n str> {
        match &node.kind {
            NodeKind::Str(text) => Some(text),
            NodeKind::Int(_) | NodeKind::Float(_) | NodeKind::Bool(_) => {
                self.report_hint(
                    node.loc,
                    format!("expected a string for {what}, found {}", node.describe()),
                    "put it in quotes",
                );
                None
            }
            _ => {
                self.report(
                    node.loc,
                    format!("expected a string for {what}, found {}", node.describe()),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, key: &str, context: &str) -> Option<bool> {
        match node.kind {
            NodeKind::Bool(value) => Some(value),
            _ => {
                self.report_hint(
                    node.loc,
                    format!(
                        "expected a boolean for `{key}` {context}, found {}",
                        node.describe()
                    ),
                    "write true or false, without quotes",
                );
                None
            }
        }
    }

    fn report(&mut self, loc: Loc, message: impl Into<String>) {
        self.problems.push(Problem::new(loc, message));
    }

    fn report_hint(&mut self, loc: Loc, message: impl Into<String>, hint: impl Into<String>) {
        self.problems
            .push(Problem::new(loc, message).with_hint(hint));
    }
}

/// A top-level section that maps names to definitions; absent or empty is fine.
fn section<'n>(v: &mut Validator, top: &'n Entries, name: &str) -> Option<&'n Entries> {
    let (_, node) = get(top, name)?;
    match &node.kind {
        NodeKind::Null => None,
        _ => v.mapping(node, &format!("`{name}`")),
    }
}

fn get<'n>(entries: &'n Entries, name: &str) -> Option<(&'n Key, &'n Node)> {
    entries
        .iter()
        .find(|(key, _)| key.name == name)
        .map(|(key, node)| (key, node))
}

fn with_optional_hint(problem: Problem, hint: Option<String>) -> Problem {
    match hint {
        Some(hint) => problem.with_hint(hint),
        None => problem,
    }
}

fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a == b || (a.is_ipv4() == b.is_ipv4() && (a.is_unspecified() || b.is_unspecified()))
}

/// `ip:port`, `[ipv6]:port` or `localhost:port`.
fn parse_address(text: &str) -> Result<SocketAddr, (String, String)> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let fail = |why: String| {
        Err((
            format!("invalid address `{text}`: {why}"),
            ADDRESS_HINT.to_owned(),
        ))
    };
    let Some((host, port)) = text.rsplit_once(':') else {
        return fail("it has no port".to_owned());
    };
    let Ok(port) = port.parse::<u16>() else {
        return fail(format!("`{port}` is not a port (0-65535)"));
    };
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if host.is_empty() {
        return Err((
            format!("invalid address `{text}`: it has no host"),
            format!(
                "use 0.0.0.0:{port} for every IPv4 interface or [::]:{port} for every IPv6 one"
            ),
        ));
    }
    if host.parse::<Ipv6Addr>().is_ok() {
        return fail("IPv6 addresses need brackets, e.g. [::1]:8080".to_owned());
    }
    fail(format!(
        "`{host}` is not an IP address (host names other than localhost are not resolved)"
    ))
}

/// `h2c://host[:port]`, `http://host[:port]` or `https://host[:port]`, with no path.
fn parse_url(text: &str) -> Result<UpstreamUrl, (String, Option<String>)> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err((
            format!("`{text}` is not a server URL"),
            Some(
                "write it as h2c://host:port (HTTP/2), http://host:port (HTTP/1.1) or \
                 https://host:port (TLS)"
                    .to_owned(),
            ),
        ));
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "h2c" => UpstreamScheme::H2c,
        "http" => UpstreamScheme::Http,
        "https" => UpstreamScheme::Https,
        _ => {
            return Err((
                format!("unsupported scheme `{scheme}://` in server URL `{text}`"),
                Some(SCHEME_HINT.to_owned()),
            ))
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if let Some(at) = authority.find(['/', '?', '#']) {
        return Err((
            format!(
                "server URL `{text}` has a path (`{}`); requests keep their own path",
                &authority[at..]
            ),
            Some("remove everything after host:port".to_owned()),
        ));
    }
    if authority.contains('@') {
        return Err((
            format!("server URL `{text}` has credentials; they are not supported"),
            None,
        ));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((ip, after)) = bracketed.split_once(']') else {
            return Err((format!("server URL `{text}` has an unclosed `[`"), None));
        };
        let Ok(ip) = ip.parse::<Ipv6Addr>() else {
            return Err((
                format!("`{ip}` in server URL `{text}` is not an IPv6 address"),
                None,
            ));
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => {
                    return Err((
                        format!("unexpected `{after}` after `]` in server URL `{text}`"),
                        None,
                    ))
                }
            },
        };
        (ip.to_string(), port)
    } else {
        match authority.split_once(':') {
            Some((_, after)) if after.contains(':') => {
                return Err((
                    format!("server URL `{text}` has too many `:`"),
                    Some("IPv6 addresses need brackets, e.g. h2c://[::1]:50051".to_owned()),
                ))
            }
            Some((host, port)) => (host.to_ascii_lowercase(), Some(port)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty() {
        return Err((
            format!("server URL `{text}` has no host"),
            Some("e.g. h2c://127.0.0.1:50051".to_owned()),
        ));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err((
            format!("server URL `{text}` has an invalid host `{host}`"),
            None,
        ));
    }
    let default_port = match scheme {
        UpstreamScheme::H2c | UpstreamScheme::Http => 80,
        UpstreamScheme::Https => 443,
    };
    let port = match port {
        None => default_port,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                return Err((
                    format!("server URL `{text}` has an invalid port `{port}`"),
                    Some(format!(
                        "ports are 1-65535; leave the port out for {default_port}"
                    )),
                ))
            }
        },
    };
    Ok(UpstreamUrl { scheme, host, port })
}

pub(crate) fn url_text(url: &UpstreamUrl) -> String {
    let scheme = match url.scheme {
        UpstreamScheme::H2c => "h2c",
        UpstreamScheme::Http => "http",
        UpstreamScheme::Https => "https",
    };
    if url.host.contains(':') {
        format!("{scheme}://[{}]:{}", url.host, url.port)
    } else {
        format!("{scheme}://{}:{}", url.host, url.port)
    }
}

/// `example.com` or `*.example.com`, lower-cased, without port.
fn parse_host(text: &str) -> Result<HostMatch, (String, Option<String>)> {
    let host = text.to_ascii_lowercase();
    if host.is_empty() {
        return Err((
            "empty host".to_owned(),
            Some("leave `host` out to match every host".to_owned()),
        ));
    }
    if host.contains(':') {
        return Err((
            format!("host `{text}` has a port; host matches compare the name only"),
            Some("remove the `:port`".to_owned()),
        ));
    }
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host.as_str()),
    };
    if name.contains('*') {
        return Err((
            format!("host `{text}` has a `*` that is not a whole first label"),
            Some("a wildcard host looks like *.example.com".to_owned()),
        ));
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    });
    if !labels_ok {
        return Err((
            format!("`{text}` is not a valid host name"),
            Some("host names are labels of letters, digits and `-`, joined by `.`".to_owned()),
        ));
    }
    if wildcard {
        Ok(HostMatch::Wildcard(format!(".{name}")))
    } else {
        Ok(HostMatch::Exact(host))
    }
}

fn check_path(key: &str, text: &str) -> Result<String, (String, Option<String>)> {
    if !text.starts_with('/') {
        return Err((
            format!("`{key}` `{text}` does not start with `/`"),
            Some(format!("e.g. /{}", text.trim_start_matches('/'))),
        ));
    }
    if text.contains(['?', '#']) {
        return Err((
            format!("`{key}` `{text}` has a query or fragment; it matches the path only"),
            Some("use `query` to match query parameters".to_owned()),
        ));
    }
    if !text.chars().all(|c| c.is_ascii_graphic()) {
        return Err((
            format!("`{key}` `{text}` has spaces, control or non-ASCII characters"),
            Some("percent-encode them, as they appear in requests".to_owned()),
        ));
    }
    Ok(text.to_owned())
}

fn check_grpc_name(key: &str, text: &str) -> Result<String, (String, Option<String>)> {
    if text.is_empty() {
        return Err((format!("empty `{key}`"), None));
    }
    if text.contains('/') {
        let hint = if key == "grpc_service" {
            "write the fully qualified service, e.g. shop.OrderService"
        } else {
            "write the method name alone, e.g. PlaceOrder"
        };
        return Err((
            format!("`{key}` `{text}` contains `/`"),
            Some(hint.to_owned()),
        ));
    }
    if !text.chars().all(|c| c.is_ascii_graphic()) {
        return Err((
            format!("`{key}` `{text}` has spaces, control or non-ASCII characters"),
            None,
        ));
    }
    Ok(text.to_owned())
}

/// A certificate SAN as text. SANs are IA5Strings (ASCII) and hold no spaces.
fn check_san(text: &str) -> Result<String, (String, Option<String>)> {
    if text.is_empty() {
        return Err((
            "empty `client_cert_san`".to_owned(),
            Some("e.g. spiffe://example.org/orders or orders.example.org".to_owned()),
        ));
    }
    if !text.chars().all(|c| c.is_ascii_graphic()) {
        return Err((
            format!(
                "`client_cert_san` `{text}` has spaces, control or non-ASCII characters, \
                 which no certificate SAN holds"
            ),
            Some("internationalised DNS names are written in their xn-- form".to_owned()),
        ));
    }
    Ok(text.to_owned())
}

fn parse_method(text: &str) -> Result<http::Method, (String, Option<String>)> {
    let upper = text.to_ascii_uppercase();
    if upper.is_empty() {
        return Err(("empty HTTP method".to_owned(), None));
    }
    http::Method::from_bytes(upper.as_bytes()).map_err(|_| {
        (
            format!("`{text}` is not an HTTP method"),
            Some("e.g. GET, POST, PUT, DELETE".to_owned()),
        )
    })
}

fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    candidates
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| format!("did you mean `{candidate}`?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

fn backticked(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
