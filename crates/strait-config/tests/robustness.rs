//! Broken input gets errors, never a panic: every prefix of a real config, and every text
//! with one character removed, in both formats.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strait_config::{parse_str, Format};

const YAML: &str = r#"admin: { address: "127.0.0.1:9901" }
entrypoints:
  web:
    address: 0.0.0.0:8080
routers:
  orders: &r
    entrypoints: [web]
    match:
      host: "*.example.com"
      method: [GET, post]
      headers: { x-a: { regex: '^a(b|c)$' }, x-b: v, x-c: { present: true } }
      query: { q: { exact: "1" } }
    service: orders
    priority: 3
    timeout: 1m30s
  copy: *r
services:
  orders:
    servers:
      - h2c://[::1]:50051
      - { url: "http://a.b:80/", weight: 2 }
middlewares: {}
"#;

const TOML: &str = r#"admin = { address = "127.0.0.1:9901" }
[entrypoints.web]
address = "0.0.0.0:8080"
[routers.orders]
entrypoints = ["web"]
service = "orders"
priority = 3
timeout = "1m30s"
[routers.orders.match]
host = "*.example.com"
method = ["GET", "post"]
headers = { x-a = { regex = '^a(b|c)$' }, x-b = "v" }
query.q.exact = "1"
[[services.orders.servers]]
url = "h2c://[::1]:50051"
[[services.orders.servers]]
url = "http://a.b:80/"
weight = 2
"#;

/// TLS settings; the paths are relative to the temp dir the test names the file in.
const TLS_YAML: &str = r#"entrypoints:
  websecure:
    address: 0.0.0.0:8443
    tls:
      certificates:
        - { cert_file: c.pem, key_file: c.key, default: true }
      alpn: [h2, http/1.1]
      min_version: 1.3
      cipher_suites: [TLS13_AES_128_GCM_SHA256]
      handshake_timeout: 5s
      client_auth: { mode: require, ca_file: ca.pem, forward_header: x-client }
      fault: { delay: { duration: 2s, percent: 20 } }
routers:
  r: { match: { client_cert_san: a.example.org }, service: s }
services:
  s:
    servers: [https://a, "https://[::1]:8443"]
    connect_timeout: 2s
    tls: { server_name: a, ca_file: ca.pem, cert_file: c.pem, key_file: c.key, fault: { abort: { percent: 1.5 }, delay: { duration: 1s } } }
"#;

fn mangled(text: &str) -> impl Iterator<Item = String> + '_ {
    let cuts = text.char_indices().map(|(i, _)| i);
    let prefixes = cuts.clone().map(|i| text[..i].to_owned());
    let removals = text
        .char_indices()
        .map(|(i, c)| format!("{}{}", &text[..i], &text[i + c.len_utf8()..]));
    prefixes.chain(removals)
}

#[test]
fn the_originals_are_valid() {
    let yaml = parse_str(YAML, Format::Yaml, "t.yaml").unwrap();
    let toml = parse_str(TOML, Format::Toml, "t.toml").unwrap();
    assert_eq!(yaml.routers.len(), 2);
    assert_eq!(toml.routers.len(), 1);
}

#[test]
fn mangled_tls_settings_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["c.pem", "c.key", "ca.pem"] {
        std::fs::write(dir.path().join(file), "x").unwrap();
    }
    let file = dir.path().join("strait.yaml").display().to_string();
    parse_str(TLS_YAML, Format::Yaml, &file).unwrap();
    for input in mangled(TLS_YAML) {
        if let Err(errors) = parse_str(&input, Format::Yaml, &file) {
            assert!(!errors.is_empty());
            for err in errors {
                assert!(err.line >= 1 && err.col >= 1, "{err}");
                assert!(err.line <= input.lines().count() + 1, "{err} in\n{input}");
            }
        }
    }
}

#[test]
fn mangled_text_never_panics() {
    for (text, format) in [(YAML, Format::Yaml), (TOML, Format::Toml)] {
        for input in mangled(text) {
            if let Err(errors) = parse_str(&input, format, "t") {
                assert!(!errors.is_empty());
                for err in errors {
                    assert!(err.line >= 1 && err.col >= 1, "{err}");
                    assert!(err.line <= input.lines().count() + 1, "{err} in\n{input}");
                }
            }
        }
    }
}
