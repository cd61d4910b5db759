//! The effective config as YAML, for `strait check config` and the admin API. Written by hand
//! so the output reads like a config a person wrote, and parses back to the same config.

use std::fmt::Write;
use std::path::Path;

use yaml_rust2::Yaml;

use crate::duration::format_duration;
use crate::model::{
    AccessLogTarget, AlpnProtocol, CertificateFiles, Config, HostMatch, Http2Settings, Lifecycle,
    Match, PlaintextProtocols, Router, ServerTls, Service, UpstreamTls, ValueMatch,
};
use crate::resilience::{
    AbortStatus, Fallback, FaultDelay, HashOn, HealthCheckKind, LoadBalancer, OutlierDetection,
    PanicMode, ServiceLimits,
};
use crate::size::format_size;
use crate::validate::{mode_name, url_text};

mod limits;

pub(crate) fn config(config: &Config) -> String {
    let mut out = String::new();
    line(
        &mut out,
        0,
        "drain_timeout",
        &format_duration(config.drain_timeout),
    );
    out.push_str("lifecycle:\n");
    line(
        &mut out,
        1,
        "accept_grace",
        &format_duration(config.lifecycle.accept_grace),
    );
    match &config.access_log {
        Some(AccessLogTarget::Stdout) => out.push_str("access_log:\n  path: stdout\n"),
        Some(AccessLogTarget::File(path)) => {
            out.push_str("access_log:\n");
            line(&mut out, 1, "path", &scalar(&path.display().to_string()));
        }
        None => {}
    }
    if let Some(admin) = &config.admin {
        out.push_str("admin:\n");
        line(&mut out, 1, "address", &scalar(&admin.address.to_string()));
        if let Some(token) = &admin.token_file {
            line(
                &mut out,
                1,
                "token_file",
                &scalar(&token.display().to_string()),
            );
        }
    }

    section(&mut out, "entrypoints", config.entrypoints.is_empty());
    for (name, entrypoint) in &config.entrypoints {
        line(&mut out, 1, name, "");
        line(
            &mut out,
            2,
            "address",
            &scalar(&entrypoint.address.to_string()),
        );
        if entrypoint.protocols != PlaintextProtocols::default() {
            line(&mut out, 2, "protocols", entrypoint.protocols.as_str());
        }
        if let Some(tls) = &entrypoint.tls {
            emit_server_tls(&mut out, tls);
        }
        emit_http2(&mut out, &entrypoint.http2);
        emit_lifecycle(&mut out, &entrypoint.lifecycle);
        limits::emit(&mut out, &entrypoint.limits, entrypoint.path_normalization);
    }

    section(&mut out, "routers", config.routers.is_empty());
    for (name, router) in &config.routers {
        line(&mut out, 1, name, "");
        emit_router(&mut out, router);
    }

    section(&mut out, "services", config.services.is_empty());
    for (name, service) in &config.services {
        line(&mut out, 1, name, "");
        line(&mut out, 2, "servers", "");
        for server in &service.servers {
            let _ = writeln!(out, "      - url: {}", scalar(&url_text(&server.url)));
            let _ = writeln!(out, "        weight: {}", server.weight);
        }
        line(
            &mut out,
            2,
            "connect_timeout",
            &format_duration(service.connect_timeout),
        );
        if let Some(tls) = &service.tls {
            emit_upstream_tls(&mut out, tls);
        }
        emit_http2(&mut out, &service.http2);
        emit_lifecycle(&mut out, &service.lifecycle);
        emit_service_resilience(&mut out, service);
    }

    // No middleware kinds exist yet; the section is shown so the output has every part.
    out.push_str("middlewares: {}\n");
    out
}

