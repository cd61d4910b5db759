//! Resilience settings: a service's `load_balancer`, `health_check`, `panic_mode`,
//! `outlier_detection` and `circuit_breakers`; a router's `traffic_class`, `retry`,
//! `circuit_breaker`, `fallback` and `fault`.

use std::time::Duration;

use indexmap::IndexMap;
use strait_core::Code;

use super::lifecycle::{SizeLimit, Zero};
use super::{get, Entries, Validator};
use crate::model::{Server, Service};
use crate::resilience::{
    AbortStatus, FailureRate, Fallback, Fault, FaultAbort, FaultDelay, HashOn, HealthCheck,
    HealthCheckKind, LoadBalancer, OutlierDetection, PanicMode, RetryOn, RetryPolicy, RouteBreaker,
    ServiceLimits, TrafficClasses, DEFAULT_FAILURE_STATUSES,
};
use crate::tree::{Key, Node, NodeKind};

const HEALTH_KEYS: &[&str] = &[
    "type",
    "grpc_service",
    "path",
    "expected_status",
    "interval",
    "timeout",
    "healthy_threshold",
    "unhealthy_threshold",
    "jitter",
];
const OUTLIER_KEYS: &[&str] = &[
    "enabled",
    "consecutive_failures",
    "failure_rate",
    "base_ejection_time",
    "max_ejection_time",
    "max_ejection_percent",
    "grpc_statuses",
];
const FAILURE_RATE_KEYS: &[&str] = &["percent", "minimum_requests", "window"];
const LIMIT_KEYS: &[&str] = &[
    "max_connections",
    "max_pending",
    "max_requests",
    "traffic_classes",
];
const CLASS_KEYS: &[&str] = &["header", "default", "classes"];
const RETRY_KEYS: &[&str] = &[
    "attempts",
    "retry_on",
    "backoff_base",
    "backoff_max",
    "per_try_timeout",
    "budget_percent",
    "budget_min",
    "buffer",
];
const BREAKER_KEYS: &[&str] = &[
    "failure_percent",
    "minimum_requests",
    "window",
    "open_for",
    "half_open_requests",
    "grpc_statuses",
];
const FALLBACK_KEYS: &[&str] = &["grpc_status", "message", "http_status", "body", "service"];
const FAULT_KEYS: &[&str] = &["delay", "abort", "header_trigger"];
const DELAY_KEYS: &[&str] = &["duration", "percent"];
const ABORT_KEYS: &[&str] = &["grpc_status", "http_status", "percent"];
const LB_KEYS: &[&str] = &["policy", "hash_on"];
const POLICIES: &[&str] = &["p2c", "round_robin", "weighted", "least_request", "hash"];

const BUFFER: SizeLimit = SizeLimit {
    min: 0,
    max: 16 << 20,
    hint: "the replay buffer is 0 to 16MiB, e.g. 64KiB",
};
const CODE_HINT: &str = "gRPC status names look like UNAVAILABLE, INTERNAL, RESOURCE_EXHAUSTED";

/// A service's resilience settings.
pub(super) struct ServiceResilience {
    pub(super) load_balancer: LoadBalancer,
    pub(super) health_check: Option<HealthCheck>,
    pub(super) panic_mode: PanicMode,
    pub(super) outlier_detection: OutlierDetection,
    pub(super) limits: ServiceLimits,
}

/// A router's resilience settings.
pub(super) struct RouterResilience {
    pub(super) traffic_class: Option<String>,
    pub(super) retry: Option<RetryPolicy>,
    pub(super) circuit_breaker: Option<RouteBreaker>,
    pub(super) fallback: Option<Fallback>,
    pub(super) fault: Option<Fault>,
}

// === impl Validator ===

