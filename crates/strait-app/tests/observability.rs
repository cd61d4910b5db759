//! Metrics and access log: grpc-status is read from real trailers and from trailers-only
//! headers, and every request leaves one JSON line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use strait_grpc::echo::EchoRequest;
use strait_test::backend::{in_mode, TestBackend};
use strait_test::{assert_eventually, echo_client, http1, start_strait};
use tonic::Request;

fn config(backend: &str, access_log: &str) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0 }}\n{access_log}\
         entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         routers:\n  echo: {{ match: {{ grpc_service: strait.echo.v1.Echo }}, service: echo }}\n\
         services:\n  echo: {{ servers: ['{backend}'] }}\n"
    )
}

fn with_mode(mode: &str, repeat: u32) -> Request<EchoRequest> {
    in_mode(
        Request::new(EchoRequest {
            payload: "p".into(),
            repeat,
        }),
        mode,
    )
}

/// The value of the sample whose line contains every one of `parts`.
fn sample(metrics: &str, name: &str, parts: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_read_grpc_status_from_trailers_and_trailers_only_headers() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&config(&backend.url(), "")).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    client.unary(EchoRequest::default()).await.unwrap();
    // Trailers-only error from the backend.
    client.unary(with_mode("details", 0)).await.unwrap_err();
    // Two messages, then the error in real trailers.
    let mut stream = client
        .server_stream(with_mode("fail-after", 2))
        .await
        .unwrap()
        .into_inner();
    while stream.message().await.is_ok_and(|m| m.is_some()) {}
    // strait's own answer: no router for this service.
    let channel = strait_test::channel(strait.entrypoint("web").unwrap()).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap_err();

    let admin = strait.admin().unwrap();
    let metrics = || async move { http1(admin, "GET", "/metrics", &[]).await.1 };
    let requests = "strait_requests_total{";
    let m = metrics().await;
    let ok = [
        "grpc_method=\"Unary\"",
        "grpc_status=\"OK\"",
        "router=\"echo\"",
        "protocol=\"h2c\"",
    ];
    assert_eq!(sample(&m, requests, &ok), Some(1.0), "{m}");
    let failed = [
        "grpc_method=\"Unary\"",
        "grpc_status=\"FAILED_PRECONDITION\"",
    ];
    assert_eq!(sample(&m, requests, &failed), Some(1.0), "{m}");
    // The stream's status only exists in its trailers.
    assert_eventually!(
        sample(
            &metrics().await,
            requests,
            &[
                "grpc_method=\"ServerStream\"",
                "grpc_status=\"FAILED_PRECONDITION\""
            ]
        ) == Some(1.0)
    );
    let unrouted = ["grpc_status=\"UNIMPLEMENTED\"", "router=\"\""];
    assert_eq!(sample(&m, requests, &unrouted), Some(1.0), "{m}");
    assert!(
        sample(
            &m,
            "strait_connections_total{",
            &["entrypoint=\"web\"", "protocol=\"h2c\""]
        )
        .unwrap()
            >= 1.0,
        "{m}"
    );
    assert!(m.contains("strait_request_duration_seconds_bucket{"), "{m}");
    // Three calls reached the backend over one shared connection.
    let endpoint = format!("endpoint=\"{}\"", backend.url());
    assert_eq!(
        sample(
            &m,
            "strait_upstream_connections_opened_total{",
            &[&endpoint, "protocol=\"h2c\""]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "strait_upstream_requests_total{", &[&endpoint]),
        Some(3.0),
        "{m}"
    );
    assert!(
        m.contains("strait_upstream_duration_seconds_bucket{"),
        "{m}"
    );
}

#[tokio::test]
async fn access_log_lines_are_json_with_the_request_facts() {
    let backend = TestBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let strait = start_strait(&config(
        &backend.url(),
        &format!("access_log: {{ path: '{}' }}\n", log.display()),
    ))
    .await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    let mut traced = Request::new(EchoRequest {
        payload: "hello".into(),
        repeat: 0,
    });
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    traced
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    client.unary(traced).await.unwrap();
    let mut stream = client
        .server_stream(with_mode("fail-after", 2))
        .await
        .unwrap()
        .into_inner();
    while stream.message().await.is_ok_and(|m| m.is_some()) {}

    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eventually!(
        lines().lines().count() == 2,
        Duration::from_secs(10),
        "log: {}",
        lines()
    );
    let records: Vec<serde_json::Value> = lines()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();

    let unary = &records[0];
    for (field, value) in [
        ("entrypoint", "web"),
        ("router", "echo"),
        ("service", "echo"),
        ("method", "POST"),
        ("path", "/strait.echo.v1.Echo/Unary"),
        ("grpc_service", "strait.echo.v1.Echo"),
        ("grpc_method", "Unary"),
        ("protocol", "h2c"),
        ("grpc_status", "OK"),
        ("traceparent", traceparent),
        ("end", "complete"),
    ] {
        assert_eq!(unary[field], value, "{field} in {unary}");
    }
    assert_eq!(unary["endpoint"], backend.url());
    assert_eq!(unary["http_status"], 200);
    assert_eq!(unary["grpc_status_code"], 0);
    assert_eq!(unary["request_bytes"], 5 + 7);
    assert!(unary["response_bytes"].as_u64().unwrap() > 5);
    assert!(
        unary["duration_seconds"].as_f64().unwrap()
            >= unary["upstream_duration_seconds"].as_f64().unwrap()
    );
    assert!(unary["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(unary["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(unary["retries"], 0);

    // The generated request id went to the backend too; traceparent passed through.
    let id = unary["request_id"].as_str().unwrap();
    let seen = backend.observed.metadata.lock().unwrap()[0].clone();
    assert_eq!(seen.get("x-request-id").unwrap(), id);
    assert_eq!(seen.get("traceparent").unwrap(), traceparent);

    let stream = &records[1];
    assert_eq!(stream["grpc_method"], "ServerStream");
    assert_eq!(stream["grpc_status"], "FAILED_PRECONDITION");
    assert_eq!(
        stream["grpc_message"],
        "precondition failed: ünïcode and 100%"
    );
    assert_ne!(stream["request_id"], unary["request_id"]);
}