fn emit_server_tls(out: &mut String, tls: &ServerTls) {
    line(out, 2, "tls", "");
    line(out, 3, "certificates", "");
    for certificate in &tls.certificates {
        let _ = writeln!(out, "        - cert_file: {}", path(&certificate.cert_file));
        let _ = writeln!(out, "          key_file: {}", path(&certificate.key_file));
        let _ = writeln!(out, "          default: {}", certificate.default);
    }
    line(out, 3, "alpn", &alpn(&tls.alpn));
    line(out, 3, "sni_strict", &tls.sni_strict.to_string());
    line(out, 3, "min_version", &scalar(tls.min_version.as_str()));
    if !tls.cipher_suites.is_empty() {
        line(out, 3, "cipher_suites", &flow_list(&tls.cipher_suites));
    }
    line(
        out,
        3,
        "handshake_timeout",
        &format_duration(tls.handshake_timeout),
    );
    if let Some(client_auth) = &tls.client_auth {
        line(out, 3, "client_auth", "");
        line(out, 4, "mode", mode_name(client_auth.mode));
        if let Some(ca_file) = &client_auth.ca_file {
            line(out, 4, "ca_file", &path(ca_file));
        }
        if let Some(header) = &client_auth.forward_header {
            line(out, 4, "forward_header", &scalar(header.as_str()));
        }
    }
    if let Some(delay) = &tls.fault {
        line(out, 3, "fault", "");
        emit_fault_delay(out, delay);
    }
}

fn emit_upstream_tls(out: &mut String, tls: &UpstreamTls) {
    line(out, 2, "tls", "");
    line(out, 3, "alpn", &alpn(&tls.alpn));
    if let Some(ca_file) = &tls.ca_file {
        line(out, 3, "ca_file", &path(ca_file));
    }
    if let Some(server_name) = &tls.server_name {
        line(out, 3, "server_name", &scalar(server_name));
    }
    if let Some(CertificateFiles {
        cert_file,
        key_file,
        ..
    }) = &tls.client_cert
    {
        line(out, 3, "cert_file", &path(cert_file));
        line(out, 3, "key_file", &path(key_file));
    }
    line(
        out,
        3,
        "insecure_skip_verify",
        &tls.insecure_skip_verify.to_string(),
    );
    if let Some(fault) = &tls.fault {
        line(out, 3, "fault", "");
        if let Some(abort) = &fault.abort {
            line(out, 4, "abort", "");
            line(out, 5, "percent", &abort.percent.to_string());
        }
        if let Some(delay) = &fault.delay {
            emit_fault_delay(out, delay);
        }
    }
}

/// `delay:` under a `tls.fault` (depth 4).
fn emit_fault_delay(out: &mut String, delay: &FaultDelay) {
    line(out, 4, "delay", "");
    line(out, 5, "duration", &format_duration(delay.duration));
    line(out, 5, "percent", &delay.percent.to_string());
}

/// Only the settings that were given; the rest keep strait's defaults, which live with the
/// runtime rather than here.
fn emit_http2(out: &mut String, http2: &Http2Settings) {
    if *http2 == Http2Settings::default() {
        return;
    }
    line(out, 2, "http2", "");
    if let Some(streams) = http2.max_concurrent_streams {
        line(out, 3, "max_concurrent_streams", &streams.to_string());
    }
    let sizes = [
        ("initial_stream_window", http2.initial_stream_window),
        ("initial_connection_window", http2.initial_connection_window),
    ];
    for (key, bytes) in sizes {
        if let Some(bytes) = bytes {
            line(out, 3, key, &format_size(bytes));
        }
    }
    if http2.adaptive_window {
        line(out, 3, "adaptive_window", "true");
    }
    let sizes = [
        ("max_frame_size", http2.max_frame_size),
        ("max_header_list_size", http2.max_header_list_size),
    ];
    for (key, bytes) in sizes {
        if let Some(bytes) = bytes {
            line(out, 3, key, &format_size(bytes));
        }
    }
    let durations = [
        ("keepalive_interval", http2.keepalive_interval),
        ("keepalive_timeout", http2.keepalive_timeout),
    ];
    for (key, duration) in durations {
        if let Some(duration) = duration {
            line(out, 3, key, &format_duration(duration));
        }
    }
}

fn emit_lifecycle(out: &mut String, lifecycle: &Lifecycle) {
    let durations = [
        ("max_connection_age", lifecycle.max_connection_age),
        (
            "max_connection_age_grace",
            lifecycle.max_connection_age_grace,
        ),
        ("idle_timeout", lifecycle.idle_timeout),
    ];
    for (key, duration) in durations {
        if let Some(duration) = duration {
            line(out, 2, key, &format_duration(duration));
        }
    }
    if let Some(count) = lifecycle.max_requests_per_connection {
        line(out, 2, "max_requests_per_connection", &count.to_string());
    }
}

