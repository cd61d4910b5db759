//! The design document's example, in YAML and TOML, and the effective-config round trip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use strait_config::{parse_str, Format, HostMatch, UpstreamScheme, ValueMatch};

const EXAMPLE_YAML: &str = r#"
admin:
  address: 127.0.0.1:9901          # /metrics, /api/..., /healthz, /readyz, /dashboard/

entrypoints:
  web:
    address: 0.0.0.0:8080          # plaintext: HTTP/1.1 + h2c (prior knowledge and Upgrade)
  websecure:
    address: 0.0.0.0:8443

routers:
  orders:
    entrypoints: [web, websecure]  # default: all
    match: { grpc_service: shop.OrderService }   # also host, path, path_prefix, grpc_method, method, headers, query
    service: orders
    middlewares: []

services:
  orders:
    servers:
      - url: h2c://127.0.0.1:50051     # h2c://, http:// (HTTP/1.1), https:// (TLS, ALPN h2 then http/1.1)
      - { url: h2c://127.0.0.1:50052, weight: 2 }

middlewares: {}
"#;

const EXAMPLE_TOML: &str = r#"
[admin]
address = "127.0.0.1:9901"

[entrypoints.web]
address = "0.0.0.0:8080"

[entrypoints.websecure]
address = "0.0.0.0:8443"

[routers.orders]
entrypoints = ["web", "websecure"]
match = { grpc_service = "shop.OrderService" }
service = "orders"
middlewares = []

[[services.orders.servers]]
url = "h2c://127.0.0.1:50051"

[[services.orders.servers]]
url = "h2c://127.0.0.1:50052"
weight = 2

[middlewares]
"#;

const EXAMPLE_EFFECTIVE: &str = "\
drain_timeout: 30s
lifecycle:
  accept_grace: 0s
admin:
  address: 127.0.0.1:9901
entrypoints:
  web:
    address: 0.0.0.0:8080
  websecure:
    address: 0.0.0.0:8443
routers:
  orders:
    entrypoints: [web, websecure]
    match:
      grpc_service: shop.OrderService
    service: orders
services:
  orders:
    servers:
      - url: h2c://127.0.0.1:50051
        weight: 1
      - url: h2c://127.0.0.1:50052
        weight: 2
    connect_timeout: 5s
middlewares: {}
";

#[test]
fn the_design_example_parses() {
    let config = parse_str(EXAMPLE_YAML, Format::Yaml, "strait.yaml").unwrap();
    assert_eq!(
        config.admin.unwrap().address,
        "127.0.0.1:9901".parse().unwrap()
    );
    let names: Vec<_> = config.entrypoints.keys().cloned().collect();
    assert_eq!(names, ["web", "websecure"]);
    assert_eq!(
        config.entrypoints["websecure"].address,
        "0.0.0.0:8443".parse().unwrap()
    );
    let router = &config.routers["orders"];
    assert_eq!(router.entrypoints, ["web", "websecure"]);
    assert_eq!(
        router.matcher.grpc_service.as_deref(),
        Some("shop.OrderService")
    );
    assert_eq!(router.service, "orders");
    assert_eq!(router.priority, None);
    assert_eq!(router.timeout, None);
    let servers = &config.services["orders"].servers;
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0].url.scheme, UpstreamScheme::H2c);
    assert_eq!(servers[0].url.host, "127.0.0.1");
    assert_eq!(servers[0].url.port, 50051);
    assert_eq!(servers[0].weight, 1);
    assert_eq!(servers[1].url.port, 50052);
    assert_eq!(servers[1].weight, 2);
}

#[test]
fn the_design_example_in_toml_is_the_same_config() {
    let yaml = parse_str(EXAMPLE_YAML, Format::Yaml, "strait.yaml").unwrap();
    let toml = parse_str(EXAMPLE_TOML, Format::Toml, "strait.toml").unwrap();
    assert_eq!(toml.to_yaml(), yaml.to_yaml());
    assert_eq!(yaml.to_yaml(), EXAMPLE_EFFECTIVE);
}

