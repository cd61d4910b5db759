//! Connection settings: `drain_timeout` and `lifecycle.accept_grace`, `http2` on entrypoints
//! and services, connection age on both, and a service's `max_requests_per_connection`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

use std::num::NonZeroU32;
use std::time::Duration;

use strait_config::{parse_str, Config, Format, Http2Settings, Lifecycle, ProcessLifecycle};

fn parse(text: &str, format: Format) -> Config {
    parse_str(text, format, "strait").unwrap_or_else(|errors| panic!("{text}\n{errors:#?}"))
}

/// A valid entrypoint `web`; `lines` go into its mapping from line 4, indented by 4.
fn with_entrypoint(lines: &str) -> String {
    format!("entrypoints:\n  web:\n    address: 127.0.0.1:0\n{lines}")
}

/// An entrypoint `web` whose `http2` mapping holds `lines` from line 5, indented by 6.
fn with_http2(lines: &str) -> String {
    with_entrypoint(&format!("    http2:\n{lines}"))
}

// === Valid configs ===

const FULL_YAML: &str = r#"
drain_timeout: 1m
lifecycle:
  accept_grace: 5s
entrypoints:
  web:
    address: 0.0.0.0:8080
    http2:
      max_concurrent_streams: 1000
      initial_stream_window: 1MiB
      initial_connection_window: 16MiB
      max_frame_size: 16KiB
      max_header_list_size: 65536
      keepalive_interval: 30s
      keepalive_timeout: 20s
    max_connection_age: 10m
    max_connection_age_grace: 30s
    idle_timeout: 5m
  adaptive:
    address: 0.0.0.0:8081
    http2: { adaptive_window: true, max_frame_size: 16777215 }
    max_connection_age: 1h
    max_connection_age_grace: 0s