fn emit_router(out: &mut String, router: &Router) {
    // An empty list can only mean that no entrypoints are defined; leaving the key out says
    // the same ("all of them") and stays valid.
    if !router.entrypoints.is_empty() {
        line(out, 2, "entrypoints", &flow_list(&router.entrypoints));
    }
    emit_match(out, &router.matcher);
    line(out, 2, "service", &scalar(&router.service));
    if let Some(priority) = router.priority {
        line(out, 2, "priority", &priority.to_string());
    }
    if let Some(timeout) = router.timeout {
        line(out, 2, "timeout", &format_duration(timeout));
    }
    if let Some(timeout) = router.stream_idle_timeout {
        line(out, 2, "stream_idle_timeout", &format_duration(timeout));
    }
    emit_router_resilience(out, router);
}

fn emit_service_resilience(out: &mut String, service: &Service) {
    match &service.load_balancer {
        LoadBalancer::P2c => {}
        LoadBalancer::Hash(on) => {
            line(out, 2, "load_balancer", "");
            line(out, 3, "policy", "hash");
            match on {
                HashOn::ClientIp => line(out, 3, "hash_on", "client_ip"),
                HashOn::Header(name) => line(
                    out,
                    3,
                    "hash_on",
                    &format!("{{ header: {} }}", name.as_str()),
                ),
            }
        }
        other => line(out, 2, "load_balancer", other.as_str()),
    }
    if let Some(check) = &service.health_check {
        line(out, 2, "health_check", "");
        match &check.kind {
            HealthCheckKind::Grpc { service } => {
                line(out, 3, "type", "grpc");
                line(out, 3, "grpc_service", &quoted(service));
            }
            HealthCheckKind::Http {
                path,
                expected_status,
            } => {
                line(out, 3, "type", "http");
                line(out, 3, "path", &scalar(path));
                let statuses: Vec<String> = expected_status.iter().map(u16::to_string).collect();
                line(
                    out,
                    3,
                    "expected_status",
                    &format!("[{}]", statuses.join(", ")),
                );
            }
            HealthCheckKind::Tcp => line(out, 3, "type", "tcp"),
        }
        line(out, 3, "interval", &format_duration(check.interval));
        line(out, 3, "timeout", &format_duration(check.timeout));
        line(
            out,
            3,
            "healthy_threshold",
            &check.healthy_threshold.to_string(),
        );
        line(
            out,
            3,
            "unhealthy_threshold",
            &check.unhealthy_threshold.to_string(),
        );
        if !check.jitter.is_zero() {
            line(out, 3, "jitter", &format_duration(check.jitter));
        }
    }
    if service.panic_mode == PanicMode::FailFast {
        line(out, 2, "panic_mode", "fail_fast");
    }
    let outlier = &service.outlier_detection;
    if *outlier != OutlierDetection::default() {
        line(out, 2, "outlier_detection", "");
        line(out, 3, "enabled", &outlier.enabled.to_string());
        let consecutive = outlier.consecutive_failures.unwrap_or(0);
        line(out, 3, "consecutive_failures", &consecutive.to_string());
        if let Some(rate) = &outlier.failure_rate {
            line(out, 3, "failure_rate", "");
            line(out, 4, "percent", &rate.percent.to_string());
            line(
                out,
                4,
                "minimum_requests",
                &rate.minimum_requests.to_string(),
            );
            line(out, 4, "window", &format_duration(rate.window));
        }
        line(
            out,
            3,
            "base_ejection_time",
            &format_duration(outlier.base_ejection_time),
        );
        line(
            out,
            3,
            "max_ejection_time",
            &format_duration(outlier.max_ejection_time),
        );
        line(
            out,
            3,
            "max_ejection_percent",
            &outlier.max_ejection_percent.to_string(),
        );
        line(out, 3, "grpc_statuses", &codes(&outlier.grpc_statuses));
    }
    let limits = &service.limits;
    if *limits != ServiceLimits::default() {
        line(out, 2, "circuit_breakers", "");
        let counts = [
            ("max_connections", limits.max_connections),
            ("max_pending", limits.max_pending),
            ("max_requests", limits.max_requests),
        ];
        for (key, value) in counts {
            if let Some(value) = value {
                line(out, 3, key, &value.to_string());
            }
        }
        if let Some(classes) = &limits.traffic_classes {
            line(out, 3, "traffic_classes", "");
            line(out, 4, "header", classes.header.as_str());
            line(out, 4, "default", &scalar(&classes.default));
            line(out, 4, "classes", "");
            for (name, limit) in &classes.classes {
                line(out, 5, name, &limit.to_string());
            }
        }
    }
}

