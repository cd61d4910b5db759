//! Resilience settings: a service's `load_balancer`, `health_check`, `panic_mode`,
//! `outlier_detection` and `circuit_breakers`; a router's `traffic_class`, `retry`,
//! `circuit_breaker`, `fallback` and `fault`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

use std::time::Duration;

use strait_config::{
    parse_str, AbortStatus, Config, Fallback, Format, HashOn, HealthCheckKind, LoadBalancer,
    OutlierDetection, PanicMode, RetryOn,
};
use strait_core::Code;

fn parse(text: &str, format: Format) -> Config {
    parse_str(text, format, "strait").unwrap_or_else(|errors| panic!("{text}\n{errors:#?}"))
}

const FULL_YAML: &str = r#"
entrypoints:
  web: { address: 127.0.0.1:0 }
routers:
  orders:
    service: orders
    stream_idle_timeout: 5m
    traffic_class: premium
    retry:
      attempts: 4
      retry_on: [reset, unavailable, 5xx]
      backoff_base: 10ms
      backoff_max: 1s
      per_try_timeout: 2s
      budget_percent: 10
      budget_min: 1
      buffer: 16KiB
    circuit_breaker:
      failure_percent: 30
      minimum_requests: 10
      window: 5s
      open_for: 15s
      half_open_requests: 3
      grpc_statuses: [UNAVAILABLE, RESOURCE_EXHAUSTED]
    fallback: { service: backup }
    fault:
      delay: { duration: 50ms, percent: 2.5 }
      abort: { http_status: 503, percent: 1 }
      header_trigger: x-chaos
  static:
    service: backup
    fallback: { grpc_status: unavailable, message: "try later" }