impl Validator {
    pub(super) fn service_resilience(
        &mut self,
        service: &str,
        entries: &Entries,
        servers: &[Server],
    ) -> Option<ServiceResilience> {
        let context = format!("in service `{service}`");
        let load_balancer = match get(entries, "load_balancer") {
            None => Some(LoadBalancer::default()),
            Some((_, node)) => self.load_balancer(node, &context, servers),
        };
        let health_check = self.optional(entries, "health_check", |v, node| {
            v.health_check(node, &format!("in the health check of service `{service}`"))
        });
        let panic_mode = match get(entries, "panic_mode") {
            None => Some(PanicMode::default()),
            Some((_, node)) => self
                .choice(node, "panic_mode", &context, &["try_all", "fail_fast"])
                .map(|i| [PanicMode::TryAll, PanicMode::FailFast][i]),
        };
        let outlier_detection = match get(entries, "outlier_detection") {
            None => Some(OutlierDetection::default()),
            Some((_, node)) => self.outlier_detection(
                node,
                &format!("in the outlier detection of service `{service}`"),
            ),
        };
        let limits = match get(entries, "circuit_breakers") {
            None => Some(ServiceLimits::default()),
            Some((_, node)) => self.service_limits(
                node,
                &format!("in the circuit breakers of service `{service}`"),
            ),
        };
        Some(ServiceResilience {
            load_balancer: load_balancer?,
            health_check: health_check?,
            panic_mode: panic_mode?,
            outlier_detection: outlier_detection?,
            limits: limits?,
        })
    }

    /// `load_balancer: p2c` or `{ policy: hash, hash_on: { header: x-user } }`.
    fn load_balancer(
        &mut self,
        node: &Node,
        context: &str,
        servers: &[Server],
    ) -> Option<LoadBalancer> {
        let (policy_node, hash_on) = match &node.kind {
            NodeKind::Map(entries) => {
                self.known_keys(entries, LB_KEYS, &format!("in `load_balancer` {context}"));
                let owner = Key {
                    name: "load_balancer".into(),
                    loc: node.loc,
                };
                let (_, policy) = self.required(
                    &owner,
                    entries,
                    "policy",
                    &format!("in `load_balancer` {context}"),
                )?;
                (policy, get(entries, "hash_on"))
            }
            _ => (node, None),
        };
        let policy = self.choice(policy_node, "load_balancer", context, POLICIES)?;
        let balancer = match policy {
            0 => LoadBalancer::P2c,
            1 => LoadBalancer::RoundRobin,
            2 => LoadBalancer::Weighted,
            3 => LoadBalancer::LeastRequest,
            _ => {
                let Some((key, hash_on)) = hash_on else {
                    self.report_hint(
                        policy_node.loc,
                        format!("`hash` balancing {context} needs `hash_on`"),
                        "add `hash_on: { header: x-user-id }` or `hash_on: client_ip`",
                    );
                    return None;
                };
                let _ = key;
                LoadBalancer::Hash(self.hash_on(hash_on, context)?)
            }
        };
        if let (Some((key, _)), false) = (hash_on, matches!(balancer, LoadBalancer::Hash(_))) {
            self.report_hint(
                key.loc,
                format!(
                    "`hash_on` {context} has no effect with `{}`",
                    balancer.as_str()
                ),
                "set `policy: hash`, or remove `hash_on`",
            );
            return None;
        }
        if balancer == LoadBalancer::RoundRobin && servers.iter().any(|s| s.weight != 1) {
            self.report_hint(
                policy_node.loc,
                format!("`round_robin` {context} gives every server equal turns, but some servers have a weight"),
                "use `weighted` (or the default, `p2c`) to honour weights",
            );
            return None;
        }
        Some(balancer)
    }

    fn hash_on(&mut self, node: &Node, context: &str) -> Option<HashOn> {
        match &node.kind {
            NodeKind::Str(text) if text == "client_ip" => Some(HashOn::ClientIp),
            NodeKind::Map(entries) => {
                self.known_keys(entries, &["header"], &format!("in `hash_on` {context}"));
                let owner = Key {
                    name: "hash_on".into(),
                    loc: node.loc,
                };
                let (_, header) = self.required(
                    &owner,
                    entries,
                    "header",
                    &format!("in `hash_on` {context}"),
                )?;
                self.header_name(header, &format!("`hash_on.header` {context}"))
                    .map(HashOn::Header)
            }
            _ => {
                self.report_hint(
                    node.loc,
                    format!("invalid `hash_on` {context}"),
                    "write `hash_on: client_ip` or `hash_on: { header: x-user-id }`",
                );
                None
            }
        }
    }