fn emit_router_resilience(out: &mut String, router: &Router) {
    if let Some(class) = &router.traffic_class {
        line(out, 2, "traffic_class", &scalar(class));
    }
    if let Some(retry) = &router.retry {
        line(out, 2, "retry", "");
        line(out, 3, "attempts", &retry.attempts.to_string());
        let on: Vec<String> = retry
            .retry_on
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect();
        line(out, 3, "retry_on", &flow_list(&on));
        line(out, 3, "backoff_base", &format_duration(retry.backoff_base));
        line(out, 3, "backoff_max", &format_duration(retry.backoff_max));
        if let Some(timeout) = retry.per_try_timeout {
            line(out, 3, "per_try_timeout", &format_duration(timeout));
        }
        line(out, 3, "budget_percent", &retry.budget_percent.to_string());
        line(out, 3, "budget_min", &retry.budget_min.to_string());
        line(out, 3, "buffer", &retry.buffer.to_string());
    }
    if let Some(breaker) = &router.circuit_breaker {
        line(out, 2, "circuit_breaker", "");
        line(
            out,
            3,
            "failure_percent",
            &breaker.failure_percent.to_string(),
        );
        line(
            out,
            3,
            "minimum_requests",
            &breaker.minimum_requests.to_string(),
        );
        line(out, 3, "window", &format_duration(breaker.window));
        line(out, 3, "open_for", &format_duration(breaker.open_for));
        line(
            out,
            3,
            "half_open_requests",
            &breaker.half_open_requests.to_string(),
        );
        line(out, 3, "grpc_statuses", &codes(&breaker.grpc_statuses));
    }
    match &router.fallback {
        None => {}
        Some(Fallback::Grpc { status, message }) => {
            line(out, 2, "fallback", "");
            line(out, 3, "grpc_status", status.as_str());
            line(out, 3, "message", &quoted(message));
        }
        Some(Fallback::Http { status, body }) => {
            line(out, 2, "fallback", "");
            line(out, 3, "http_status", &status.to_string());
            line(out, 3, "body", &quoted(body));
        }
        Some(Fallback::Service(name)) => {
            line(out, 2, "fallback", "");
            line(out, 3, "service", &scalar(name));
        }
    }
    if let Some(fault) = &router.fault {
        line(out, 2, "fault", "");
        if let Some(delay) = &fault.delay {
            line(out, 3, "delay", "");
            line(out, 4, "duration", &format_duration(delay.duration));
            line(out, 4, "percent", &delay.percent.to_string());
        }
        if let Some(abort) = &fault.abort {
            line(out, 3, "abort", "");
            match abort.status {
                AbortStatus::Grpc(code) => line(out, 4, "grpc_status", code.as_str()),
                AbortStatus::Http(status) => line(out, 4, "http_status", &status.to_string()),
            }
            line(out, 4, "percent", &abort.percent.to_string());
        }
        if let Some(header) = &fault.header_trigger {
            line(out, 3, "header_trigger", header.as_str());
        }
    }
}

fn codes(codes: &[strait_core::Code]) -> String {
    let names: Vec<String> = codes.iter().map(|c| c.as_str().to_owned()).collect();
    flow_list(&names)
}