services:
  orders:
    load_balancer: { policy: hash, hash_on: { header: x-user } }
    servers: [h2c://127.0.0.1:50051, { url: h2c://127.0.0.1:50052, weight: 2 }]
    health_check:
      type: grpc
      grpc_service: shop.Orders
      interval: 5s
      timeout: 500ms
      healthy_threshold: 1
      unhealthy_threshold: 2
      jitter: 1s
    panic_mode: fail_fast
    outlier_detection:
      consecutive_failures: 0
      failure_rate: { percent: 40, minimum_requests: 10, window: 30s }
      base_ejection_time: 10s
      max_ejection_time: 1m
      max_ejection_percent: 34
      grpc_statuses: [UNAVAILABLE]
    circuit_breakers:
      max_connections: 4
      max_pending: 100
      max_requests: 1000
      traffic_classes:
        header: x-class
        default: standard
        classes: { premium: 500, standard: 200, best-effort: 50 }
  backup:
    servers: [http://127.0.0.1:8080]
    load_balancer: least_request
    health_check: { type: http, path: /healthz, expected_status: [200, 204] }
    outlier_detection: { enabled: false }
"#;

#[test]
fn every_setting_is_read() {
    let config = parse(FULL_YAML, Format::Yaml);
    let orders = &config.services["orders"];
    assert_eq!(
        orders.load_balancer,
        LoadBalancer::Hash(HashOn::Header(http::HeaderName::from_static("x-user")))
    );
    let check = orders.health_check.as_ref().unwrap();
    assert_eq!(
        check.kind,
        HealthCheckKind::Grpc {
            service: "shop.Orders".into()
        }
    );
    assert_eq!(
        (check.interval, check.timeout, check.jitter),
        (
            Duration::from_secs(5),
            Duration::from_millis(500),
            Duration::from_secs(1)
        )
    );
    assert_eq!((check.healthy_threshold, check.unhealthy_threshold), (1, 2));
    assert_eq!(orders.panic_mode, PanicMode::FailFast);
    let outlier = &orders.outlier_detection;
    assert_eq!(outlier.consecutive_failures, None, "0 turns it off");
    assert_eq!(outlier.failure_rate.as_ref().unwrap().percent, 40);
    assert_eq!(outlier.max_ejection_time, Duration::from_secs(60));
    assert_eq!(outlier.grpc_statuses, [Code::Unavailable]);
    let limits = &orders.limits;
    assert_eq!(
        (
            limits.max_connections,
            limits.max_pending,
            limits.max_requests
        ),
        (Some(4), Some(100), Some(1000))
    );
    let classes = limits.traffic_classes.as_ref().unwrap();
    assert_eq!(classes.header, "x-class");
    assert_eq!(classes.default, "standard");
    assert_eq!(classes.classes["best-effort"], 50);

    let backup = &config.services["backup"];
    assert_eq!(backup.load_balancer, LoadBalancer::LeastRequest);
    assert_eq!(
        backup.health_check.as_ref().unwrap().kind,
        HealthCheckKind::Http {
            path: "/healthz".into(),
            expected_status: vec![200, 204]
        }
    );
    assert!(!backup.outlier_detection.enabled);

    let router = &config.routers["orders"];
    assert_eq!(router.stream_idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(config.routers["static"].stream_idle_timeout, None);
    assert_eq!(router.traffic_class.as_deref(), Some("premium"));
    let retry = router.retry.as_ref().unwrap();
    assert_eq!(retry.attempts, 4);
    assert_eq!(
        retry.retry_on,
        [RetryOn::Reset, RetryOn::Unavailable, RetryOn::Http5xx]
    );
    assert_eq!(retry.per_try_timeout, Some(Duration::from_secs(2)));
    assert_eq!(
        (retry.budget_percent, retry.budget_min, retry.buffer),
        (10, 1, 16384)
    );
    let breaker = router.circuit_breaker.as_ref().unwrap();
    assert_eq!(breaker.half_open_requests, 3);
    assert_eq!(
        breaker.grpc_statuses,
        [Code::Unavailable, Code::ResourceExhausted]
    );
    assert_eq!(router.fallback, Some(Fallback::Service("backup".into())));
    let fault = router.fault.as_ref().unwrap();
    assert_eq!(fault.delay.as_ref().unwrap().percent, 2.5);
    assert_eq!(fault.abort.as_ref().unwrap().status, AbortStatus::Http(503));
    assert_eq!(
        config.routers["static"].fallback,
        Some(Fallback::Grpc {
            status: Code::Unavailable,
            message: "try later".into()
        })
    );
}

#[test]
fn defaults_are_safe() {
    let config = parse(
        "services:\n  s: { servers: [h2c://127.0.0.1:1] }\nrouters:\n  r: { service: s, retry: {} }\n",
        Format::Yaml,
    );
    let service = &config.services["s"];
    assert_eq!(service.load_balancer, LoadBalancer::P2c);
    assert_eq!(service.panic_mode, PanicMode::TryAll);
    assert_eq!(service.outlier_detection, OutlierDetection::default());
    assert!(service.outlier_detection.enabled);
    assert_eq!(service.outlier_detection.consecutive_failures, Some(5));
    assert!(service.health_check.is_none());
    let retry = config.routers["r"].retry.as_ref().unwrap();
    assert_eq!(retry.attempts, 3);
    assert_eq!(
        retry.retry_on,
        [
            RetryOn::ConnectFailure,
            RetryOn::RefusedStream,
            RetryOn::Unavailable
        ]
    );
    assert_eq!(
        (retry.budget_percent, retry.budget_min, retry.buffer),
        (20, 3, 65536)
    );
}

#[test]
fn the_effective_config_round_trips() {
    let config = parse(FULL_YAML, Format::Yaml);
    let again = parse(&config.to_yaml(), Format::Yaml);
    assert_eq!(config.to_yaml(), again.to_yaml());
    assert_eq!(
        format!("{:?}", config.services),
        format!("{:?}", again.services)
    );
    assert_eq!(
        format!("{:?}", config.routers),
        format!("{:?}", again.routers)
    );
}

#[test]
fn toml_reads_the_same() {
    let toml = r#"
[services.s]
servers = ["h2c://127.0.0.1:1", "h2c://127.0.0.1:2"]
load_balancer = "round_robin"
[services.s.health_check]
type = "tcp"
interval = "2s"
[routers.r]
service = "s"
retry = { attempts = 2, retry_on = ["reset"] }
fault = { abort = { grpc_status = "INTERNAL", percent = 50 } }
"#;
    let config = parse(toml, Format::Toml);
    assert_eq!(config.services["s"].load_balancer, LoadBalancer::RoundRobin);
    assert_eq!(
        config.services["s"].health_check.as_ref().unwrap().kind,
        HealthCheckKind::Tcp
    );
    let fault = config.routers["r"].fault.as_ref().unwrap();
    assert_eq!(
        fault.abort.as_ref().unwrap().status,
        AbortStatus::Grpc(Code::Internal)
    );
}

/// A service `s` whose mapping holds `lines` from line 3 (indented by 4).
fn service(lines: &str) -> String {
    format!("services:\n  s:\n{lines}    servers: [h2c://127.0.0.1:1, h2c://127.0.0.1:2]\n")
}

/// A router `r` to service `s`, its settings from line 6 (indented by 4).
fn router(lines: &str) -> String {
    format!(
        "services:\n  s: {{ servers: [h2c://127.0.0.1:1] }}\n  t: {{ servers: [h2c://127.0.0.1:2] }}\n\
         routers:\n  r:\n{lines}    service: s\n"
    )
}

#[test]
fn bad_service_settings_are_located() {
    let cases: &[(&str, usize, usize, &str, &str)] = &[
        (
            "    load_balancer: fastest\n",
            3,
            20,
            "unknown `load_balancer` `fastest`",
            "use one of",
        ),
        (
            "    load_balancer: p2d\n",
            3,
            20,
            "unknown `load_balancer`",
            "p2c",
        ),
        (
            "    load_balancer: { policy: hash }\n",
            3,
            30,
            "needs `hash_on`",
            "client_ip",
        ),
        (
            "    load_balancer: { policy: p2c, hash_on: client_ip }\n",
            3,
            35,
            "`hash_on`",
            "policy: hash",
        ),
        (
            "    load_balancer: { policy: hash, hash_on: { header: X-User } }\n",
            3,
            55,
            "invalid header name",
            "lower-case",
        ),
        (
            "    load_balancer: { policy: hash, hash_on: cookie }\n",
            3,
            45,
            "invalid `hash_on`",
            "client_ip",
        ),
        (
            "    health_check: { interval: 5s }\n",
            3,
            19,
            "missing `type`",
            "",
        ),
        (
            "    health_check: { type: udp }\n",
            3,
            27,
            "unknown `type` `udp`",
            "did you mean `tcp`",
        ),
        (
            "    health_check: { type: tcp, path: /x }\n",
            3,
            32,
            "`path`",
            "remove `path`",
        ),
        (
            "    health_check: { type: grpc, expected_status: 200 }\n",
            3,
            33,
            "`expected_status`",
            "",
        ),
        (
            "    health_check: { type: http, expected_status: 700 }\n",
            3,
            50,
            "must be 100 to 599",
            "",
        ),
        (
            "    health_check: { type: http, path: healthz }\n",
            3,
            39,
            "path",
            "",
        ),
        (
            "    health_check: { type: tcp, interval: 1s, timeout: 1s }\n",
            3,
            46,
            "not shorter than the interval",
            "",
        ),
        (
            "    health_check: { type: tcp, interval: 0s }\n",
            3,
            42,
            "zero",
            "",
        ),
        (
            "    health_check: { type: tcp, unhealthy_threshold: 0 }\n",
            3,
            53,
            "must be 1 to 1000",
            "",
        ),
        (
            "    panic_mode: yolo\n",
            3,
            17,
            "unknown `panic_mode` `yolo`",
            "try_all",
        ),
        (
            "    outlier_detection: { max_ejection_percent: 101 }\n",
            3,
            48,
            "must be 0 to 100",
            "",
        ),
        (
            "    outlier_detection: { base_ejection_time: 1m, max_ejection_time: 30s }\n",
            3,
            50,
            "shorter than `base_ejection_time`",
            "",
        ),
        (
            "    outlier_detection: { grpc_statuses: [OK] }\n",
            3,
            42,
            "OK in `grpc_statuses`",
            "",
        ),
        (
            "    outlier_detection: { grpc_statuses: [UNAVAILBLE] }\n",
            3,
            42,
            "unknown gRPC status `UNAVAILBLE`",
            "UNAVAILABLE",
        ),
        (
            "    outlier_detection: { failure_rate: { percent: 0 } }\n",
            3,
            51,
            "must be 1 to 100",
            "",
        ),
        (
            "    outlier_detection: { consecutive: 3 }\n",
            3,
            26,
            "unknown key `consecutive`",
            "consecutive_failures",
        ),
        (
            "    circuit_breakers: { max_pending: 10 }\n",
            3,
            25,
            "no effect without `max_connections`",
            "",
        ),
        (
            "    circuit_breakers: { max_connections: 0 }\n",
            3,
            42,
            "must be 1 to",
            "",
        ),
        (
            "    circuit_breakers: { traffic_classes: { classes: {} } }\n",
            3,
            53,
            "is empty",
            "",
        ),
        (
            "    circuit_breakers: { traffic_classes: { default: gold, classes: { a: 1 } } }\n",
            3,
            53,
            "default traffic class `gold`",
            "",
        ),
        (
            "    circuit_breakers: { traffic_classes: { classes: { a: -1 } } }\n",
            3,
            58,
            "must be 1 to",
            "",
        ),
    ];
    for (lines, line, col, message, hint) in cases {
        let text = service(lines);
        let err = one(&text);
        assert_at(&err, *line, *col, message);
        assert_hint(&err, hint);
    }
}

#[test]
fn round_robin_refuses_weights() {
    let err = one(
        "services:\n  s:\n    load_balancer: round_robin\n    servers: [h2c://127.0.0.1:1, { url: h2c://127.0.0.1:2, weight: 3 }]\n",
    );
    assert_at(&err, 3, 20, "equal turns");
    assert_hint(&err, "weighted");
}

#[test]
fn bad_router_settings_are_located() {
    let cases: &[(&str, usize, usize, &str, &str)] = &[
        ("    retry: { attempts: 0 }\n", 6, 24, "must be 1 to 10", ""),
        (
            "    retry: { retry_on: [timeout] }\n",
            6,
            25,
            "unknown `retry_on` `timeout`",
            "connect-failure",
        ),
        (
            "    retry: { retry_on: [reset, reset] }\n",
            6,
            32,
            "listed twice",
            "",
        ),
        (
            "    retry: { backoff_base: 1s, backoff_max: 10ms }\n",
            6,
            32,
            "shorter than `backoff_base`",
            "",
        ),
        ("    retry: { per_try_timeout: 0s }\n", 6, 31, "zero", ""),
        (
            "    stream_idle_timeout: 0s\n",
            6,
            26,
            "`stream_idle_timeout` in router `r` is zero, which would end every stream the moment it starts",
            "leave `stream_idle_timeout` out",
        ),
        (
            "    stream_idle_timeout: soon\n",
            6,
            26,
            "`soon` is not a duration",
            "durations look like",
        ),
        (
            "    retry: { buffer: 32MiB }\n",
            6,
            22,
            "must be 0 to 16777216 bytes",
            "",
        ),
        (
            "    retry: { budget_percent: 120 }\n",
            6,
            30,
            "must be 0 to 100",
            "",
        ),
        (
            "    circuit_breaker: { half_open_requests: 0 }\n",
            6,
            44,
            "must be 1 to",
            "",
        ),
        (
            "    circuit_breaker: { failure_percent: 0 }\n",
            6,
            41,
            "must be 1 to 100",
            "",
        ),
        (
            "    fallback: { grpc_status: UNAVAILABLE, http_status: 503 }\n",
            6,
            43,
            "exactly one of",
            "",
        ),
        ("    fallback: {}\n", 6, 15, "exactly one of", ""),
        (
            "    fallback: { grpc_status: UNAVAILABLE, body: x }\n",
            6,
            43,
            "`body`",
            "`grpc_status` takes a `message`",
        ),
        (
            "    fallback: { grpc_status: NOPE }\n",
            6,
            30,
            "unknown gRPC status `NOPE`",
            "",
        ),
        (
            "    fallback: { http_status: 99 }\n",
            6,
            30,
            "must be 200 to 599",
            "",
        ),
        (
            "    fallback: { service: nope }\n",
            6,
            26,
            "fallback service `nope`",
            "",
        ),
        (
            "    fallback: { service: s }\n",
            6,
            26,
            "the router's own service",
            "",
        ),
        ("    fault: {}\n", 6, 12, "injects nothing", ""),
        (
            "    fault: { abort: { grpc_status: OK } }\n",
            6,
            36,
            "not a failure",
            "",
        ),
        (
            "    fault: { abort: { percent: 10 } }\n",
            6,
            21,
            "needs one of",
            "",
        ),
        (
            "    fault: { abort: { http_status: 200 } }\n",
            6,
            36,
            "must be 400 to 599",
            "",
        ),
        (
            "    fault: { delay: { duration: 1s, percent: 150 } }\n",
            6,
            46,
            "must be 0 to 100",
            "",
        ),
        (
            "    fault: { delay: { percent: 5 } }\n",
            6,
            21,
            "missing `duration`",
            "",
        ),
        (
            "    fault: { header_trigger: 'bad header' }\n",
            6,
            30,
            "invalid header name",
            "",
        ),
        (
            "    traffic_class: premium\n",
            6,
            20,
            "defines no traffic classes",
            "traffic_classes",
        ),
    ];
    for (lines, line, col, message, hint) in cases {
        let text = router(lines);
        let errors = errors(&text, Format::Yaml);
        let err = errors
            .iter()
            .find(|e| e.message.contains(message))
            .unwrap_or_else(|| panic!("{text}: no error says {message:?}: {errors:#?}"));
        assert_at(err, *line, *col, message);
        assert_hint(err, hint);
    }
}

#[test]
fn a_router_class_must_be_one_of_its_services_classes() {
    let err = one(
        "services:\n  s:\n    servers: [h2c://127.0.0.1:1]\n    circuit_breakers:\n      traffic_classes: { classes: { premium: 1, standard: 2 } }\n\
         routers:\n  r: { service: s, traffic_class: premum }\n",
    );
    assert_at(&err, 7, 35, "traffic class `premum`");
    assert_hint(&err, "premium");
}
