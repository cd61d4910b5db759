//! An entrypoint's `limits` and `path_normalization`: defaults, round trip, and every bad
//! value refused at its place.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

use std::time::Duration;

use strait_config::{parse_str, Config, Format, FrameRates, Limits, PathNormalization};

fn parse(text: &str, format: Format) -> Config {
    parse_str(text, format, "strait").unwrap_or_else(|errors| panic!("{text}\n{errors:#?}"))
}

/// An entrypoint `web` whose `limits` mapping holds `lines` from line 5, indented by 6.
fn with_limits(lines: &str) -> String {
    format!("entrypoints:\n  web:\n    address: 127.0.0.1:0\n    limits:\n{lines}")
}

const FULL_YAML: &str = r#"
entrypoints:
  web:
    address: 0.0.0.0:8080
    http2: { max_header_list_size: 64KiB }
    limits:
      header_read_timeout: 2s
      max_connections: 100
      max_connections_per_ip: 10
      max_request_body: 1MiB
      max_grpc_request_body: 64MiB
      max_header_size: 4KiB
      max_continuation_frames: 3
      http2_frames_per_second:
        rst_stream: 50
        settings: unlimited
        ping: 10
        window_update: 1000
        priority: 20
        empty_data: 5
    path_normalization:
      dot_segments: true
      merge_slashes: false
  open:
    address: 0.0.0.0:8081
    limits:
      max_connections: unlimited
      max_connections_per_ip: unlimited
      max_request_body: unlimited
"#;

const FULL_TOML: &str = r#"
[entrypoints.web]
address = "0.0.0.0:8080"
http2 = { max_header_list_size = "64KiB" }
path_normalization = { dot_segments = true, merge_slashes = false }

[entrypoints.web.limits]
header_read_timeout = "2s"
max_connections = 100
max_connections_per_ip = 10
max_request_body = "1MiB"
max_grpc_request_body = "64MiB"
max_header_size = 4096
max_continuation_frames = 3

[entrypoints.web.limits.http2_frames_per_second]
rst_stream = 50
settings = "unlimited"
ping = 10
window_update = 1000
priority = 20
empty_data = 5

[entrypoints.open]
address = "0.0.0.0:8081"
limits = { max_connections = "unlimited", max_connections_per_ip = "unlimited", max_request_body = "unlimited" }
"#;

const FULL_EFFECTIVE: &str = "\
drain_timeout: 30s
lifecycle:
  accept_grace: 0s
entrypoints:
  web:
    address: 0.0.0.0:8080
    http2:
      max_header_list_size: 64KiB
    limits:
      header_read_timeout: 2s
      max_connections: 100
      max_connections_per_ip: 10
      max_request_body: 1MiB
      max_grpc_request_body: 64MiB
      max_header_size: 4KiB
      max_continuation_frames: 3
      http2_frames_per_second:
        rst_stream: 50
        settings: unlimited
        ping: 10
        window_update: 1000
        priority: 20
        empty_data: 5
    path_normalization:
      dot_segments: true
      merge_slashes: false
  open:
    address: 0.0.0.0:8081
    limits:
      max_connections: unlimited
      max_connections_per_ip: unlimited
      max_request_body: unlimited
routers: {}
services: {}
middlewares: {}
";

#[test]
fn every_limit_parses() {
    let config = parse(FULL_YAML, Format::Yaml);
    let web = &config.entrypoints["web"];
    assert_eq!(
        web.limits,
        Limits {
            header_read_timeout: Duration::from_secs(2),
            max_connections: Some(100),
            max_connections_per_ip: Some(10),
            max_request_body: Some(1 << 20),
            max_grpc_request_body: Some(64 << 20),
            max_header_size: 4096,
            max_continuation_frames: Some(3),
            http2_frames_per_second: FrameRates {
                rst_stream: Some(50),
                settings: None,
                ping: Some(10),
                window_update: Some(1000),
                priority: Some(20),
                empty_data: Some(5),
            },
        }
    );
    assert_eq!(
        web.path_normalization,
        PathNormalization {
            dot_segments: true,
            merge_slashes: false
        }
    );
    // A default per-IP limit above a lower total is simply capped by it.
    let low = parse(&with_limits("      max_connections: 10\n"), Format::Yaml);
    assert_eq!(low.entrypoints["web"].limits.max_connections, Some(10));
    let open = &config.entrypoints["open"].limits;
    assert_eq!(open.max_connections, None);
    assert_eq!(open.max_connections_per_ip, None);
    assert_eq!(open.max_request_body, None);
    assert_eq!(open.header_read_timeout, Duration::from_secs(5));
}