fn emit_match(out: &mut String, matcher: &Match) {
    let mut body = String::new();
    if let Some(host) = &matcher.host {
        let host = match host {
            HostMatch::Exact(name) => name.clone(),
            HostMatch::Wildcard(suffix) => format!("*{suffix}"),
        };
        line(&mut body, 3, "host", &scalar(&host));
    }
    let strings = [
        ("path", &matcher.path),
        ("path_prefix", &matcher.path_prefix),
        ("grpc_service", &matcher.grpc_service),
        ("grpc_method", &matcher.grpc_method),
        ("client_cert_san", &matcher.client_cert_san),
    ];
    for (key, value) in strings {
        if let Some(value) = value {
            line(&mut body, 3, key, &scalar(value));
        }
    }
    if !matcher.methods.is_empty() {
        let methods: Vec<String> = matcher.methods.iter().map(ToString::to_string).collect();
        line(&mut body, 3, "method", &flow_list(&methods));
    }
    if !matcher.headers.is_empty() {
        line(&mut body, 3, "headers", "");
        for (name, value) in &matcher.headers {
            line(&mut body, 4, name.as_str(), &value_match(value));
        }
    }
    if !matcher.query.is_empty() {
        line(&mut body, 3, "query", "");
        for (name, value) in &matcher.query {
            line(&mut body, 4, name, &value_match(value));
        }
    }
    if body.is_empty() {
        line(out, 2, "match", "{}");
    } else {
        line(out, 2, "match", "");
        out.push_str(&body);
    }
}

fn value_match(value: &ValueMatch) -> String {
    match value {
        ValueMatch::Exact(text) => format!("{{ exact: {} }}", scalar(text)),
        ValueMatch::Regex(regex) => format!("{{ regex: {} }}", quoted(regex.as_str())),
        ValueMatch::Present => "{ present: true }".to_owned(),
    }
}

fn alpn(protocols: &[AlpnProtocol]) -> String {
    let names: Vec<String> = protocols.iter().map(|p| p.as_str().to_owned()).collect();
    flow_list(&names)
}

/// Paths came from config text joined to the config file's directory, so they are UTF-8
/// unless that directory's name is not.
fn path(path: &Path) -> String {
    scalar(&path.to_string_lossy())
}

fn section(out: &mut String, name: &str, empty: bool) {
    if empty {
        let _ = writeln!(out, "{name}: {{}}");
    } else {
        let _ = writeln!(out, "{name}:");
    }
}

/// `key: value` at `depth` levels of two-space indentation; an empty value opens a block.
fn line(out: &mut String, depth: usize, key: &str, value: &str) {
    let _ = write!(out, "{:width$}{}:", "", scalar(key), width = depth * 2);
    if !value.is_empty() {
        out.push(' ');
        out.push_str(value);
    }
    out.push('\n');
}

fn flow_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| flow_scalar(item)).collect();
    format!("[{}]", items.join(", "))
}

/// A plain scalar where YAML reads it back as this same string, else a double-quoted one.
fn scalar(text: &str) -> String {
    let mut chars = text.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | ':'))
        && !text.ends_with(':')
        && matches!(Yaml::from_str(text), Yaml::String(_));
    if plain {
        text.to_owned()
    } else {
        quoted(text)
    }
}

/// Inside `[...]` a `:` could be read as a key, so those are quoted too.
fn flow_scalar(text: &str) -> String {
    if text.contains(':') {
        quoted(text)
    } else {
        scalar(text)
    }
}

fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_quoted_only_when_needed() {
        assert_eq!(scalar("orders"), "orders");
        assert_eq!(scalar("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(scalar("/shop.OrderService/"), "/shop.OrderService/");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("null"), "\"null\"");
        assert_eq!(scalar("12"), "\"12\"");
        assert_eq!(scalar("1.5"), "\"1.5\"");
        assert_eq!(scalar(""), "\"\"");
        assert_eq!(scalar("*.example.com"), "\"*.example.com\"");
        assert_eq!(scalar("a b"), "\"a b\"");
        assert_eq!(scalar("-x"), "\"-x\"");
        assert_eq!(scalar("a\"\\\n\u{1}"), "\"a\\\"\\\\\\n\\u0001\"");
        assert_eq!(flow_scalar("a:b"), "\"a:b\"");
    }
}