    fn health_check(&mut self, node: &Node, context: &str) -> Option<HealthCheck> {
        let entries = self.mapping(node, &format!("`health_check` {context}"))?;
        self.known_keys(entries, HEALTH_KEYS, context);
        let owner = Key {
            name: "health_check".into(),
            loc: node.loc,
        };
        let (_, kind_node) = self.required(&owner, entries, "type", context)?;
        let kind = self.choice(kind_node, "type", context, &["grpc", "http", "tcp"])?;
        let mut ok = true;
        let allowed: &[&str] = match kind {
            0 => &["grpc_service"],
            1 => &["path", "expected_status"],
            _ => &[],
        };
        for key in ["grpc_service", "path", "expected_status"] {
            if let (Some((k, _)), false) = (get(entries, key), allowed.contains(&key)) {
                let kind_name = ["grpc", "http", "tcp"][kind];
                self.report_hint(
                    k.loc,
                    format!("`{key}` {context} has no effect with `type: {kind_name}`"),
                    format!("remove `{key}`, or change `type`"),
                );
                ok = false;
            }
        }
        let kind = match kind {
            0 => match get(entries, "grpc_service") {
                None => Some(HealthCheckKind::Grpc {
                    service: String::new(),
                }),
                Some((_, node)) => {
                    self.string(node, &format!("`grpc_service` {context}"))
                        .map(|s| HealthCheckKind::Grpc {
                            service: s.to_owned(),
                        })
                }
            },
            1 => {
                let path = match get(entries, "path") {
                    None => Some("/".to_owned()),
                    Some((_, node)) => self.checked(node, &format!("`path` {context}"), |text| {
                        super::check_path("path", text)
                    }),
                };
                let expected = match get(entries, "expected_status") {
                    None => Some(vec![200]),
                    Some((_, node)) => self.statuses(node, context),
                };
                match (path, expected) {
                    (Some(path), Some(expected_status)) => Some(HealthCheckKind::Http {
                        path,
                        expected_status,
                    }),
                    _ => None,
                }
            }
            _ => Some(HealthCheckKind::Tcp),
        };
        let interval = self.positive_or(entries, "interval", context, Duration::from_secs(10));
        let timeout = self.positive_or(entries, "timeout", context, Duration::from_secs(1));
        let jitter = match get(entries, "jitter") {
            None => Some(Duration::ZERO),
            Some((_, node)) => self.duration(node, "jitter", context),
        };
        let healthy = self.count_or(entries, "healthy_threshold", context, 2, 1..=1000);
        let unhealthy = self.count_or(entries, "unhealthy_threshold", context, 3, 1..=1000);
        if let (Some(interval), Some(timeout), Some((key, _))) =
            (interval, timeout, get(entries, "timeout"))
        {
            if timeout >= interval {
                self.report_hint(
                    key.loc,
                    format!("`timeout` {context} is not shorter than the interval"),
                    "a check must end before the next one starts; e.g. interval 10s, timeout 1s",
                );
                ok = false;
            }
        }
        let check = HealthCheck {
            kind: kind?,
            interval: interval?,
            timeout: timeout?,
            healthy_threshold: healthy?,
            unhealthy_threshold: unhealthy?,
            jitter: jitter?,
        };
        ok.then_some(check)
    }

