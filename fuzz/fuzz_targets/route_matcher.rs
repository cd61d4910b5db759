//! Arbitrary requests against a route table with every kind of condition: routing never
//! panics, and a request is routed the same way twice.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strait_config::{parse_str, Format};
use strait_route::RouteTable;

const CONFIG: &str = r#"
entrypoints:
  web: { address: 127.0.0.1:0 }
  other: { address: 127.0.0.1:0 }
routers:
  grpc: { match: { grpc_service: shop.Orders, grpc_method: Place }, service: s }
  host: { match: { host: "*.example.com", path_prefix: /api/ }, service: s, entrypoints: [web] }
  exact: { match: { host: api.example.org, path: /v1/x, method: [GET, POST] }, service: s }
  headers:
    match:
      headers: { x-env: { regex: "prod|stag(ing)?" }, x-any: { present: true } }
      query: { debug: { exact: "1" } }
    service: s
    priority: 5
  all: { service: s }
services:
  s: { servers: [h2c://127.0.0.1:1] }
"#;

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let config = parse_str(CONFIG, Format::Yaml, "fuzz.yaml").expect("fuzz config is valid");
        RouteTable::new(&config)
    })
}

fuzz_target!(|data: &[u8]| {
    // Fields separated by NUL: method, URI, then header name/value pairs.
    let mut fields = data.split(|b| *b == 0);
    let method = fields.next().unwrap_or_default();
    let uri = fields.next().unwrap_or_default();
    let mut request = http::Request::builder();
    if let Ok(method) = http::Method::from_bytes(method) {
        request = request.method(method);
    }
    if let Ok(uri) = http::Uri::try_from(uri) {
        request = request.uri(uri);
    }
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            request = request.header(name, value);
        }
    }
    let Ok(request) = request.body(()) else {
        return;
    };
    for entrypoint in 0..3 {
        let first = table().route(entrypoint, &request, None).map(|r| r.name.clone());
        let second = table().route(entrypoint, &request, None).map(|r| r.name.clone());
        assert_eq!(first, second);
        if entrypoint < 2 {
            // The catch-all router serves every entrypoint.
            assert!(first.is_some());
        }
    }
});
