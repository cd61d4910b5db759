use std::time::Duration;

use http::Request;

use super::*;

fn name(s: &str) -> Arc<str> {
    Arc::from(s)
}

/// The sample line for `series` (name and labels, exactly), with its value.
fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
}

fn grpc_record(status: u32) -> RequestRecord {
    let request = Request::post("/shop.OrderService/Get")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let mut record = RequestRecord::for_request(
        name("web"),
        Protocol::H2c,
        &strait_core::RequestHead::copied_from(&request),
    );
    record.router = Some(name("orders"));
    record.service = Some(name("orders-svc"));
    record.http_status = Some(200);
    record.grpc_status = Some(status);
    record.request_bytes = 7;
    record.response_bytes = 40;
    record.duration = Duration::from_millis(30);
    record
}

#[test]
fn record_request_counts_every_request_family() {
    let metrics = Metrics::new();
    metrics.record_request(&grpc_record(14));
    metrics.record_request(&grpc_record(14));
    metrics.record_request(&grpc_record(0));
    let text = metrics.encode();

    assert!(text.contains("# TYPE strait_requests counter"), "{text}");
    assert_eq!(
        sample(
            &text,
            "strait_requests_total{entrypoint=\"web\",router=\"orders\",service=\"orders-svc\",\
             grpc_service=\"shop.OrderService\",grpc_method=\"Get\",grpc_status=\"UNAVAILABLE\",\
             http_status=\"200\",protocol=\"h2c\"}"
        ),
        Some("2"),
        "{text}"
    );
    assert!(text.contains("grpc_status=\"OK\""), "{text}");

    let route = "entrypoint=\"web\",router=\"orders\",service=\"orders-svc\"";
    assert_eq!(
        sample(&text, &format!("strait_request_bytes_total{{{route}}}")),
        Some("21"),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("strait_response_bytes_total{{{route}}}")),
        Some("120"),
        "{text}"
    );
    assert!(text.contains("# UNIT strait_request_duration_seconds seconds"));
    assert_eq!(
        sample(
            &text,
            &format!("strait_request_duration_seconds_count{{{route},protocol=\"h2c\"}}")
        ),
        Some("3"),
        "{text}"
    );
    // 30 ms falls in the 0.05 bucket, not the 0.025 one.
    assert_eq!(
        sample(
            &text,
            &format!(
                "strait_request_duration_seconds_bucket{{le=\"0.025\",{route},protocol=\"h2c\"}}"
            )
        ),
        Some("0"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "strait_request_duration_seconds_bucket{{le=\"0.05\",{route},protocol=\"h2c\"}}"
            )
        ),
        Some("3"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn plain_http_request_has_empty_grpc_labels() {
    let metrics = Metrics::new();
    let request = Request::get("/a.B/C").body(()).unwrap();
    let mut record = RequestRecord::for_request(
        name("web"),
        Protocol::H1,
        &strait_core::RequestHead::copied_from(&request),
    );
    record.router = Some(name("site"));
    record.service = Some(name("site"));
    record.http_status = Some(404);
    metrics.record_request(&record);
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            "strait_requests_total{entrypoint=\"web\",router=\"site\",service=\"site\",\
             grpc_service=\"\",grpc_method=\"\",grpc_status=\"\",http_status=\"404\",\
             protocol=\"h1\"}"
        ),
        Some("1"),
        "{text}"
    );
}

#[test]
fn unrouted_grpc_request_does_not_label_the_clients_path() {
    let metrics = Metrics::new();
    let mut record = grpc_record(12);
    record.router = None;
    record.service = None;
    metrics.record_request(&record);
    let text = metrics.encode();
    assert!(
        text.contains("router=\"\",service=\"\",grpc_service=\"\",grpc_method=\"\",grpc_status=\"UNIMPLEMENTED\""),
        "{text}"
    );
}