    fn statuses(&mut self, node: &Node, context: &str) -> Option<Vec<u16>> {
        let items: Vec<&Node> = match &node.kind {
            NodeKind::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        let mut statuses = Vec::new();
        for item in items {
            statuses.push(self.http_status(item, "expected_status", context, 100..=599)?);
        }
        if statuses.is_empty() {
            self.report(node.loc, format!("`expected_status` {context} is empty"));
            return None;
        }
        Some(statuses)
    }

    fn outlier_detection(&mut self, node: &Node, context: &str) -> Option<OutlierDetection> {
        let entries = self.mapping(node, &format!("`outlier_detection` {context}"))?;
        self.known_keys(entries, OUTLIER_KEYS, context);
        let defaults = OutlierDetection::default();
        let enabled = match get(entries, "enabled") {
            None => Some(true),
            Some((_, node)) => self.boolean(node, "enabled", context),
        };
        let consecutive = self
            .count_or(entries, "consecutive_failures", context, 5, 0..=100_000)
            .map(|n| (n > 0).then_some(n));
        let failure_rate = self.optional(entries, "failure_rate", |v, node| {
            v.failure_rate(node, &format!("in `failure_rate` {context}"))
        });
        let base = self.positive_or(
            entries,
            "base_ejection_time",
            context,
            defaults.base_ejection_time,
        );
        let max = self.positive_or(
            entries,
            "max_ejection_time",
            context,
            defaults.max_ejection_time,
        );
        let percent = self.count_or(entries, "max_ejection_percent", context, 50, 0..=100);
        let statuses = self.codes_or(entries, "grpc_statuses", context);
        let ok = self.not_shorter(
            entries,
            ("base_ejection_time", base),
            ("max_ejection_time", max),
            context,
            "ejections start at base_ejection_time and grow up to max_ejection_time",
        );
        let detection = OutlierDetection {
            enabled: enabled?,
            consecutive_failures: consecutive?,
            failure_rate: failure_rate?,
            base_ejection_time: base?,
            max_ejection_time: max?,
            max_ejection_percent: percent?,
            grpc_statuses: statuses?,
        };
        ok.then_some(detection)
    }

    fn failure_rate(&mut self, node: &Node, context: &str) -> Option<FailureRate> {
        let entries = self.mapping(node, &format!("`failure_rate` {context}"))?;
        self.known_keys(entries, FAILURE_RATE_KEYS, context);
        let percent = self.count_or(entries, "percent", context, 50, 1..=100);
        let minimum = self.count_or(entries, "minimum_requests", context, 20, 1..=1_000_000);
        let window = self.positive_or(entries, "window", context, Duration::from_secs(10));
        Some(FailureRate {
            percent: percent?,
            minimum_requests: minimum?,
            window: window?,
        })
    }

    fn service_limits(&mut self, node: &Node, context: &str) -> Option<ServiceLimits> {
        let entries = self.mapping(node, &format!("`circuit_breakers` {context}"))?;
        self.known_keys(entries, LIMIT_KEYS, context);
        let max_connections = self.optional(entries, "max_connections", |v, node| {
            v.count(node, "max_connections", context, 1..=1_000_000)
        });
        let max_pending = self.optional(entries, "max_pending", |v, node| {
            v.count(node, "max_pending", context, 0..=10_000_000)
        });
        let max_requests = self.optional(entries, "max_requests", |v, node| {
            v.count(node, "max_requests", context, 1..=100_000_000)
        });
        let classes = self.optional(entries, "traffic_classes", |v, node| {
            v.traffic_classes(node, &format!("in `traffic_classes` {context}"))
        });
        let mut ok = true;
        if let (Some((key, _)), None) =
            (get(entries, "max_pending"), get(entries, "max_connections"))
        {
            self.report_hint(
                key.loc,
                format!("`max_pending` {context} has no effect without `max_connections`"),
                "requests only wait when connections are limited; set `max_connections`",
            );
            ok = false;
        }
        let limits = ServiceLimits {
            max_connections: max_connections?,
            max_pending: max_pending?,
            max_requests: max_requests?,
            traffic_classes: classes?,
        };
        ok.then_some(limits)
    }

    fn traffic_classes(&mut self, node: &Node, context: &str) -> Option<TrafficClasses> {
        let entries = self.mapping(node, &format!("`traffic_classes` {context}"))?;
        self.known_keys(entries, CLASS_KEYS, context);
        let owner = Key {
            name: "traffic_classes".into(),
            loc: node.loc,
        };
        let header = match get(entries, "header") {
            None => Some(http::HeaderName::from_static("x-traffic-class")),
            Some((_, node)) => self.header_name(node, &format!("`header` {context}")),
        };
        let (_, classes_node) = self.required(&owner, entries, "classes", context)?;
        let class_entries = self.mapping(classes_node, &format!("`classes` {context}"))?;
        if class_entries.is_empty() {
            self.report_hint(
                classes_node.loc,
                format!("`classes` {context} is empty"),
                "name each class with its limit, e.g. { premium: 1000, best-effort: 100 }",
            );
            return None;
        }
        let mut classes = IndexMap::new();
        let mut ok = true;
        for (key, value) in class_entries {
            ok &= self.name(key, "traffic class");
            match self.count(value, &key.name, context, 1..=100_000_000) {
                Some(limit) => {
                    classes.insert(key.name.clone(), limit);
                }
                None => ok = false,
            }
        }
        let default = match get(entries, "default") {
            None => class_entries.last().map(|(key, _)| key.name.clone()),
            Some((_, node)) => {
                let names: Vec<String> =
                    class_entries.iter().map(|(k, _)| k.name.clone()).collect();
                self.reference(
                    node,
                    &format!("`default` {context}"),
                    |s| format!("default traffic class `{s}` {context} is not one of `classes`"),
                    &names,
                    "traffic classes",
                )
            }
        };
        let classes = TrafficClasses {
            header: header?,
            default: default?,
            classes,
        };
        ok.then_some(classes)
    }

    pub(super) fn router_resilience(
        &mut self,
        router: &str,
        entries: &Entries,
        service: Option<&str>,
        services: &IndexMap<String, Service>,
        service_names: &[String],
    ) -> Option<RouterResilience> {
        let context = format!("in router `{router}`");
        let traffic_class = match get(entries, "traffic_class") {
            None => Some(None),
            Some((_, node)) => self.router_class(node, &context, service, services),
        };
        let retry = self.optional(entries, "retry", |v, node| {
            v.retry(node, &format!("in the retry policy of router `{router}`"))
        });
        let breaker = self.optional(entries, "circuit_breaker", |v, node| {
            v.route_breaker(
                node,
                &format!("in the circuit breaker of router `{router}`"),
            )
        });
        let fallback = self.optional(entries, "fallback", |v, node| {
            v.fallback(
                node,
                &format!("in the fallback of router `{router}`"),
                service,
                service_names,
            )
        });
        let fault = self.optional(entries, "fault", |v, node| {
            v.fault(node, &format!("in the fault of router `{router}`"))
        });
        Some(RouterResilience {
            traffic_class: traffic_class?,
            retry: retry?,
            circuit_breaker: breaker?,
            fallback: fallback?,
            fault: fault?,
        })
    }

    fn router_class(
        &mut self,
        node: &Node,
        context: &str,
        service: Option<&str>,
        services: &IndexMap<String, Service>,
    ) -> Option<Option<String>> {
        let class = self.string(node, &format!("`traffic_class` {context}"))?;
        // An unknown or broken service has its own error already.
        let Some(service_config) = service.and_then(|s| services.get(s)) else {
            return Some(Some(class.to_owned()));
        };
        let Some(classes) = &service_config.limits.traffic_classes else {
            self.report_hint(
                node.loc,
                format!(
                    "`traffic_class` {context} has no effect: service `{}` defines no traffic classes",
                    service.unwrap_or_default()
                ),
                "define them under the service's `circuit_breakers.traffic_classes`",
            );
            return None;
        };
        let names: Vec<String> = classes.classes.keys().cloned().collect();
        self.reference(
            node,
            &format!("`traffic_class` {context}"),
            |s| {
                format!(
                    "traffic class `{s}` {context} is not defined in service `{}`",
                    service.unwrap_or_default()
                )
            },
            &names,
            "traffic classes",
        )
        .map(Some)
    }

    fn retry(&mut self, node: &Node, context: &str) -> Option<RetryPolicy> {
        let entries = self.mapping(node, &format!("`retry` {context}"))?;
        self.known_keys(entries, RETRY_KEYS, context);
        let attempts = self.count_or(entries, "attempts", context, 3, 1..=10);
        let retry_on = match get(entries, "retry_on") {
            None => Some(vec![
                RetryOn::ConnectFailure,
                RetryOn::RefusedStream,
                RetryOn::Unavailable,
            ]),
            Some((_, node)) => self.retry_on(node, context),
        };
        let base = self.positive_or(entries, "backoff_base", context, Duration::from_millis(25));
        let max = self.positive_or(entries, "backoff_max", context, Duration::from_millis(250));
        let per_try = self.optional(entries, "per_try_timeout", |v, node| {
            v.positive_duration(
                node,
                "per_try_timeout",
                context,
                &Zero {
                    effect: "fail every try at once",
                    hint: "leave `per_try_timeout` out for none",
                },
            )
        });
        let budget_percent = self.count_or(entries, "budget_percent", context, 20, 0..=100);
        let budget_min = self.count_or(entries, "budget_min", context, 3, 0..=1_000_000);
        let buffer = match get(entries, "buffer") {
            None => Some(64 << 10),
            Some((_, node)) => self.size(node, "buffer", context, &BUFFER),
        };
        let ok = self.not_shorter(
            entries,
            ("backoff_base", base),
            ("backoff_max", max),
            context,
            "backoff starts at backoff_base and doubles up to backoff_max",
        );
        let policy = RetryPolicy {
            attempts: attempts?,
            retry_on: retry_on?,
            backoff_base: base?,
            backoff_max: max?,
            per_try_timeout: per_try?,
            budget_percent: budget_percent?,
            budget_min: budget_min?,
            buffer: buffer?,
        };
        ok.then_some(policy)
    }

    fn retry_on(&mut self, node: &Node, context: &str) -> Option<Vec<RetryOn>> {
        let items = self.list(node, &format!("`retry_on` {context}"))?;
        let names: Vec<&str> = RetryOn::ALL.iter().map(|r| r.as_str()).collect();
        let mut retry_on = Vec::new();
        let mut ok = true;
        for item in items {
            match self.choice(item, "retry_on", context, &names) {
                Some(i) if !retry_on.contains(&RetryOn::ALL[i]) => retry_on.push(RetryOn::ALL[i]),
                Some(i) => {
                    self.report(
                        item.loc,
                        format!("`{}` is listed twice in `retry_on` {context}", names[i]),
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        ok.then_some(retry_on)
    }

    fn route_breaker(&mut self, node: &Node, context: &str) -> Option<RouteBreaker> {
        let entries = self.mapping(node, &format!("`circuit_breaker` {context}"))?;
        self.known_keys(entries, BREAKER_KEYS, context);
        let percent = self.count_or(entries, "failure_percent", context, 50, 1..=100);
        let minimum = self.count_or(entries, "minimum_requests", context, 20, 1..=1_000_000);
        let window = self.positive_or(entries, "window", context, Duration::from_secs(10));
        let open_for = self.positive_or(entries, "open_for", context, Duration::from_secs(30));
        let probes = self.count_or(entries, "half_open_requests", context, 5, 1..=10_000);
        let statuses = self.codes_or(entries, "grpc_statuses", context);
        Some(RouteBreaker {
            failure_percent: percent?,
            minimum_requests: minimum?,
            window: window?,
            open_for: open_for?,
            half_open_requests: probes?,
            grpc_statuses: statuses?,
        })
    }

    fn fallback(
        &mut self,
        node: &Node,
        context: &str,
        service: Option<&str>,
        service_names: &[String],
    ) -> Option<Fallback> {
        let entries = self.mapping(node, &format!("`fallback` {context}"))?;
        self.known_keys(entries, FALLBACK_KEYS, context);
        let kinds: Vec<&Key> = ["grpc_status", "http_status", "service"]
            .iter()
            .filter_map(|k| get(entries, k).map(|(key, _)| key))
            .collect();
        if kinds.len() != 1 {
            self.report_hint(
                kinds.get(1).map_or(node.loc, |k| k.loc),
                format!("`fallback` {context} needs exactly one of `grpc_status`, `http_status` or `service`"),
                "e.g. { grpc_status: UNAVAILABLE, message: \"try later\" }, { http_status: 503, body: \"try later\" } or { service: backup }",
            );
            return None;
        }
        let extra = |name: &str| -> &[&str] {
            match name {
                "grpc_status" => &["body"],
                "http_status" => &["message"],
                _ => &["message", "body"],
            }
        };
        for key in extra(&kinds[0].name) {
            if let Some((k, _)) = get(entries, key) {
                self.report_hint(
                    k.loc,
                    format!("`{key}` {context} has no effect with `{}`", kinds[0].name),
                    "`grpc_status` takes a `message`, `http_status` a `body`",
                );
                return None;
            }
        }
        let text = |v: &mut Validator, key: &str| -> Option<String> {
            match get(entries, key) {
                None => Some(String::new()),
                Some((_, node)) => v
                    .string(node, &format!("`{key}` {context}"))
                    .map(str::to_owned),
            }
        };
        match kinds[0].name.as_str() {
            "grpc_status" => {
                let (_, node) = get(entries, "grpc_status")?;
                let status = self.code(node, context)?;
                let message = text(self, "message")?;
                Some(Fallback::Grpc { status, message })
            }
            "http_status" => {
                let (_, node) = get(entries, "http_status")?;
                let status = self.http_status(node, "http_status", context, 200..=599)?;
                let body = text(self, "body")?;
                Some(Fallback::Http { status, body })
            }
            _ => {
                let (_, node) = get(entries, "service")?;
                let name = self.reference(
                    node,
                    &format!("`service` {context}"),
                    |s| format!("fallback service `{s}` {context} is not defined"),
                    service_names,
                    "services",
                )?;
                if service == Some(name.as_str()) {
                    self.report_hint(
                        node.loc,
                        format!("fallback service `{name}` {context} is the router's own service"),
                        "name another service to fail over to",
                    );
                    return None;
                }
                Some(Fallback::Service(name))
            }
        }
    }

    fn fault(&mut self, node: &Node, context: &str) -> Option<Fault> {
        let entries = self.mapping(node, &format!("`fault` {context}"))?;
        self.known_keys(entries, FAULT_KEYS, context);
        let delay = self.optional(entries, "delay", |v, node| {
            let entries = v.mapping(node, &format!("`delay` {context}"))?;
            v.known_keys(entries, DELAY_KEYS, &format!("in `delay` {context}"));
            let owner = Key {
                name: "delay".into(),
                loc: node.loc,
            };
            let (_, duration) = v.required(&owner, entries, "duration", context)?;
            let duration = v.duration(duration, "duration", context);
            let percent = v.percent_or(entries, context);
            Some(FaultDelay {
                duration: duration?,
                percent: percent?,
            })
        });
        let abort = self.optional(entries, "abort", |v, node| {
            let entries = v.mapping(node, &format!("`abort` {context}"))?;
            v.known_keys(entries, ABORT_KEYS, &format!("in `abort` {context}"));
            let status = match (get(entries, "grpc_status"), get(entries, "http_status")) {
                (Some((_, node)), None) => {
                    let code = v.code(node, context)?;
                    if code == Code::Ok {
                        v.report_hint(
                            node.loc,
                            format!("an abort with grpc_status OK {context} is not a failure"),
                            "use a failing status such as UNAVAILABLE",
                        );
                        return None;
                    }
                    AbortStatus::Grpc(code)
                }
                (None, Some((_, node))) => {
                    AbortStatus::Http(v.http_status(node, "http_status", context, 400..=599)?)
                }
                _ => {
                    v.report_hint(
                        node.loc,
                        format!("`abort` {context} needs one of `grpc_status` or `http_status`"),
                        "e.g. { grpc_status: UNAVAILABLE, percent: 10 }",
                    );
                    return None;
                }
            };
            let percent = v.percent_or(entries, context)?;
            Some(FaultAbort { status, percent })
        });
        let trigger = self.optional(entries, "header_trigger", |v, node| {
            v.header_name(node, &format!("`header_trigger` {context}"))
        });
        if get(entries, "delay").is_none() && get(entries, "abort").is_none() {
            self.report_hint(
                node.loc,
                format!("`fault` {context} injects nothing"),
                "add `delay: { duration: 100ms, percent: 10 }` or `abort: { grpc_status: UNAVAILABLE, percent: 10 }`",
            );
            return None;
        }
        Some(Fault {
            delay: delay?,
            abort: abort?,
            header_trigger: trigger?,
        })
    }

    // --- small readers ---

    /// False (and reported at `high`'s key) when `high` is shorter than `low`.
    fn not_shorter(
        &mut self,
        entries: &Entries,
        (low_key, low): (&str, Option<Duration>),
        (high_key, high): (&str, Option<Duration>),
        context: &str,
        hint: &str,
    ) -> bool {
        let (Some(low), Some(high), Some((key, _))) = (low, high, get(entries, high_key)) else {
            return true;
        };
        if high >= low {
            return true;
        }
        self.report_hint(
            key.loc,
            format!("`{high_key}` {context} is shorter than `{low_key}`"),
            hint,
        );
        false
    }

    /// One of `choices`, by index.
    fn choice(&mut self, node: &Node, key: &str, context: &str, choices: &[&str]) -> Option<usize> {
        let text = self.string(node, &format!("`{key}` {context}"))?;
        if let Some(i) = choices.iter().position(|c| *c == text) {
            return Some(i);
        }
        let hint = super::did_you_mean(text, choices.iter().copied())
            .unwrap_or_else(|| format!("use one of {}", super::backticked(choices)));
        self.report_hint(
            node.loc,
            format!("unknown `{key}` `{text}` {context}"),
            hint,
        );
        None
    }

    fn count(
        &mut self,
        node: &Node,
        key: &str,
        context: &str,
        range: std::ops::RangeInclusive<u32>,
    ) -> Option<u32> {
        let NodeKind::Int(n) = node.kind else {
            self.report(
                node.loc,
                format!(
                    "expected an integer for `{key}` {context}, found {}",
                    node.describe()
                ),
            );
            return None;
        };
        match u32::try_from(n) {
            Ok(n) if range.contains(&n) => Some(n),
            _ => {
                self.report(
                    node.loc,
                    format!(
                        "`{key}` {context} must be {} to {}, not {n}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }

    fn count_or(
        &mut self,
        entries: &Entries,
        key: &str,
        context: &str,
        default: u32,
        range: std::ops::RangeInclusive<u32>,
    ) -> Option<u32> {
        match get(entries, key) {
            None => Some(default),
            Some((_, node)) => self.count(node, key, context, range),
        }
    }

    fn http_status(
        &mut self,
        node: &Node,
        key: &str,
        context: &str,
        range: std::ops::RangeInclusive<u32>,
    ) -> Option<u16> {
        self.count(node, key, context, range)
            .and_then(|n| u16::try_from(n).ok())
    }

    fn positive_or(
        &mut self,
        entries: &Entries,
        key: &str,
        context: &str,
        default: Duration,
    ) -> Option<Duration> {
        match get(entries, key) {
            None => Some(default),
            Some((_, node)) => self.positive_duration(
                node,
                key,
                context,
                &Zero {
                    effect: "make it meaningless",
                    hint: "leave it out for the default",
                },
            ),
        }
    }

    /// `percent` (0 to 100, fractions allowed); default 100.
    pub(super) fn percent_or(&mut self, entries: &Entries, context: &str) -> Option<f64> {
        let Some((_, node)) = get(entries, "percent") else {
            return Some(100.0);
        };
        let value = match node.kind {
            NodeKind::Int(n) => n as f64,
            NodeKind::Float(f) => f,
            _ => {
                self.report(
                    node.loc,
                    format!(
                        "expected a number for `percent` {context}, found {}",
                        node.describe()
                    ),
                );
                return None;
            }
        };
        if !(0.0..=100.0).contains(&value) {
            self.report(
                node.loc,
                format!("`percent` {context} must be 0 to 100, not {value}"),
            );
            return None;
        }
        Some(value)
    }

    fn code(&mut self, node: &Node, context: &str) -> Option<Code> {
        let text = self.string(node, &format!("a gRPC status {context}"))?;
        match Code::from_name(text) {
            Some(code) => Some(code),
            None => {
                let hint = super::did_you_mean(
                    &text.to_ascii_uppercase(),
                    Code::all().iter().map(|c| c.as_str()),
                )
                .unwrap_or_else(|| CODE_HINT.to_owned());
                self.report_hint(
                    node.loc,
                    format!("unknown gRPC status `{text}` {context}"),
                    hint,
                );
                None
            }
        }
    }

    fn codes_or(&mut self, entries: &Entries, key: &str, context: &str) -> Option<Vec<Code>> {
        let Some((_, node)) = get(entries, key) else {
            return Some(DEFAULT_FAILURE_STATUSES.to_vec());
        };
        let items = self.list(node, &format!("`{key}` {context}"))?;
        let mut codes = Vec::new();
        let mut ok = true;
        for item in items {
            match self.code(item, context) {
                Some(Code::Ok) => {
                    self.report_hint(
                        item.loc,
                        format!("OK in `{key}` {context} would count successes as failures"),
                        "list failing statuses only",
                    );
                    ok = false;
                }
                Some(code) if !codes.contains(&code) => codes.push(code),
                Some(_) => {}
                None => ok = false,
            }
        }
        ok.then_some(codes)
    }

    fn header_name(&mut self, node: &Node, what: &str) -> Option<http::HeaderName> {
        let text = self.string(node, what)?;
        match http::HeaderName::from_bytes(text.as_bytes()) {
            Ok(name) if text.bytes().all(|b| !b.is_ascii_uppercase()) => Some(name),
            _ => {
                self.report_hint(
                    node.loc,
                    format!("invalid header name `{text}` for {what}"),
                    "header names are lower-case letters, digits and `-`, e.g. x-traffic-class",
                );
                None
            }
        }
    }
}