#[test]
fn router_entrypoints_default_to_all_in_file_order() {
    let text = "
entrypoints:
  b: { address: 127.0.0.1:0 }
  a: { address: 127.0.0.1:0 }
routers:
  r: { service: s }
services:
  s: { servers: [h2c://127.0.0.1:1] }
";
    let config = parse_str(text, Format::Yaml, "t.yaml").unwrap();
    assert_eq!(config.routers["r"].entrypoints, ["b", "a"]);
    assert!(config.to_yaml().contains("    entrypoints: [b, a]\n"));
}

#[test]
fn empty_documents_are_empty_configs() {
    for (text, format) in [
        ("", Format::Yaml),
        ("# nothing yet\n", Format::Yaml),
        ("~\n", Format::Yaml),
        ("", Format::Toml),
    ] {
        let config = parse_str(text, format, "t").unwrap();
        assert!(config.admin.is_none());
        assert!(config.entrypoints.is_empty());
        assert!(config.routers.is_empty());
        assert!(config.services.is_empty());
    }
    let config = parse_str(
        "entrypoints:\nrouters: {}\nmiddlewares:\n",
        Format::Yaml,
        "t",
    )
    .unwrap();
    assert!(config.entrypoints.is_empty());
}

const FULL_YAML: &str = r#"
admin: { address: "[::1]:9901" }
entrypoints:
  web: { address: localhost:8080 }
  grpc: { address: "0.0.0.0:0" }
routers:
  everything:
    service: fallback
  api:
    entrypoints: [grpc]
    match:
      host: "*.Example.COM"
      path_prefix: /api/
      method: [get, POST]
      headers:
        X-Env: prod
        x-version: { regex: '^v[0-9]+(\.[0-9]+)?$' }
        x-trace: { present: true }
        x-quoted: { exact: 'say "hi"' }
      query:
        debug: { present: true }
        "weird key": "1"
    service: api
    priority: 10
    timeout: 1m30s
  grpc:
    match:
      host: api.example.com
      path: /shop.OrderService/PlaceOrder
      grpc_service: shop.OrderService
      grpc_method: PlaceOrder
      method: post
    service: "true"
    timeout: 250ms
services:
  fallback:
    servers: ["http://backend.local/"]
  api:
    servers:
      - h2c://[2001:db8::1]:50051
      - { url: "http://10.0.0.2:8080", weight: 3 }
  "true":
    servers: [h2c://127.0.0.1:7]
"#;

#[test]
fn every_setting_is_read() {
    let config = parse_str(FULL_YAML, Format::Yaml, "t.yaml").unwrap();
    assert_eq!(
        config.entrypoints["web"].address,
        "127.0.0.1:8080".parse().unwrap()
    );
    assert_eq!(config.routers["everything"].entrypoints, ["web", "grpc"]);
    let api = &config.routers["api"];
    assert_eq!(api.entrypoints, ["grpc"]);
    let m = &api.matcher;
    assert_eq!(m.host, Some(HostMatch::Wildcard(".example.com".into())));
    assert_eq!(m.path_prefix.as_deref(), Some("/api/"));
    assert_eq!(m.methods, [http::Method::GET, http::Method::POST]);
    assert_eq!(m.headers.len(), 4);
    assert_eq!(m.headers[0].0, "x-env");
    assert!(matches!(&m.headers[0].1, ValueMatch::Exact(v) if v == "prod"));
    assert!(matches!(&m.headers[1].1, ValueMatch::Regex(r) if r.is_match("v1.2")));
    assert!(matches!(m.headers[2].1, ValueMatch::Present));
    assert!(matches!(&m.headers[3].1, ValueMatch::Exact(v) if v == "say \"hi\""));
    assert_eq!(m.query[1].0, "weird key");
    assert!(matches!(&m.query[1].1, ValueMatch::Exact(v) if v == "1"));
    assert_eq!(api.priority, Some(10));
    assert_eq!(api.timeout, Some(Duration::from_secs(90)));
    let grpc = &config.routers["grpc"];
    assert_eq!(
        grpc.matcher.host,
        Some(HostMatch::Exact("api.example.com".into()))
    );
    assert_eq!(grpc.matcher.grpc_method.as_deref(), Some("PlaceOrder"));
    assert_eq!(grpc.matcher.methods, [http::Method::POST]);
    assert_eq!(grpc.service, "true");
    let fallback = &config.services["fallback"].servers[0];
    assert_eq!(fallback.url.scheme, UpstreamScheme::Http);
    assert_eq!(
        (fallback.url.host.as_str(), fallback.url.port),
        ("backend.local", 80)
    );
    let api = &config.services["api"].servers;
    assert_eq!(
        (api[0].url.host.as_str(), api[0].url.port),
        ("2001:db8::1", 50051)
    );
    assert_eq!(api[1].weight, 3);
}

#[test]
fn the_effective_config_parses_back_to_itself() {
    for text in [EXAMPLE_YAML, FULL_YAML, ""] {
        let config = parse_str(text, Format::Yaml, "t.yaml").unwrap();
        let yaml = config.to_yaml();
        let again = parse_str(&yaml, Format::Yaml, "effective.yaml")
            .unwrap_or_else(|errors| panic!("{yaml}\n{errors:#?}"));
        assert_eq!(again.to_yaml(), yaml);
        assert_eq!(again.routers.len(), config.routers.len());
    }
}

#[test]
fn the_effective_config_shows_defaults() {
    let config = parse_str(FULL_YAML, Format::Yaml, "t.yaml").unwrap();
    let yaml = config.to_yaml();
    let want = r#"  everything:
    entrypoints: [web, grpc]
    match: {}
    service: fallback
"#;
    assert!(yaml.contains(want), "{yaml}");
    assert!(
        yaml.contains("      - url: http://backend.local:80\n        weight: 1\n"),
        "{yaml}"
    );
    assert!(yaml.contains("      host: \"*.example.com\"\n"), "{yaml}");
    assert!(yaml.contains("    timeout: 1m30s\n"), "{yaml}");
    assert!(yaml.contains("    service: \"true\"\n"), "{yaml}");
}