#[test]
fn grpc_method_labels_are_capped() {
    let metrics = Metrics::new();
    for i in 0..MAX_GRPC_METHODS + 5 {
        let request = Request::post(format!("/svc.S/M{i}"))
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let mut record = RequestRecord::for_request(
            name("web"),
            Protocol::H2,
            &strait_core::RequestHead::copied_from(&request),
        );
        record.router = Some(name("r"));
        metrics.record_request(&record);
    }
    let text = metrics.encode();
    let requests = text
        .lines()
        .filter(|l| l.starts_with("strait_requests_total"))
        .count();
    assert_eq!(requests, MAX_GRPC_METHODS + 1);
    assert!(text.contains("grpc_service=\"_other\",grpc_method=\"_other\""));
    assert!(text.contains(&format!("grpc_method=\"M{}\"", MAX_GRPC_METHODS - 1)));
    assert!(!text.contains(&format!("grpc_method=\"M{}\"", MAX_GRPC_METHODS)));
}

#[test]
fn connection_and_stream_guards_decrement_gauges() {
    let metrics = Metrics::new();
    let web = name("web");
    let first = metrics.connection_opened(&web, Protocol::H2c);
    let second = metrics.connection_opened(&web, Protocol::H1);
    let stream = metrics.stream_started(&web);
    let text = metrics.encode();
    assert_eq!(
        sample(&text, "strait_active_connections{entrypoint=\"web\"}"),
        Some("2")
    );
    assert_eq!(
        sample(&text, "strait_active_streams{entrypoint=\"web\"}"),
        Some("1")
    );
    drop(first);
    drop(stream);
    let text = metrics.encode();
    assert_eq!(
        sample(&text, "strait_active_connections{entrypoint=\"web\"}"),
        Some("1")
    );
    assert_eq!(
        sample(&text, "strait_active_streams{entrypoint=\"web\"}"),
        Some("0")
    );
    assert_eq!(
        sample(
            &text,
            "strait_connections_total{entrypoint=\"web\",protocol=\"h2c\"}"
        ),
        Some("1")
    );
    assert_eq!(
        sample(
            &text,
            "strait_connections_total{entrypoint=\"web\",protocol=\"h1\"}"
        ),
        Some("1")
    );
    drop(second);
    assert_eq!(
        sample(
            &metrics.encode(),
            "strait_active_connections{entrypoint=\"web\"}"
        ),
        Some("0")
    );
}

#[test]
fn upstream_connections_streams_and_durations() {
    let metrics = Metrics::new();
    let endpoint = name("127.0.0.1:50051");
    let conn = metrics.upstream_connection_opened(&endpoint, Protocol::H2c);
    let a = metrics.endpoint(&endpoint).stream_started();
    let b = metrics.endpoint(&endpoint).stream_started();
    metrics.upstream_response_headers(&name("orders"), &endpoint, Duration::from_millis(2));
    let text = metrics.encode();
    let ep = "endpoint=\"127.0.0.1:50051\"";
    assert_eq!(
        sample(&text, &format!("strait_upstream_active_streams{{{ep}}}")),
        Some("2")
    );
    assert_eq!(
        sample(&text, &format!("strait_upstream_requests_total{{{ep}}}")),
        Some("2")
    );
    assert_eq!(
        sample(
            &text,
            &format!("strait_upstream_connections_opened_total{{{ep},protocol=\"h2c\"}}")
        ),
        Some("1")
    );
    assert_eq!(
        sample(
            &text,
            &format!("strait_upstream_connections_closed_total{{{ep},protocol=\"h2c\"}}")
        ),
        Some("0")
    );
    assert_eq!(
        sample(
            &text,
            &format!("strait_upstream_duration_seconds_count{{service=\"orders\",{ep}}}")
        ),
        Some("1"),
        "{text}"
    );
    drop(a);
    drop(b);
    drop(conn);
    let text = metrics.encode();
    assert_eq!(
        sample(&text, &format!("strait_upstream_active_streams{{{ep}}}")),
        Some("0")
    );
    assert_eq!(
        sample(
            &text,
            &format!("strait_upstream_connections_closed_total{{{ep},protocol=\"h2c\"}}")
        ),
        Some("1")
    );
}

