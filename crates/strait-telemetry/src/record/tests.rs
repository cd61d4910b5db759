use http::Request;
use serde_json::Value;

use super::*;

fn at(secs: u64, millis: u64) -> String {
    Rfc3339(UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis)).to_string()
}

#[test]
fn rfc3339_utc_with_milliseconds() {
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
    assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
    assert_eq!(at(1_700_000_000, 123), "2023-11-14T22:13:20.123Z");
    assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    assert_eq!(
        Rfc3339(UNIX_EPOCH - Duration::from_secs(5)).to_string(),
        "1970-01-01T00:00:00.000Z",
        "a clock before 1970 prints the epoch"
    );
}

#[test]
fn grpc_paths() {
    assert_eq!(
        parse_grpc_path("/shop.OrderService/Get"),
        Some(("shop.OrderService", "Get"))
    );
    assert_eq!(parse_grpc_path("/Svc/M"), Some(("Svc", "M")));
    for bad in ["", "/", "//M", "/Svc/", "/Svc", "Svc/M", "/a/b/c"] {
        assert_eq!(parse_grpc_path(bad), None, "{bad}");
    }
}

#[test]
fn protocol_of_version_and_tls() {
    assert_eq!(Protocol::of(http::Version::HTTP_2, true), Protocol::H2);
    assert_eq!(Protocol::of(http::Version::HTTP_2, false), Protocol::H2c);
    assert_eq!(Protocol::of(http::Version::HTTP_11, true), Protocol::H1);
    assert_eq!(Protocol::of(http::Version::HTTP_10, false), Protocol::H1);
}

#[test]
fn for_request_reads_the_request_head() {
    let request = Request::post("/shop.OrderService/Get?x=1")
        .header("host", "api.example.com:8443")
        .header("content-type", "application/grpc+proto")
        .header("x-request-id", "req-1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(())
        .unwrap();
    let record = RequestRecord::for_request(
        Arc::from("web"),
        Protocol::H2c,
        &strait_core::RequestHead::copied_from(&request),
    );
    assert_eq!(record.method, Method::POST);
    assert_eq!(
        record.authority.as_ref().map(Authority::as_str),
        Some("api.example.com:8443")
    );
    assert!(record.grpc);
    assert_eq!(record.grpc_method(), Some(("shop.OrderService", "Get")));
    assert_eq!(record.request_id.as_ref().unwrap(), "req-1");
    assert!(record.traceparent.is_some());

    let plain = Request::get("http://example.com/a.B/C").body(()).unwrap();
    let record = RequestRecord::for_request(
        Arc::from("web"),
        Protocol::H1,
        &strait_core::RequestHead::copied_from(&plain),
    );
    assert_eq!(
        record.authority.as_ref().map(Authority::as_str),
        Some("example.com")
    );
    assert_eq!(record.grpc_method(), None, "not gRPC: path not parsed");
}

#[test]
fn json_line_has_every_field_set_and_omits_the_rest() {
    let request = Request::post("/shop.OrderService/Get")
        .header("content-type", "application/grpc")
        .header("x-request-id", "req-\"quoted\"")
        .body(())
        .unwrap();
    let mut record = RequestRecord::for_request(
        Arc::from("websecure"),
        Protocol::H2,
        &strait_core::RequestHead::copied_from(&request),
    );
    record.time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    record.router = Some(Arc::from("orders"));
    record.service = Some(Arc::from("orders"));
    record.endpoint = Some(Arc::from("10.0.0.7:50051"));
    record.client = Some("192.0.2.1:40000".parse().unwrap());
    record.alpn = Some("h2");
    record.tls_version = Some("TLSv1.3");
    record.http_status = Some(200);
    record.grpc_status = Some(14);
    record.grpc_message = Some("backend down".into());
    record.request_bytes = 5;
    record.response_bytes = 0;
    record.duration = Duration::from_millis(1500);
    record.upstream_duration = Some(Duration::from_millis(250));
    record.retries = 2;

    let line = record.to_json_line();
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
    let json: Value = serde_json::from_slice(&line).unwrap();
    let expected = serde_json::json!({
        "time": "2023-11-14T22:13:20.123Z",
        "entrypoint": "websecure",
        "router": "orders",
        "service": "orders",
        "endpoint": "10.0.0.7:50051",
        "client": "192.0.2.1:40000",
        "method": "POST",
        "path": "/shop.OrderService/Get",
        "protocol": "h2",
        "alpn": "h2",
        "tls_version": "TLSv1.3",
        "http_status": 200,
        "grpc_service": "shop.OrderService",
        "grpc_method": "Get",
        "grpc_status": "UNAVAILABLE",
        "grpc_status_code": 14,
        "grpc_message": "backend down",
        "request_bytes": 5,
        "response_bytes": 0,
        "duration_seconds": 1.5,
        "upstream_duration_seconds": 0.25,
        "retries": 2,
        "request_id": "req-\"quoted\"",
        "end": "complete",
    });
    assert_eq!(json, expected);
}

#[test]
fn json_line_of_a_bare_record() {
    let mut record = RequestRecord::new(Arc::from("web"), Protocol::H1);
    record.end = End::Dropped;
    record.error = Some("no router matches".into());
    record.grpc_status = Some(99);
    let json: Value = serde_json::from_slice(&record.to_json_line()).unwrap();
    let object = json.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "duration_seconds",
            "end",
            "entrypoint",
            "error",
            "grpc_status",
            "grpc_status_code",
            "method",
            "protocol",
            "request_bytes",
            "response_bytes",
            "retries",
            "time",
        ]
    );
    assert_eq!(json["grpc_status"], "UNKNOWN", "out-of-range code");
    assert_eq!(json["end"], "dropped");
}

#[test]
fn set_outcome_keeps_strait_own_error_and_header_status() {
    let mut record = RequestRecord::new(Arc::from("web"), Protocol::H2c);
    record.grpc_status = Some(14);
    record.error = Some("connect refused".into());
    record.set_outcome(&Outcome {
        bytes: 10,
        grpc_status: None,
        grpc_message: None,
        end: End::Error,
        error: Some("stream reset".into()),
    });
    assert_eq!(record.response_bytes, 10);
    assert_eq!(record.grpc_status, Some(14));
    assert_eq!(record.end, End::Error);
    assert_eq!(record.error.as_deref(), Some("connect refused"));

    record.error = None;
    record.set_outcome(&Outcome {
        bytes: 10,
        grpc_status: Some(0),
        grpc_message: None,
        end: End::Complete,
        error: Some("x".into()),
    });
    assert_eq!(record.grpc_status, Some(0));
    assert_eq!(record.error.as_deref(), Some("x"));
}
