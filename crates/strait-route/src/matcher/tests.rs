use http::Request;
use strait_config::{parse_str, Format};
use strait_core::RequestHead;

use crate::RouteTable;

/// Each router's runtime is its name.
fn table(routers: &str) -> RouteTable<String> {
    let yaml = format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n  internal: {{ address: 127.0.0.1:0 }}\n\
         services:\n  a: {{ servers: [h2c://127.0.0.1:1] }}\n\
         routers:\n{routers}"
    );
    let config = parse_str(&yaml, Format::Yaml, "test.yaml").unwrap();
    RouteTable::new(&config, |name, _| Some(name.to_owned()))
}

fn route(table: &RouteTable<String>, request: Request<()>) -> Option<String> {
    let (head, ()) = RequestHead::from_request(request);
    table.route(0, &head, None).cloned()
}

fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

#[test]
fn host_exact_and_wildcard() {
    let t = table(
        "  exact: { match: { host: api.example.com }, service: a }\n\
         \x20 wild: { match: { host: '*.example.com' }, service: a }\n",
    );
    assert_eq!(
        route(&t, get("http://API.example.com:8080/")).as_deref(),
        Some("exact")
    );
    assert_eq!(
        route(&t, get("http://x.y.example.com/")).as_deref(),
        Some("wild")
    );
    assert_eq!(route(&t, get("http://example.com/")), None);
    assert_eq!(route(&t, get("http://badexample.com/")), None);
    let via_host_header = Request::get("/")
        .header("host", "shop.example.com")
        .body(())
        .unwrap();
    assert_eq!(route(&t, via_host_header).as_deref(), Some("wild"));
}

#[test]
fn path_exact_beats_prefix_and_longer_prefix_wins() {
    let t = table(
        "  root: { match: { path_prefix: / }, service: a }\n\
         \x20 api: { match: { path_prefix: /api/ }, service: a }\n\
         \x20 login: { match: { path: /api/login }, service: a }\n",
    );
    assert_eq!(route(&t, get("/api/login")).as_deref(), Some("login"));
    assert_eq!(route(&t, get("/api/login2")).as_deref(), Some("api"));
    assert_eq!(route(&t, get("/other")).as_deref(), Some("root"));
}

#[test]
fn grpc_service_and_method() {
    let t = table(
        "  svc: { match: { grpc_service: shop.Orders }, service: a }\n\
         \x20 place: { match: { grpc_service: shop.Orders, grpc_method: Place }, service: a }\n\
         \x20 any_health: { match: { grpc_method: Check }, service: a }\n",
    );
    assert_eq!(
        route(&t, get("/shop.Orders/Place")).as_deref(),
        Some("place")
    );
    assert_eq!(
        route(&t, get("/shop.Orders/Cancel")).as_deref(),
        Some("svc")
    );
    assert_eq!(
        route(&t, get("/grpc.health.v1.Health/Check")).as_deref(),
        Some("any_health")
    );
    assert_eq!(route(&t, get("/shop.Orders")), None);
    assert_eq!(route(&t, get("/shop.Orders/Place/extra")), None);
}

#[test]
fn method_headers_and_query_must_all_hold() {
    let t = table(
        "  canary:\n    match:\n      method: [POST, PUT]\n      headers: { x-env: canary, x-ver: { regex: 'v[0-9]' }, x-debug: { present: true } }\n      query: { user: { regex: 'a.*' } }\n    service: a\n",
    );
    let ok = || {
        Request::post("/x?user=al%20ice&z")
            .header("x-env", "canary")
            .header("x-ver", "v2")
            .header("x-debug", "")
    };
    assert_eq!(route(&t, ok().body(()).unwrap()).as_deref(), Some("canary"));
    let wrong_method = Request::get("/x?user=al")
        .header("x-env", "canary")
        .header("x-ver", "v2")
        .header("x-debug", "1");
    assert_eq!(route(&t, wrong_method.body(()).unwrap()), None);
    // Regexes match the whole value: `v[0-9]` does not match `v10`.
    let v10 = ok().header("x-ver", "v10");
    let mut r = v10.body(()).unwrap();
    r.headers_mut().insert("x-ver", "v10".parse().unwrap());
    assert_eq!(route(&t, r), None);
    let no_debug = Request::post("/x?user=al")
        .header("x-env", "canary")
        .header("x-ver", "v2");
    assert_eq!(route(&t, no_debug.body(()).unwrap()), None);
    let bad_query = ok().uri("/x?user=bob").body(()).unwrap();
    assert_eq!(route(&t, bad_query), None);
}

#[test]
fn explicit_priority_overrides_specificity() {
    let t = table(
        "  specific: { match: { path: /a }, service: a }\n\
         \x20 forced: { match: { path_prefix: / }, service: a, priority: 10 }\n",
    );
    assert_eq!(route(&t, get("/a")).as_deref(), Some("forced"));
}

#[test]
fn host_outranks_path() {
    let t = table(
        "  by_path: { match: { path: /a }, service: a }\n\
         \x20 by_host: { match: { host: '*.example.com' }, service: a }\n",
    );
    assert_eq!(
        route(&t, get("http://x.example.com/a")).as_deref(),
        Some("by_host")
    );
    assert_eq!(
        route(&t, get("http://other.test/a")).as_deref(),
        Some("by_path")
    );
}

#[test]
fn ties_keep_file_order_and_entrypoints_filter() {
    let t = table(
        "  first: { match: { path_prefix: /x }, service: a }\n\
         \x20 second: { match: { path_prefix: /y }, service: a }\n\
         \x20 internal_only: { entrypoints: [internal], match: { path: /x }, service: a }\n",
    );
    assert_eq!(route(&t, get("/x")).as_deref(), Some("first"));
    let head = RequestHead::copied_from(&get("/x"));
    let internal = t.route(1, &head, None).cloned();
    assert_eq!(internal.as_deref(), Some("internal_only"));
    assert!(t.route(7, &head, None).is_none());
}

#[test]
fn empty_match_is_a_catch_all() {
    let t = table("  all: { service: a }\n");
    assert_eq!(route(&t, get("/anything?at=all")).as_deref(), Some("all"));
}

#[test]
fn query_decoding() {
    assert_eq!(super::decode("a%20b+c%2"), "a b c%2");
    assert_eq!(super::decode("%zz"), "%zz");
}