#[test]
fn tls_reload_panic_and_generation() {
    let metrics = Metrics::new();
    let web = name("websecure");
    metrics.tls_handshake(&web, "h2", "TLSv1.3", HandshakeResult::Ok);
    metrics.tls_handshake(&web, "", "", HandshakeResult::Timeout);
    metrics.set_config_generation(1);
    metrics.config_reload(true, 2);
    metrics.config_reload(false, 3);
    metrics.panicked(Some(&name("orders")));
    metrics.panicked(None);
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            "strait_tls_handshakes_total{entrypoint=\"websecure\",alpn=\"h2\",version=\"TLSv1.3\",result=\"ok\"}"
        ),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "strait_tls_handshakes_total{entrypoint=\"websecure\",alpn=\"\",version=\"\",result=\"timeout\"}"
        ),
        Some("1")
    );
    assert_eq!(
        sample(&text, "strait_config_reloads_total{result=\"ok\"}"),
        Some("1")
    );
    assert_eq!(
        sample(&text, "strait_config_reloads_total{result=\"error\"}"),
        Some("1")
    );
    // The failed reload leaves the generation in service alone.
    assert_eq!(sample(&text, "strait_config_generation"), Some("2"));
    assert_eq!(
        sample(&text, "strait_panics_total{router=\"orders\"}"),
        Some("1")
    );
    assert_eq!(sample(&text, "strait_panics_total{router=\"\"}"), Some("1"));
    assert_eq!(sample(&text, "strait_access_log_dropped_total"), Some("0"));
}

#[test]
fn protocol_refusals_are_counted_by_entrypoint_and_reason() {
    let metrics = Metrics::new();
    let web = name("web");
    metrics.protocol_refused(&web, "h2c_prior_knowledge");
    metrics.protocol_refused(&web, "h2c_prior_knowledge");
    metrics.protocol_refused(&name("grpc"), "http1");
    let text = metrics.encode();
    assert!(
        text.contains("# TYPE strait_protocol_refused counter"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "strait_protocol_refused_total{entrypoint=\"web\",reason=\"h2c_prior_knowledge\"}"
        ),
        Some("2"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "strait_protocol_refused_total{entrypoint=\"grpc\",reason=\"http1\"}"
        ),
        Some("1"),
        "{text}"
    );
}

#[test]
fn clones_share_counters() {
    let metrics = Metrics::new();
    let clone = metrics.clone();
    clone.config_reload(true, 9);
    assert_eq!(
        sample(&metrics.encode(), "strait_config_generation"),
        Some("9")
    );
}

#[test]
fn handles_looked_up_once_share_the_series_of_per_request_lookups() {
    let metrics = Metrics::new();
    let endpoint = metrics.endpoint(&name("10.0.0.1:80"));
    let streams = metrics.entrypoint_streams(&name("web"));
    // Made when the config loads: the series exist, at zero, before any request.
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            "strait_upstream_requests_total{endpoint=\"10.0.0.1:80\"}"
        ),
        Some("0")
    );
    assert_eq!(
        sample(&text, "strait_active_streams{entrypoint=\"web\"}"),
        Some("0")
    );
    let a = endpoint.stream_started();
    let b = metrics.endpoint(&name("10.0.0.1:80")).stream_started();
    let s = streams.started();
    let t = metrics.stream_started(&name("web"));
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            "strait_upstream_requests_total{endpoint=\"10.0.0.1:80\"}"
        ),
        Some("2")
    );
    assert_eq!(
        sample(
            &text,
            "strait_upstream_active_streams{endpoint=\"10.0.0.1:80\"}"
        ),
        Some("2")
    );
    assert_eq!(
        sample(&text, "strait_active_streams{entrypoint=\"web\"}"),
        Some("2")
    );
    drop((a, b, s, t));
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            "strait_upstream_active_streams{endpoint=\"10.0.0.1:80\"}"
        ),
        Some("0")
    );
    assert_eq!(
        sample(&text, "strait_active_streams{entrypoint=\"web\"}"),
        Some("0")
    );
}