#[test]
fn toml_yaml_and_the_effective_config_agree() {
    let yaml = parse(FULL_YAML, Format::Yaml);
    let toml = parse(FULL_TOML, Format::Toml);
    assert_eq!(yaml.to_yaml(), FULL_EFFECTIVE);
    assert_eq!(toml.to_yaml(), FULL_EFFECTIVE);
    let again = parse(FULL_EFFECTIVE, Format::Yaml);
    assert_eq!(again.to_yaml(), FULL_EFFECTIVE);
    for name in ["web", "open"] {
        assert_eq!(
            again.entrypoints[name].limits,
            yaml.entrypoints[name].limits
        );
        assert_eq!(toml.entrypoints[name].limits, yaml.entrypoints[name].limits);
        assert_eq!(
            again.entrypoints[name].path_normalization,
            yaml.entrypoints[name].path_normalization
        );
    }
}

#[test]
fn defaults_are_safe_and_not_printed() {
    for lines in [
        "",
        "    limits:\n",
        "    limits: {}\n    path_normalization: {}\n",
    ] {
        let text = format!("entrypoints:\n  web:\n    address: 127.0.0.1:0\n{lines}");
        let config = parse(&text, Format::Yaml);
        let web = &config.entrypoints["web"];
        assert_eq!(web.limits, Limits::default());
        assert_eq!(web.path_normalization, PathNormalization::default());
        let yaml = config.to_yaml();
        assert!(!yaml.contains("limits"), "{yaml}");
        assert!(!yaml.contains("path_normalization"), "{yaml}");
    }
    let limits = Limits::default();
    assert_eq!(limits.header_read_timeout, Duration::from_secs(5));
    assert_eq!(limits.max_grpc_request_body, None);
    assert!(limits.max_request_body.is_some());
    let normalize = PathNormalization::default();
    assert!(normalize.dot_segments && normalize.merge_slashes);
}

#[test]
fn continuation_frames_default_to_what_the_header_list_needs() {
    let limits = Limits::default();
    // The engine decodes twice the list limit, at least 128 KiB: 8 frames of 16 KiB.
    assert_eq!(limits.continuation_frames(None, None), 10);
    assert_eq!(limits.continuation_frames(Some(1 << 20), None), 160);
    assert_eq!(limits.continuation_frames(Some(1 << 20), Some(1 << 20)), 5);
    let set = Limits {
        max_continuation_frames: Some(2),
        ..Limits::default()
    };
    assert_eq!(set.continuation_frames(Some(1 << 20), None), 2);
}

