//! One test per kind of config error, each pinning file, line, column and message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

use strait_config::{parse_str, ConfigError, Format};

/// A valid file to break one piece of: `{}` is replaced by extra lines in `routers.r`.
fn with_router(lines: &str) -> String {
    format!(
        "\
entrypoints:
  web: {{ address: 127.0.0.1:0 }}
services:
  orders: {{ servers: [h2c://127.0.0.1:50051] }}
routers:
  r:
    service: orders
{lines}"
    )
}

/// Line 3, column 15 holds the URL.
fn server_error(url: &str) -> ConfigError {
    let text = format!("services:\n  s:\n    servers: [\"{url}\"]\n");
    let err = one(&text);
    assert_eq!((err.line, err.col), (3, 15), "{err}");
    err
}

#[test]
fn unknown_keys_suggest_the_closest_key() {
    let errors = errors(
        "entrypoints:\n  web:\n    adress: 127.0.0.1:8080\n",
        Format::Yaml,
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_at(&errors[0], 2, 3, "missing `address` in entrypoint `web`");
    assert_at(&errors[1], 3, 5, "unknown key `adress` in entrypoint `web`");
    assert_hint(&errors[1], "did you mean `address`?");
    assert_eq!(
        errors[1].to_string(),
        "strait.yaml:3:5: unknown key `adress` in entrypoint `web` (did you mean `address`?)"
    );

    let err = one(&with_router("    matc: {}\n"));
    assert_at(&err, 8, 5, "unknown key `matc` in router `r`");
    assert_hint(&err, "did you mean `match`?");

    let err = one(&with_router("    match: { grpc_servce: a.B }\n"));
    assert_at(
        &err,
        8,
        14,
        "unknown key `grpc_servce` in the match of router `r`",
    );
    assert_hint(&err, "did you mean `grpc_service`?");

    let err = one("services:\n  s:\n    servers:\n      - { url: h2c://a, wieght: 2 }\n");
    assert_at(
        &err,
        4,
        25,
        "unknown key `wieght` in server 1 of service `s`",
    );
    assert_hint(&err, "did you mean `weight`?");
}

#[test]
fn unknown_keys_far_from_any_list_the_valid_keys() {
    let err = one("logging: { level: debug }\n");
    assert_at(&err, 1, 1, "unknown key `logging` at top level");
    assert_hint(
        &err,
        "valid keys are `admin`, `entrypoints`, `routers`, `services`, `middlewares`",
    );
}

#[test]
fn wrong_types_say_what_was_expected() {
    let err = one("entrypoints: [web]\n");
    assert_at(
        &err,
        1,
        14,
        "expected a mapping for `entrypoints`, found a list",
    );

    let err = one("admin:\n  address: 9901\n");
    assert_at(
        &err,
        2,
        12,
        "expected a string for `address` in `admin`, found an integer",
    );
    assert_hint(&err, "quotes");

    let err = one(&with_router("    priority: high\n"));
    assert_at(
        &err,
        8,
        15,
        "expected an integer for `priority` in router `r`, found a string",
    );

    let err = one(&with_router("    entrypoints: web\n"));
    assert_at(
        &err,
        8,
        18,
        "expected a list for `entrypoints` in router `r`",
    );

    let err = one("services:\n  s:\n    servers: [[h2c://a]]\n");
    assert_at(
        &err,
        3,
        15,
        "expected a URL or a mapping in server 1 of service `s`",
    );

    let err = one("- a\n- b\n");
    assert_at(&err, 1, 1, "expected a mapping at top level, found a list");
}

#[test]
fn missing_required_keys_are_reported_at_their_owner() {
    // `admin` alone means the loopback default, not a missing key.
    let config = strait_config::parse_str("admin: {}\n", Format::Yaml, "strait.yaml").unwrap();
    assert_eq!(
        config.admin.unwrap().address,
        "127.0.0.1:9901".parse().unwrap()
    );

    let err = one("services:\n  s: { servers: [] }\n");
    assert_at(&err, 2, 17, "service `s` has no servers");

    let err = one("services:\n  s:\n    servers:\n      - weight: 2\n");
    assert_at(&err, 4, 9, "missing `url` in server 1 of service `s`");

    let err = one("services: { s: { servers: [h2c://a] } }\nrouters:\n  r: { match: {} }\n");
    assert_at(&err, 3, 3, "missing `service` in router `r`");
}

#[test]
fn tls_without_certificates_is_reported_at_the_tls_key() {
    let err =
        one("entrypoints:\n  websecure:\n    address: 0.0.0.0:8443\n    tls:\n      alpn: [h2]\n");
    assert_at(
        &err,
        4,
        5,
        "missing `certificates` in the TLS settings of entrypoint `websecure`",
    );
}

#[test]
fn bad_listener_addresses() {
    let err = one("entrypoints:\n  web: { address: 'example.com:80' }\n");
    assert_at(&err, 2, 19, "invalid address `example.com:80`");
    assert_hint(&err, "use host:port, e.g. 127.0.0.1:8080");

    let err = one("entrypoints:\n  web: { address: '127.0.0.1' }\n");
    assert_at(&err, 2, 19, "it has no port");

    let err = one("entrypoints:\n  web: { address: ':8080' }\n");
    assert_at(&err, 2, 19, "it has no host");
    assert_hint(&err, "0.0.0.0:8080");
}

#[test]
fn bad_url_scheme() {
    let err = server_error("grpc://127.0.0.1:50051");
    assert!(
        err.message.contains("unsupported scheme `grpc://`"),
        "{err}"
    );
    assert_hint(
        &err,
        "use h2c:// for HTTP/2 or http:// for HTTP/1.1 backends",
    );

    let err = server_error("127.0.0.1:50051");
    assert!(err.message.contains("is not a server URL"), "{err}");
    assert_hint(&err, "h2c://host:port");
}

#[test]
fn bad_https_url_port() {
    let err = server_error("https://api.example.com:0");
    assert_eq!(
        err.message,
        "server URL `https://api.example.com:0` has an invalid port `0`"
    );
    assert_eq!(
        err.hint.as_deref(),
        Some("ports are 1-65535; leave the port out for 443")
    );
}

#[test]
fn server_urls_have_no_path() {
    let err = server_error("h2c://127.0.0.1:50051/api");
    assert!(err.message.contains("has a path (`/api`)"), "{err}");
    // A lone trailing slash is not a path.
    parse_str(
        "services:\n  s:\n    servers: [\"h2c://127.0.0.1:50051/\"]\n",
        Format::Yaml,
        "t",
    )
    .unwrap();
}

#[test]
fn bad_url_port() {
    let err = server_error("h2c://127.0.0.1:70000");
    assert!(err.message.contains("invalid port `70000`"), "{err}");
    let err = server_error("h2c://127.0.0.1:0");
    assert!(err.message.contains("invalid port `0`"), "{err}");
    let err = server_error("h2c://127.0.0.1:");
    assert!(err.message.contains("invalid port ``"), "{err}");
}

#[test]
fn url_without_host() {
    let err = server_error("h2c://:50051");
    assert!(err.message.contains("has no host"), "{err}");
    let err = server_error("http://");
    assert!(err.message.contains("has no host"), "{err}");
}

#[test]
fn zero_weight() {
    let err = one("services:\n  s:\n    servers:\n      - { url: h2c://a, weight: 0 }\n");
    assert_at(
        &err,
        4,
        33,
        "weight 0 in server 1 of service `s` is less than 1",
    );
    let err = one("services:\n  s:\n    servers:\n      - { url: h2c://a, weight: 1.5 }\n");
    assert_at(&err, 4, 33, "expected an integer for `weight`");
}

#[test]
fn duplicate_servers() {
    let err = one("services:\n  s:\n    servers: [h2c://a, h2c://b, 'h2c://a:80/']\n");
    assert_at(
        &err,
        3,
        33,
        "server h2c://a:80 is listed twice in service `s`",
    );
}

#[test]
fn router_naming_a_missing_service() {
    let err =
        one("services:\n  orders: { servers: [h2c://a] }\nrouters:\n  r: { service: order }\n");
    assert_at(
        &err,
        4,
        17,
        "router `r` names service `order`, which is not defined",
    );
    assert_hint(&err, "did you mean `orders`?");

    let err = one(
        "services:\n  orders: { servers: [h2c://a] }\n  users: { servers: [h2c://b] }\n\
         routers:\n  r: { service: payments }\n",
    );
    assert_at(
        &err,
        5,
        17,
        "names service `payments`, which is not defined",
    );
    assert_hint(&err, "defined services: orders, users");

    let err = one("routers:\n  r: { service: payments }\n");
    assert_hint(&err, "no services are defined");
}

#[test]
fn a_broken_service_is_reported_once() {
    // The router's reference resolves: the service is defined, only its server is wrong.
    let err = one("services:\n  s: { servers: [ftp://a] }\nrouters:\n  r: { service: s }\n");
    assert_at(&err, 2, 18, "unsupported scheme");
}

#[test]
fn router_naming_missing_entrypoints() {
    let errors = errors(
        &with_router("    entrypoints: [web, webb, grpc]\n"),
        Format::Yaml,
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_at(
        &errors[0],
        8,
        24,
        "router `r` names entrypoint `webb`, which is not defined",
    );
    assert_hint(&errors[0], "did you mean `web`?");
    assert_at(&errors[1], 8, 30, "names entrypoint `grpc`");
    assert_hint(&errors[1], "defined entrypoints: web");

    let err = one(&with_router("    entrypoints: []\n"));
    assert_at(&err, 8, 18, "router `r` has an empty `entrypoints` list");

    let err = one(&with_router("    entrypoints: [web, web]\n"));
    assert_at(&err, 8, 24, "entrypoint `web` is listed twice");
}

#[test]
fn router_naming_a_middleware() {
    let err = one(&with_router("    middlewares: [auth]\n"));
    assert_at(
        &err,
        8,
        19,
        "router `r` names middleware `auth`, which is not defined",
    );
    assert_hint(&err, "no middleware kinds are available in this release");

    let err = one("middlewares:\n  auth: { basic_auth: {} }\n");
    assert_at(
        &err,
        2,
        3,
        "unknown middleware `auth`: no middleware kinds are available in this release",
    );
    assert_hint(&err, "remove `auth`");
}

#[test]
fn duplicate_addresses_between_entrypoints() {
    let err = one(
        "entrypoints:\n  web: { address: 127.0.0.1:8080 }\n  other: { address: 127.0.0.1:8080 }\n",
    );
    assert_at(
        &err,
        3,
        21,
        "address 127.0.0.1:8080 is already used by entrypoint `web`",
    );

    let err = one(
        "entrypoints:\n  web: { address: 0.0.0.0:8080 }\n  other: { address: 127.0.0.1:8080 }\n",
    );
    assert_at(
        &err,
        3,
        21,
        "address 127.0.0.1:8080 overlaps 0.0.0.0:8080 of entrypoint `web`",
    );

    // Port 0 asks the kernel for a free port each time, so those never clash.
    parse_str(
        "entrypoints:\n  a: { address: 127.0.0.1:0 }\n  b: { address: 127.0.0.1:0 }\n",
        Format::Yaml,
        "t",
    )
    .unwrap();
}

#[test]
fn duplicate_addresses_with_admin() {
    let err = one(
        "entrypoints:\n  web: { address: 127.0.0.1:9901 }\nadmin: { address: localhost:9901 }\n",
    );
    assert_at(
        &err,
        3,
        19,
        "address 127.0.0.1:9901 is already used by entrypoint `web`",
    );

    let err = one(
        "admin: { address: 127.0.0.1:9901 }\nentrypoints:\n  web: { address: 127.0.0.1:9901 }\n",
    );
    assert_at(
        &err,
        3,
        19,
        "address 127.0.0.1:9901 is already used by the admin listener",
    );
}

#[test]
fn bad_durations() {
    let cases = [
        ("'5'", "`5` has no unit"),
        ("5x", "`5x` has an unknown unit `x`"),
        ("-1s", "`-1s` is negative"),
        ("''", "empty duration"),
        (
            "30",
            "expected a duration string for `timeout` in router `r`, found an integer",
        ),
        ("0s", "`timeout` in router `r` is zero"),
    ];
    for (value, message) in cases {
        let err = one(&with_router(&format!("    timeout: {value}\n")));
        assert_at(&err, 8, 14, message);
        if value != "0s" {
            assert_hint(&err, "durations look like 250ms, 30s, 5m, 1h");
        }
    }
}

#[test]
fn bad_regex() {
    let err = one(&with_router(
        "    match:\n      headers:\n        x-v: { regex: 'a(b' }\n",
    ));
    assert_at(&err, 10, 23, "invalid regex `a(b`: regex parse error");
    assert!(err.message.contains("unclosed group"), "{err}");

    let err = one(&with_router(
        "    match:\n      query:\n        v: { regex: '[' }\n",
    ));
    assert_at(&err, 10, 21, "invalid regex `[`");
}

#[test]
fn bad_header_name() {
    let err = one(&with_router(
        "    match:\n      headers:\n        'x v': a\n",
    ));
    assert_at(&err, 10, 9, "`x v` is not a valid header name");

    let err = one(&with_router(
        "    match:\n      headers:\n        ':authority': a\n",
    ));
    assert_at(&err, 10, 9, "`:authority` is not a valid header name");

    let err = one(&with_router(
        "    match:\n      headers:\n        X-Env: a\n        x-env: b\n",
    ));
    assert_at(&err, 11, 9, "header `x-env` is matched twice");
}

#[test]
fn bad_value_matches() {
    let err = one(&with_router(
        "    match:\n      headers:\n        x-a: { exact: a, regex: b }\n",
    ));
    assert_at(
        &err,
        10,
        14,
        "needs exactly one of `exact`, `regex` or `present`",
    );

    let err = one(&with_router(
        "    match:\n      headers:\n        x-a: { present: false }\n",
    ));
    assert_at(&err, 10, 25, "must be `true`");

    let err = one(&with_router("    match:\n      headers:\n        x-a: 2\n"));
    assert_at(
        &err,
        10,
        14,
        "expected a string or a mapping for header `x-a` in the match of router `r`, found an integer",
    );
    assert_hint(&err, "quote numbers");

    let err = one(&with_router(
        "    match:\n      headers:\n        x-a: \"a\\nb\"\n",
    ));
    assert_at(&err, 10, 14, "is not a valid header value");

    let err = one(&with_router(
        "    match:\n      query:\n        q: { regx: a }\n",
    ));
    assert_at(&err, 10, 14, "unknown key `regx` in query parameter `q`");
    assert_hint(&err, "did you mean `regex`?");
}

#[test]
fn bad_host_pattern() {
    let cases = [
        ("a.*.com", "`*` that is not a whole first label"),
        ("'*'", "`*` that is not a whole first label"),
        ("example.com:8080", "has a port"),
        ("''", "empty host"),
        ("'exa mple.com'", "is not a valid host name"),
    ];
    for (value, message) in cases {
        let err = one(&with_router(&format!("    match:\n      host: {value}\n")));
        assert_at(&err, 9, 13, message);
    }
}

#[test]
fn bad_match_values() {
    let cases = [
        ("path: api", "`path` `api` does not start with `/`"),
        (
            "path_prefix: 'api/'",
            "`path_prefix` `api/` does not start with `/`",
        ),
        ("path: '/a?b=1'", "has a query or fragment"),
        (
            "grpc_service: shop/Orders",
            "`grpc_service` `shop/Orders` contains `/`",
        ),
        ("grpc_method: ''", "empty `grpc_method`"),
        ("method: 'GE T'", "`GE T` is not an HTTP method"),
    ];
    for (line, message) in cases {
        let err = one(&with_router(&format!("    match:\n      {line}\n")));
        assert_eq!(err.line, 9, "{err}");
        assert!(err.message.contains(message), "{err} lacks {message:?}");
    }
    let err = one(&with_router("    match:\n      method: [GET, 'P T']\n"));
    assert_at(&err, 9, 21, "`P T` is not an HTTP method");
}

#[test]
fn invalid_names() {
    let err = one("services:\n  'my service': { servers: [h2c://a] }\n");
    assert_at(&err, 2, 3, "invalid service name `my service`");
    assert_hint(&err, "names use letters, digits, `_`, `.` and `-`");
}

#[test]
fn yaml_syntax_error() {
    let err = one("entrypoints:\n  web: { address: 127.0.0.1:80\nrouters: {}\n");
    assert_eq!(err.file, "strait.yaml");
    assert_at(&err, 3, 8, "YAML syntax error");
}

#[test]
fn toml_syntax_error() {
    let errors = errors(
        "[entrypoints.web]\naddress = 127.0.0.1:8080\n",
        Format::Toml,
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].file, "strait.toml");
    // The parser stops at the second `.`, where the text stops being a number.
    assert_at(&errors[0], 2, 16, "TOML syntax error");
}

#[test]
fn duplicate_yaml_key() {
    let errors = errors(
        "entrypoints:\n  web: { address: 127.0.0.1:80 }\n  web: { address: 127.0.0.1:81 }\n",
        Format::Yaml,
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_at(
        &errors[0],
        3,
        3,
        "duplicate key `web` (first defined at line 2, column 3)",
    );
}

const MANY_ERRORS_YAML: &str = "\
admin:
  adress: 127.0.0.1:9901
entrypoints:
  web:
    address: 127.0.0.1:8080
  web2:
    address: 127.0.0.1:8080
routers:
  orders:
    entrypoints: [web, nope]
    match:
      host: 'a.*.b'
      headers:
        x-v: { regex: '(' }
    service: orderz
    timeout: 5
services:
  orders:
    servers:
      - htps://a
      - { url: h2c://b, weight: 0 }
";

const MANY_ERRORS_TOML: &str = r#"[admin]
adress = "127.0.0.1:9901"

[entrypoints.web]
address = "127.0.0.1:8080"

[entrypoints.web2]
address = "127.0.0.1:8080"

[routers.orders]
entrypoints = ["web", "nope"]
service = "orderz"
timeout = 5

[routers.orders.match]
host = "a.*.b"
headers = { x-v = { regex = "(" } }

[[services.orders.servers]]
url = "htps://a"

[[services.orders.servers]]
url = "h2c://b"
weight = 0
"#;

#[test]
fn every_error_in_a_file_is_reported_in_order() {
    let errors = errors(MANY_ERRORS_YAML, Format::Yaml);
    let found: Vec<(usize, usize, &str)> = errors
        .iter()
        .map(|e| (e.line, e.col, e.message.as_str()))
        .collect();
    let want = [
        (2, 3, "unknown key `adress` in `admin`"),
        (
            7,
            14,
            "address 127.0.0.1:8080 is already used by entrypoint `web`",
        ),
        (10, 24, "names entrypoint `nope`"),
        (12, 13, "`*` that is not a whole first label"),
        (14, 23, "invalid regex `(`"),
        (15, 14, "names service `orderz`"),
        (16, 14, "expected a duration string"),
        (20, 9, "unsupported scheme `htps://`"),
        (21, 33, "weight 0"),
    ];
    assert_eq!(found.len(), want.len(), "{errors:#?}");
    for (found, want) in found.iter().zip(want) {
        assert_eq!((found.0, found.1), (want.0, want.1), "{found:?}");
        assert!(found.2.contains(want.2), "{found:?} lacks {:?}", want.2);
    }
}

#[test]
fn the_same_errors_in_toml_have_toml_locations() {
    let errors = errors(MANY_ERRORS_TOML, Format::Toml);
    let found: Vec<(usize, usize, &str)> = errors
        .iter()
        .map(|e| (e.line, e.col, e.message.as_str()))
        .collect();
    let want = [
        (2, 1, "unknown key `adress` in `admin`"),
        (
            8,
            11,
            "address 127.0.0.1:8080 is already used by entrypoint `web`",
        ),
        (11, 23, "names entrypoint `nope`"),
        (12, 11, "names service `orderz`"),
        (13, 11, "expected a duration string"),
        (16, 8, "`*` that is not a whole first label"),
        (17, 29, "invalid regex `(`"),
        (20, 7, "unsupported scheme `htps://`"),
        (24, 10, "weight 0"),
    ];
    assert_eq!(found.len(), want.len(), "{errors:#?}");
    for (found, want) in found.iter().zip(want) {
        assert_eq!((found.0, found.1), (want.0, want.1), "{found:?}");
        assert!(found.2.contains(want.2), "{found:?} lacks {:?}", want.2);
    }
}
