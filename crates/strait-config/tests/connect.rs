//! A service's `connect_timeout`: how long opening a connection to one of its servers may take.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

use std::time::Duration;

use strait_config::{parse_str, Config, Format};

fn parse(text: &str, format: Format) -> Config {
    parse_str(text, format, "strait").unwrap_or_else(|errors| panic!("{text}\n{errors:#?}"))
}

/// A service `s` whose mapping holds `lines` from line 4 (indented by 4).
fn service(lines: &str) -> String {
    format!("services:\n  s:\n    servers: [h2c://127.0.0.1:1]\n{lines}")
}

#[test]
fn connect_timeout_defaults_to_5s_and_is_shown() {
    let config = parse(&service(""), Format::Yaml);
    assert_eq!(config.services["s"].connect_timeout, Duration::from_secs(5));
    let yaml = config.to_yaml();
    assert!(
        yaml.contains("        weight: 1\n    connect_timeout: 5s\n"),
        "{yaml}"
    );
}

#[test]
fn connect_timeout_is_read_in_yaml_and_toml_and_round_trips() {
    let config = parse(&service("    connect_timeout: 250ms\n"), Format::Yaml);
    assert_eq!(
        config.services["s"].connect_timeout,
        Duration::from_millis(250)
    );
    let toml = parse(
        "[services.s]\nservers = [\"h2c://127.0.0.1:1\"]\nconnect_timeout = \"250ms\"\n",
        Format::Toml,
    );
    assert_eq!(toml.to_yaml(), config.to_yaml());
    let again = parse(&config.to_yaml(), Format::Yaml);
    assert_eq!(
        again.services["s"].connect_timeout,
        Duration::from_millis(250)
    );
    assert!(config.to_yaml().contains("    connect_timeout: 250ms\n"));
}

#[test]
fn zero_connect_timeout_is_refused_with_a_hint() {
    let err = one(&service("    connect_timeout: 0s\n"));
    assert_at(
        &err,
        4,
        22,
        "`connect_timeout` in service `s` is zero, which would fail every connection before it opens",
    );
    assert_hint(&err, "leave `connect_timeout` out for the default, 5s");
}

#[test]
fn connect_timeout_must_be_a_duration() {
    let err = one(&service("    connect_timeout: 5\n"));
    assert_at(
        &err,
        4,
        22,
        "expected a duration string for `connect_timeout` in service `s`",
    );
    assert_hint(&err, "durations look like 250ms, 30s");
    let err = one(&service("    connect_timeout: 5 seconds\n"));
    assert_at(&err, 4, 22, "`5 seconds`");
    let err = one(&service("    conect_timeout: 2s\n"));
    assert_at(&err, 4, 5, "unknown key `conect_timeout` in service `s`");
    assert_hint(&err, "did you mean `connect_timeout`?");
}

/// A bad connect_timeout does not hide the service's other problems.
#[test]
fn connect_timeout_errors_come_with_the_others() {
    let errors = errors(
        "services:\n  s:\n    servers: [h2c://127.0.0.1:1]\n    connect_timeout: 0s\n    panic_mode: never\n",
        Format::Yaml,
    );
    let found: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.col)).collect();
    assert_eq!(found, [(4, 22), (5, 17)], "{errors:#?}");
}