services:
  orders:
    servers: [h2c://127.0.0.1:50051, http://127.0.0.1:8080]
    http2:
      max_concurrent_streams: 100
      initial_stream_window: 65535
      max_header_list_size: 1025KiB
      keepalive_interval: 10s
    max_requests_per_connection: 1000
  legacy:
    servers: [http://127.0.0.1:8081]
"#;

const FULL_TOML: &str = r#"
drain_timeout = "1m"
lifecycle.accept_grace = "5s"

[entrypoints.web]
address = "0.0.0.0:8080"
max_connection_age = "10m"
max_connection_age_grace = "30s"
idle_timeout = "5m"

[entrypoints.web.http2]
max_concurrent_streams = 1000
initial_stream_window = "1MiB"
initial_connection_window = "16MiB"
max_frame_size = "16KiB"
max_header_list_size = 65536
keepalive_interval = "30s"
keepalive_timeout = "20s"

[entrypoints.adaptive]
address = "0.0.0.0:8081"
http2 = { adaptive_window = true, max_frame_size = 16777215 }
max_connection_age = "1h"
max_connection_age_grace = "0s"

[services.orders]
servers = ["h2c://127.0.0.1:50051", "http://127.0.0.1:8080"]
max_requests_per_connection = 1000
http2.max_concurrent_streams = 100
http2.initial_stream_window = 65535
http2.max_header_list_size = "1025KiB"
http2.keepalive_interval = "10s"

[services.legacy]
servers = ["http://127.0.0.1:8081"]
"#;

const FULL_EFFECTIVE: &str = "\
drain_timeout: 1m
lifecycle:
  accept_grace: 5s
entrypoints:
  web:
    address: 0.0.0.0:8080
    http2:
      max_concurrent_streams: 1000
      initial_stream_window: 1MiB
      initial_connection_window: 16MiB
      max_frame_size: 16KiB
      max_header_list_size: 64KiB
      keepalive_interval: 30s
      keepalive_timeout: 20s
    max_connection_age: 10m
    max_connection_age_grace: 30s
    idle_timeout: 5m
  adaptive:
    address: 0.0.0.0:8081
    http2:
      adaptive_window: true
      max_frame_size: 16777215
    max_connection_age: 1h
    max_connection_age_grace: 0s
routers: {}
services:
  orders:
    servers:
      - url: h2c://127.0.0.1:50051
        weight: 1
      - url: http://127.0.0.1:8080
        weight: 1
    connect_timeout: 5s
    http2:
      max_concurrent_streams: 100
      initial_stream_window: 65535
      max_header_list_size: 1025KiB
      keepalive_interval: 10s
    max_requests_per_connection: 1000
  legacy:
    servers:
      - url: http://127.0.0.1:8081
        weight: 1
    connect_timeout: 5s
middlewares: {}
";

#[test]
fn every_connection_setting_is_read() {
    let config = parse(FULL_YAML, Format::Yaml);
    assert_eq!(config.drain_timeout, Duration::from_secs(60));
    let web = &config.entrypoints["web"];
    assert_eq!(
        web.http2,
        Http2Settings {
            max_concurrent_streams: Some(1000),
            initial_stream_window: Some(1 << 20),
            initial_connection_window: Some(16 << 20),
            adaptive_window: false,
            max_frame_size: Some(16 << 10),
            max_header_list_size: Some(64 << 10),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Some(Duration::from_secs(20)),
        }
    );
    assert_eq!(
        web.lifecycle,
        Lifecycle {
            max_connection_age: Some(Duration::from_secs(600)),
            max_connection_age_grace: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(300)),
            max_requests_per_connection: None,
        }
    );
    assert_eq!(
        config.lifecycle,
        ProcessLifecycle {
            accept_grace: Duration::from_secs(5)
        }
    );
    assert_eq!(
        config.services["orders"]
            .lifecycle
            .max_requests_per_connection,
        NonZeroU32::new(1000)
    );
    assert_eq!(
        config.services["legacy"]
            .lifecycle
            .max_requests_per_connection,
        None
    );
    let adaptive = &config.entrypoints["adaptive"];
    assert_eq!(
        adaptive.http2,
        Http2Settings {
            adaptive_window: true,
            max_frame_size: Some(16_777_215),
            ..Http2Settings::default()
        }
    );
    assert_eq!(
        adaptive.lifecycle.max_connection_age_grace,
        Some(Duration::ZERO)
    );
    assert_eq!(
        config.services["orders"].http2,
        Http2Settings {
            max_concurrent_streams: Some(100),
            initial_stream_window: Some(65_535),
            max_header_list_size: Some(1025 << 10),
            keepalive_interval: Some(Duration::from_secs(10)),
            ..Http2Settings::default()
        }
    );
    assert_eq!(config.services["legacy"].http2, Http2Settings::default());
}

#[test]
fn the_full_config_in_toml_is_the_same_config() {
    let yaml = parse(FULL_YAML, Format::Yaml);
    let toml = parse(FULL_TOML, Format::Toml);
    assert_eq!(yaml.to_yaml(), FULL_EFFECTIVE);
    assert_eq!(toml.to_yaml(), yaml.to_yaml());
    for name in ["web", "adaptive"] {
        assert_eq!(toml.entrypoints[name].http2, yaml.entrypoints[name].http2);
        assert_eq!(
            toml.entrypoints[name].lifecycle,
            yaml.entrypoints[name].lifecycle
        );
    }
    assert_eq!(toml.services["orders"].http2, yaml.services["orders"].http2);
    assert_eq!(
        toml.services["orders"].lifecycle,
        yaml.services["orders"].lifecycle
    );
    assert_eq!(toml.lifecycle, yaml.lifecycle);
}

#[test]
fn the_effective_config_parses_back_to_itself() {
    let config = parse(FULL_YAML, Format::Yaml);
    let yaml = config.to_yaml();
    let again = parse(&yaml, Format::Yaml);
    assert_eq!(again.to_yaml(), yaml);
    assert_eq!(again.drain_timeout, config.drain_timeout);
    assert_eq!(again.lifecycle, config.lifecycle);
    assert_eq!(
        again.services["orders"].lifecycle,
        config.services["orders"].lifecycle
    );
    for name in ["web", "adaptive"] {
        assert_eq!(
            again.entrypoints[name].http2,
            config.entrypoints[name].http2
        );
        assert_eq!(
            again.entrypoints[name].lifecycle,
            config.entrypoints[name].lifecycle
        );
    }
    assert_eq!(
        again.services["orders"].http2,
        config.services["orders"].http2
    );
}

#[test]
fn defaults_are_left_to_the_runtime_except_drain_timeout() {
    let text = "\
entrypoints:
  web: { address: 127.0.0.1:0 }
services:
  s: { servers: [h2c://127.0.0.1:1] }
";
    let config = parse(text, Format::Yaml);
    assert_eq!(config.drain_timeout, Duration::from_secs(30));
    assert_eq!(config.lifecycle.accept_grace, Duration::ZERO);
    assert_eq!(config.entrypoints["web"].http2, Http2Settings::default());
    assert_eq!(config.entrypoints["web"].lifecycle, Lifecycle::default());
    assert_eq!(config.services["s"].http2, Http2Settings::default());
    let yaml = config.to_yaml();
    assert!(
        yaml.starts_with("drain_timeout: 30s\nlifecycle:\n  accept_grace: 0s\n"),
        "{yaml}"
    );
    assert!(!yaml.contains("max_requests_per_connection"), "{yaml}");
    assert!(!yaml.contains("http2"), "{yaml}");
    assert!(!yaml.contains("max_connection_age"), "{yaml}");

    let empty = parse("", Format::Toml);
    assert_eq!(empty.drain_timeout, Duration::from_secs(30));
    assert_eq!(
        empty.to_yaml(),
        "drain_timeout: 30s\nlifecycle:\n  accept_grace: 0s\nentrypoints: {}\nrouters: {}\n\
         services: {}\nmiddlewares: {}\n"
    );
}

#[test]
fn empty_http2_mappings_are_the_defaults() {
    for lines in ["    http2:\n", "    http2: {}\n"] {
        let config = parse(&with_entrypoint(lines), Format::Yaml);
        assert_eq!(config.entrypoints["web"].http2, Http2Settings::default());
    }
}

#[test]
fn sizes_are_bytes_or_binary_units() {
    for (value, want) in [
        ("65535", 65_535),
        ("\"65536\"", 65_536),
        ("64KiB", 65_536),
        ("2047MiB", 2047 << 20),
        ("2147483647B", 2_147_483_647),
    ] {
        let text = with_http2(&format!("      initial_stream_window: {value}\n"));
        let config = parse(&text, Format::Yaml);
        assert_eq!(
            config.entrypoints["web"].http2.initial_stream_window,
            Some(want),
            "{value}"
        );
    }
}

#[test]
fn http2_on_a_service_with_some_http2_server_is_fine() {
    for servers in [
        "[h2c://127.0.0.1:1]",
        "[https://api.internal]",
        "[http://a:1, h2c://b:1]",
    ] {
        let text = format!(
            "services:\n  s:\n    servers: {servers}\n    http2: {{ keepalive_interval: 5s }}\n"
        );
        let config = parse(&text, Format::Yaml);
        assert_eq!(
            config.services["s"].http2.keepalive_interval,
            Some(Duration::from_secs(5))
        );
    }
}

// === Errors ===

#[test]
fn unknown_http2_key_suggests_the_closest_key() {
    let err = one(&with_http2("      max_concurent_streams: 10\n"));
    assert_at(
        &err,
        5,
        7,
        "unknown key `max_concurent_streams` in the HTTP/2 settings of entrypoint `web`",
    );
    assert_hint(&err, "did you mean `max_concurrent_streams`?");

    let err =
        one("services:\n  s:\n    servers: [h2c://a:1]\n    http2: { keepalive_intervl: 1s }\n");
    assert_at(
        &err,
        4,
        14,
        "unknown key `keepalive_intervl` in the HTTP/2 settings of service `s`",
    );
    assert_hint(&err, "did you mean `keepalive_interval`?");

    let err = one(&with_entrypoint("    htp2: {}\n"));
    assert_at(&err, 4, 5, "unknown key `htp2` in entrypoint `web`");
    assert_hint(&err, "did you mean `http2`?");

    let err = one(&with_entrypoint("    max_conection_age: 1m\n"));
    assert_at(
        &err,
        4,
        5,
        "unknown key `max_conection_age` in entrypoint `web`",
    );
    assert_hint(&err, "did you mean `max_connection_age`?");
}

#[test]
fn window_below_the_protocol_minimum() {
    let err = one(&with_http2("      initial_stream_window: 32KiB\n"));
    assert_at(
        &err,
        5,
        30,
        "`initial_stream_window` in the HTTP/2 settings of entrypoint `web` must be 65535 to \
         2147483647 bytes, not 32KiB",
    );
    assert_hint(&err, "e.g. 1MiB");

    let err = one(&with_http2("      initial_connection_window: 65534\n"));
    assert_at(
        &err,
        5,
        34,
        "`initial_connection_window` in the HTTP/2 settings of entrypoint `web` must be 65535 \
         to 2147483647 bytes, not 65534",
    );

    // And above the maximum, or negative.
    let err = one(&with_http2("      initial_stream_window: 2048MiB\n"));
    assert_at(
        &err,
        5,
        30,
        "must be 65535 to 2147483647 bytes, not 2048MiB",
    );
    let err = one(&with_http2("      initial_stream_window: -1\n"));
    assert_at(&err, 5, 30, "must be 65535 to 2147483647 bytes, not -1");
}

#[test]
fn frame_size_out_of_range() {
    let err = one(&with_http2("      max_frame_size: 16MiB\n"));
    assert_at(
        &err,
        5,
        23,
        "`max_frame_size` in the HTTP/2 settings of entrypoint `web` must be 16384 to 16777215 \
         bytes, not 16MiB",
    );
    assert_hint(&err, "16KiB to 16MiB - 1 byte");

    let err = one(&with_http2("      max_frame_size: 1024\n"));
    assert_at(&err, 5, 23, "must be 16384 to 16777215 bytes, not 1024");
}

#[test]
fn header_list_size_out_of_range() {
    let err = one(&with_http2("      max_header_list_size: 0\n"));
    assert_at(&err, 5, 29, "must be 1 to 4294967295 bytes, not 0");
    let err = one(&with_http2("      max_header_list_size: 4096MiB\n"));
    assert_at(&err, 5, 29, "must be 1 to 4294967295 bytes, not 4096MiB");
}

#[test]
fn bad_size_unit() {
    let err = one(&with_http2("      initial_stream_window: 64KB\n"));
    assert_at(
        &err,
        5,
        30,
        "`64KB` has an unknown unit `KB`; use B, KiB or MiB",
    );
    assert_hint(&err, "65535, 64KiB, 1MiB");

    let err = one(&with_http2("      max_frame_size: 1.5MiB\n"));
    assert_at(&err, 5, 23, "`1.5MiB` is not a whole number");

    let err = one(&with_http2("      max_frame_size: true\n"));
    assert_at(
        &err,
        5,
        23,
        "expected a size for `max_frame_size` in the HTTP/2 settings of entrypoint `web`, \
         found a boolean",
    );
}

#[test]
fn max_concurrent_streams_out_of_range_or_not_an_integer() {
    let err = one(&with_http2("      max_concurrent_streams: 0\n"));
    assert_at(
        &err,
        5,
        31,
        "`max_concurrent_streams` in the HTTP/2 settings of entrypoint `web` must be 1 to \
         2147483647, not 0",
    );
    let err = one(&with_http2("      max_concurrent_streams: 2147483648\n"));
    assert_at(&err, 5, 31, "must be 1 to 2147483647, not 2147483648");
    let err = one(&with_http2("      max_concurrent_streams: 1KiB\n"));
    assert_at(
        &err,
        5,
        31,
        "expected an integer for `max_concurrent_streams` in the HTTP/2 settings of \
         entrypoint `web`, found a string",
    );
}

#[test]
fn keepalive_timeout_without_interval() {
    let err = one(&with_http2("      keepalive_timeout: 20s\n"));
    assert_at(
        &err,
        5,
        7,
        "`keepalive_timeout` in the HTTP/2 settings of entrypoint `web` has no effect without \
         `keepalive_interval`",
    );
    assert_hint(&err, "set `keepalive_interval`");
}

#[test]
fn zero_keepalive_durations() {
    let err = one(&with_http2("      keepalive_interval: 0s\n"));
    assert_at(
        &err,
        5,
        27,
        "`keepalive_interval` in the HTTP/2 settings of entrypoint `web` is zero",
    );
    assert_hint(&err, "out for no keepalive");
    let err = one(&with_http2(
        "      keepalive_interval: 1s\n      keepalive_timeout: 0ms\n",
    ));
    assert_at(&err, 6, 26, "`keepalive_timeout` in the HTTP/2 settings");
    let err = one(&with_http2("      keepalive_interval: 30\n"));
    assert_at(
        &err,
        5,
        27,
        "expected a duration string for `keepalive_interval`",
    );
}

#[test]
fn grace_without_age() {
    let err = one(&with_entrypoint("    max_connection_age_grace: 30s\n"));
    assert_at(
        &err,
        4,
        5,
        "`max_connection_age_grace` in entrypoint `web` has no effect without \
         `max_connection_age`",
    );
    assert_hint(&err, "set `max_connection_age`");
}

#[test]
fn zero_max_connection_age() {
    let err = one(&with_entrypoint("    max_connection_age: 0s\n"));
    assert_at(
        &err,
        4,
        25,
        "`max_connection_age` in entrypoint `web` is zero, which would close every connection",
    );
}

#[test]
fn adaptive_window_with_an_explicit_window() {
    let err = one(&with_http2(
        "      adaptive_window: true\n      initial_connection_window: 1MiB\n",
    ));
    assert_at(
        &err,
        6,
        7,
        "`initial_connection_window` in the HTTP/2 settings of entrypoint `web` has no effect \
         with `adaptive_window: true`: adaptive_window sizes the windows itself",
    );
    assert_hint(&err, "set `adaptive_window: false`");

    // Each explicit window is reported; with `adaptive_window: false` they are fine.
    let errors = errors(
        &with_http2(
            "      initial_stream_window: 1MiB\n      adaptive_window: true\n      \
             initial_connection_window: 1MiB\n",
        ),
        Format::Yaml,
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_at(&errors[0], 5, 7, "`initial_stream_window`");
    assert_at(&errors[1], 7, 7, "`initial_connection_window`");
    parse(
        &with_http2("      adaptive_window: false\n      initial_stream_window: 1MiB\n"),
        Format::Yaml,
    );
}

#[test]
fn http2_on_an_http1_only_service() {
    let err = one("services:\n  s:\n    servers: [http://a:1, http://b:1]\n    http2: { max_concurrent_streams: 10 }\n");
    assert_at(
        &err,
        4,
        5,
        "http2 settings have no effect: service `s` has only http:// servers",
    );
    assert_hint(&err, "h2c://host:port");

    // A server URL that is wrong is reported alone: it may have been meant as h2c://.
    let err = one("services:\n  s:\n    servers: [htp://a:1]\n    http2: {}\n");
    assert_at(&err, 3, 15, "unsupported scheme `htp://`");
}

#[test]
fn drain_timeout_zero() {
    let err = one("drain_timeout: 0s\n");
    assert_at(
        &err,
        1,
        16,
        "`drain_timeout` at top level is zero, which would reset every open request",
    );
    assert_hint(&err, "the default, 30s");

    let err = one("drain_timeout: 30\n");
    assert_at(
        &err,
        1,
        16,
        "expected a duration string for `drain_timeout` at top level, found an integer",
    );
}

#[test]
fn adaptive_window_must_be_a_boolean() {
    let err = one(&with_http2("      adaptive_window: \"yes\"\n"));
    assert_at(
        &err,
        5,
        24,
        "expected a boolean for `adaptive_window` in the HTTP/2 settings of entrypoint `web`, \
         found a string",
    );
    assert_hint(&err, "true or false");

    let err = one(&with_entrypoint("    http2: [adaptive_window]\n"));
    assert_at(
        &err,
        4,
        12,
        "expected a mapping for `http2` in entrypoint `web`, found a list",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "\
drain_timeout: 0s
entrypoints:
  web:
    address: nowhere
    http2:
      max_frame_size: 1KiB
      keepalive_timeout: 1s
    max_connection_age_grace: 1s
services:
  s:
    servers: [http://a:1]
    http2: { initial_stream_window: 1 }
";
    let errors = errors(text, Format::Yaml);
    let found: Vec<_> = errors.iter().map(|err| (err.line, err.col)).collect();
    assert_eq!(
        found,
        [(1, 16), (4, 14), (6, 23), (7, 7), (8, 5), (12, 5), (12, 37)],
        "{errors:#?}"
    );
}

#[test]
fn toml_errors_point_at_the_value() {
    let text = "\
[entrypoints.web]
address = \"127.0.0.1:0\"
http2 = { max_frame_size = \"16MiB\", adaptive_window = \"no\" }
";
    let errors = errors(text, Format::Toml);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_at(
        &errors[0],
        3,
        28,
        "must be 16384 to 16777215 bytes, not 16MiB",
    );
    assert_at(
        &errors[1],
        3,
        55,
        "expected a boolean for `adaptive_window`",
    );
}

#[test]
fn mangled_connection_settings_never_panic() {
    let cuts = FULL_YAML.char_indices().map(|(i, _)| i);
    let prefixes = cuts.clone().map(|i| FULL_YAML[..i].to_owned());
    let removals = FULL_YAML
        .char_indices()
        .map(|(i, c)| format!("{}{}", &FULL_YAML[..i], &FULL_YAML[i + c.len_utf8()..]));
    for input in prefixes.chain(removals) {
        if let Err(errors) = parse_str(&input, Format::Yaml, "t.yaml") {
            assert!(!errors.is_empty());
            for err in errors {
                assert!(err.line >= 1 && err.col >= 1, "{err}");
                assert!(err.line <= input.lines().count() + 1, "{err} in\n{input}");
            }
        }
    }
}

#[test]
fn idle_timeout_must_be_positive() {
    let err = one(&with_entrypoint("    idle_timeout: 0s\n"));
    assert!(err.message.contains("idle_timeout"), "{err}");
}

#[test]
fn services_take_connection_age_and_idle_timeout() {
    let yaml = "services:\n  s:\n    servers: [h2c://127.0.0.1:1]\n    max_connection_age: 5m\n    max_connection_age_grace: 10s\n    idle_timeout: 90s\n";
    let config = strait_config::parse_str(yaml, strait_config::Format::Yaml, "t.yaml").unwrap();
    assert_eq!(
        config.services["s"].lifecycle,
        Lifecycle {
            max_connection_age: Some(Duration::from_secs(300)),
            max_connection_age_grace: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(90)),
            max_requests_per_connection: None,
        }
    );
    let again =
        strait_config::parse_str(&config.to_yaml(), strait_config::Format::Yaml, "t.yaml").unwrap();
    assert_eq!(
        again.services["s"].lifecycle,
        config.services["s"].lifecycle
    );
    let bad = "services:\n  s:\n    servers: [h2c://127.0.0.1:1]\n    idle_timeout: 0s\n";
    let errors = strait_config::parse_str(bad, strait_config::Format::Yaml, "t.yaml").unwrap_err();
    assert_eq!((errors[0].line, errors[0].col), (4, 19), "{errors:?}");
}

// === lifecycle.accept_grace ===

#[test]
fn accept_grace_takes_a_duration_and_zero_is_the_default() {
    let config = parse("lifecycle:\n  accept_grace: 0s\n", Format::Yaml);
    assert_eq!(config.lifecycle, ProcessLifecycle::default());
    let config = parse("lifecycle:\n", Format::Yaml);
    assert_eq!(config.lifecycle.accept_grace, Duration::ZERO);
    let config = parse("[lifecycle]\naccept_grace = \"1m30s\"\n", Format::Toml);
    assert_eq!(config.lifecycle.accept_grace, Duration::from_secs(90));
    let again = parse(&config.to_yaml(), Format::Yaml);
    assert_eq!(again.lifecycle, config.lifecycle);
}

#[test]
fn bad_accept_grace_is_located() {
    let err = one("lifecycle:\n  accept_grace: 5\n");
    assert_at(
        &err,
        2,
        17,
        "expected a duration string for `accept_grace` in `lifecycle`, found an integer",
    );
    assert_hint(&err, "30s");

    let err = one("lifecycle:\n  accept_grace: 5 seconds\n");
    assert_at(&err, 2, 17, "`5 seconds`");

    let err = one("lifecycle:\n  accept_grace: -1s\n");
    assert_at(&err, 2, 17, "negative");

    let err = one("lifecycle:\n  acept_grace: 5s\n");
    assert_at(&err, 2, 3, "unknown key `acept_grace` in `lifecycle`");
    assert_hint(&err, "did you mean `accept_grace`?");

    // `drain_timeout` stays at top level.
    let err = one("lifecycle:\n  drain_timeout: 5s\n");
    assert_at(&err, 2, 3, "unknown key `drain_timeout` in `lifecycle`");
    assert_hint(&err, "`accept_grace`");

    let err = one("lifecycle: 5s\n");
    assert_at(
        &err,
        1,
        12,
        "expected a mapping for `lifecycle` at top level, found a string",
    );

    let err = one("lifecyle:\n  accept_grace: 5s\n");
    assert_at(&err, 1, 1, "unknown key `lifecyle` at top level");
    assert_hint(&err, "did you mean `lifecycle`?");

    let errors = errors("[lifecycle]\naccept_grace = 5\n", Format::Toml);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_at(
        &errors[0],
        2,
        16,
        "expected a duration string for `accept_grace`",
    );
}

// === max_requests_per_connection ===

/// A service `s` with one h2c server; `lines` go into its mapping from line 4.
fn with_service(lines: &str) -> String {
    format!("services:\n  s:\n    servers: [h2c://127.0.0.1:1]\n{lines}")
}

#[test]
fn max_requests_per_connection_is_a_positive_count() {
    let config = parse(
        &with_service("    max_requests_per_connection: 1\n"),
        Format::Yaml,
    );
    assert_eq!(
        config.services["s"].lifecycle.max_requests_per_connection,
        NonZeroU32::new(1)
    );
    let config = parse(
        &with_service("    max_requests_per_connection: 4294967295\n"),
        Format::Yaml,
    );
    assert_eq!(
        config.services["s"].lifecycle.max_requests_per_connection,
        NonZeroU32::new(u32::MAX)
    );
    // HTTP/1.1 servers take it too.
    let config = parse(
        "services:\n  s:\n    servers: [http://127.0.0.1:1]\n    max_requests_per_connection: 100\n",
        Format::Yaml,
    );
    assert_eq!(
        config.services["s"].lifecycle.max_requests_per_connection,
        NonZeroU32::new(100)
    );
    assert!(
        config
            .to_yaml()
            .contains("\n    max_requests_per_connection: 100\n"),
        "{}",
        config.to_yaml()
    );
}

#[test]
fn bad_max_requests_per_connection_is_located() {
    let err = one(&with_service("    max_requests_per_connection: 0\n"));
    assert_at(
        &err,
        4,
        34,
        "`max_requests_per_connection` in service `s` must be 1 to 4294967295, not 0",
    );
    assert_hint(&err, "leave `max_requests_per_connection` out for no limit");

    let err = one(&with_service("    max_requests_per_connection: -3\n"));
    assert_at(&err, 4, 34, "must be 1 to 4294967295, not -3");

    let err = one(&with_service(
        "    max_requests_per_connection: 4294967296\n",
    ));
    assert_at(&err, 4, 34, "not 4294967296");

    let err = one(&with_service("    max_requests_per_connection: \"100\"\n"));
    assert_at(
        &err,
        4,
        34,
        "expected an integer for `max_requests_per_connection` in service `s`, found a string",
    );
    assert_hint(&err, "without quotes");

    let err = one(&with_service("    max_requests_per_conection: 100\n"));
    assert_at(&err, 4, 5, "unknown key `max_requests_per_conection`");
    assert_hint(&err, "did you mean `max_requests_per_connection`?");

    // A service key, not an entrypoint one.
    let err = one(&with_entrypoint("    max_requests_per_connection: 100\n"));
    assert_at(
        &err,
        4,
        5,
        "unknown key `max_requests_per_connection` in entrypoint `web`",
    );

    let errors = errors(
        "[services.s]\nservers = [\"h2c://127.0.0.1:1\"]\nmax_requests_per_connection = 0\n",
        Format::Toml,
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_at(&errors[0], 3, 31, "not 0");
}