#[test]
fn bad_values_are_refused_where_they_are() {
    // (lines from line 5, line, column, message, hint)
    let cases: &[(&str, usize, usize, &str, &str)] = &[
        (
            "      header_read_timeout: 0s\n",
            5,
            28,
            "`header_read_timeout` in `limits` in entrypoint `web` is zero",
            "default, 5s",
        ),
        (
            "      header_read_timeout: soon\n",
            5,
            28,
            "`soon` is not a duration",
            "durations look like",
        ),
        (
            "      max_connections: 0\n",
            5,
            24,
            "`max_connections` in `limits` in entrypoint `web` must be 1 to 4294967295, not 0",
            "`unlimited`",
        ),
        (
            "      max_connections: many\n",
            5,
            24,
            "expected a whole number for `max_connections`",
            "`unlimited`",
        ),
        (
            "      max_connections_per_ip: -1\n",
            5,
            31,
            "`max_connections_per_ip` in `limits` in entrypoint `web` must be 1 to",
            "`unlimited`",
        ),
        (
            "      max_connections: 10\n      max_connections_per_ip: 11\n",
            6,
            7,
            "`max_connections_per_ip` in `limits` in entrypoint `web` (11) has no effect: it is above `max_connections` (10)",
            "lower `max_connections_per_ip`",
        ),
        (
            "      max_request_body: 0\n",
            5,
            25,
            "`max_request_body` in `limits` in entrypoint `web` must be at least 1 byte",
            "`unlimited`",
        ),
        (
            "      max_request_body: 10MB\n",
            5,
            25,
            "unknown unit `MB`",
            "16MiB",
        ),
        (
            "      max_grpc_request_body: [1]\n",
            5,
            30,
            "expected a size for `max_grpc_request_body`",
            "`unlimited`",
        ),
        (
            "      max_header_size: unlimited\n",
            5,
            24,
            "`unlimited` is not a size: it does not start with a number for `max_header_size`",
            "64KiB",
        ),
        (
            "      max_header_size: 0\n",
            5,
            24,
            "`max_header_size` in `limits` in entrypoint `web` must be 1 to",
            "8KiB",
        ),
        (
            "      max_continuation_frames: 0\n",
            5,
            32,
            "`max_continuation_frames` in `limits` in entrypoint `web` must be at least 1, not 0",
            "",
        ),
        (
            "      max_continuation_frames: 11\n",
            5,
            32,
            "(11) has no effect: with the entrypoint's `http2.max_header_list_size` the HTTP/2 engine already stops a header block after 10",
            "raise `max_header_list_size`",
        ),
        (
            "      max_continuation_frames: lots\n",
            5,
            32,
            "expected a whole number for `max_continuation_frames`",
            "",
        ),
        (
            "      http2_frames_per_second:\n        ping: 0\n",
            6,
            15,
            "`ping` in `http2_frames_per_second` in `limits` in entrypoint `web` must be 1 to",
            "`unlimited`",
        ),
        (
            "      http2_frames_per_second:\n        pings: 10\n",
            6,
            9,
            "unknown key `pings` in `http2_frames_per_second`",
            "did you mean `ping`?",
        ),
        (
            "      http2_frames_per_second: 10\n",
            5,
            32,
            "expected a mapping for `http2_frames_per_second`",
            "",
        ),
        (
            "      max_body: 1MiB\n",
            5,
            7,
            "unknown key `max_body` in `limits` in entrypoint `web`",
            "valid keys are",
        ),
    ];
    for &(lines, line, col, message, hint) in cases {
        let err = one(&with_limits(lines));
        assert_at(&err, line, col, message);
        assert_hint(&err, hint);
    }
}

#[test]
fn limits_must_be_a_mapping() {
    let err = one("entrypoints:\n  web:\n    address: 127.0.0.1:0\n    limits: 5\n");
    assert_at(
        &err,
        4,
        13,
        "expected a mapping for `limits` in entrypoint `web`",
    );
}

#[test]
fn bad_path_normalization_is_refused_where_it_is() {
    let base = "entrypoints:\n  web:\n    address: 127.0.0.1:0\n";
    let err = one(&format!("{base}    path_normalization: yes\n"));
    assert_at(
        &err,
        4,
        25,
        "expected a mapping for `path_normalization` in entrypoint `web`",
    );
    let err = one(&format!(
        "{base}    path_normalization:\n      merge_slashes: \"no\"\n"
    ));
    assert_at(
        &err,
        5,
        22,
        "expected a boolean for `merge_slashes` in `path_normalization` in entrypoint `web`",
    );
    assert_hint(&err, "true or false");
    let err = one(&format!(
        "{base}    path_normalization:\n      dot_segment: false\n"
    ));
    assert_at(&err, 5, 7, "unknown key `dot_segment`");
    assert_hint(&err, "did you mean `dot_segments`?");
}
