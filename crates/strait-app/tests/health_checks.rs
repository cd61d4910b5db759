//! Active health checks move endpoints out of the rotation and back: grpc.health.v1 answers,
//! HTTP statuses, TCP connects; with no healthy endpoint left, `panic_mode` decides; the
//! checks show on /metrics.
//!
//! Intervals are short, timeouts generous (a loaded machine must not fail a healthy backend),
//! and every wait is an `assert_eventually!` on the endpoint's state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use strait_grpc::echo::EchoRequest;
use strait_test::backend::TestBackend;
use strait_test::http_echo::HttpEcho;
use strait_test::{assert_eventually, closed_port, echo_client, http1, start_strait, Running};

const WAIT: Duration = Duration::from_secs(10);

/// One entrypoint, an admin listener, a catch-all router to service `b` with `servers` and
/// the service settings in `extra` (YAML lines indented by four spaces).
fn config(servers: &[String], extra: &str) -> String {
    let servers: String = servers.iter().map(|s| format!("      - {s}\n")).collect();
    format!(
        "admin: {{ address: 127.0.0.1:0 }}\n\
         entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         routers:\n  all: {{ service: b }}\n\
         services:\n  b:\n    servers:\n{servers}{extra}"
    )
}

/// Checks every 100ms with a 90ms timeout; `thresholds` are (healthy, unhealthy).
fn health_check(kind: &str, thresholds: (u32, u32)) -> String {
    format!(
        "    health_check: {{ {kind}, interval: 100ms, timeout: 90ms, \
         healthy_threshold: {}, unhealthy_threshold: {} }}\n",
        thresholds.0, thresholds.1
    )
}

fn healthy(strait: &Running, index: usize) -> bool {
    strait.proxy().services()[0].endpoint_states()[index].is_healthy()
}

#[tokio::test]
async fn a_backend_reporting_not_serving_leaves_the_rotation_and_returns() {
    let a = TestBackend::start().await;
    let b = TestBackend::start().await;
    // Two failures in a row before leaving, so one slow answer on a loaded machine does not
    // take a healthy backend out.
    let extra = format!(
        "    load_balancer: round_robin\n{}",
        health_check("type: grpc", (1, 2))
    );
    let strait = start_strait(&config(&[a.url(), b.url()], &extra)).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    a.set_serving(false).await;
    assert_eventually!(
        !healthy(&strait, 0),
        WAIT,
        "NOT_SERVING kept in the rotation"
    );
    let before = a.calls();
    for _ in 0..10 {
        client.unary(EchoRequest::default()).await.unwrap();
    }
    assert_eq!(a.calls(), before, "a NOT_SERVING backend got calls");
    assert!(healthy(&strait, 1), "the SERVING backend left the rotation");
    assert!(b.calls() >= 10);

    a.set_serving(true).await;
    assert_eventually!(healthy(&strait, 0), WAIT, "SERVING again but kept out");
    for _ in 0..10 {
        client.unary(EchoRequest::default()).await.unwrap();
    }
    assert_eq!(a.calls(), before + 5, "round robin over both again");
}

#[tokio::test]
async fn http_checks_pass_on_an_expected_status_only() {
    let a = HttpEcho::start().await;
    let b = HttpEcho::start().await;
    a.set_status("/healthz", 503);
    let extra = health_check(
        "type: http, path: /healthz, expected_status: [200, 204]",
        (1, 1),
    );
    let strait = start_strait(&config(&[a.url("http"), b.url("http")], &extra)).await;

    assert_eventually!(!healthy(&strait, 0), WAIT, "503 kept in the rotation");
    // The passing one has been checked (and passed) several times meanwhile.
    assert_eventually!(b.requests() >= 3, WAIT, "b not checked");
    assert!(healthy(&strait, 1), "200 taken out of the rotation");

    a.set_status("/healthz", 204);
    assert_eventually!(healthy(&strait, 0), WAIT, "204 kept out of the rotation");
}

#[tokio::test]
async fn tcp_checks_take_a_closed_port_out_and_calls_go_elsewhere() {
    let dead = format!("h2c://127.0.0.1:{}", closed_port().await);
    let live = TestBackend::start().await;
    let extra = health_check("type: tcp", (1, 1));
    let strait = start_strait(&config(&[dead, live.url()], &extra)).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    assert_eventually!(
        !healthy(&strait, 0),
        WAIT,
        "closed port kept in the rotation"
    );
    for _ in 0..20 {
        client.unary(EchoRequest::default()).await.unwrap();
    }
    assert_eq!(live.calls(), 20);
    assert!(healthy(&strait, 1));
}

#[tokio::test]
async fn with_no_healthy_endpoint_panic_mode_decides() {
    let backend = TestBackend::start().await;
    backend.set_serving(false).await;
    let check = health_check("type: grpc", (1, 1));

    // try_all (the default): better a chance than certain failure.
    let strait = start_strait(&config(&[backend.url()], &check)).await;
    assert_eventually!(
        !healthy(&strait, 0),
        WAIT,
        "NOT_SERVING kept in the rotation"
    );
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;
    client.unary(EchoRequest::default()).await.unwrap();
    assert_eq!(backend.calls(), 1);

    let extra = format!("{check}    panic_mode: fail_fast\n");
    let strait = start_strait(&config(&[backend.url()], &extra)).await;
    assert_eventually!(
        !healthy(&strait, 0),
        WAIT,
        "NOT_SERVING kept in the rotation"
    );
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;
    let status = client.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("no healthy endpoint"),
        "{}",
        status.message()
    );
    assert_eq!(backend.calls(), 1, "fail_fast sent the call anyway");
}

#[tokio::test]
async fn checks_and_endpoint_health_show_on_the_metrics() {
    let up = TestBackend::start().await;
    let down = TestBackend::start().await;
    down.set_serving(false).await;
    let extra = health_check("type: grpc", (1, 1));
    let strait = start_strait(&config(&[up.url(), down.url()], &extra)).await;
    assert_eventually!(
        !healthy(&strait, 1),
        WAIT,
        "NOT_SERVING kept in the rotation"
    );

    let admin = strait.admin().unwrap();
    let labels = |url: &str| format!("service=\"b\",endpoint=\"{url}\"");
    let has = |text: &str, prefix: &str| {
        text.lines()
            .any(|line| line.starts_with(prefix) && !line.ends_with(" 0"))
    };
    let pass = format!(
        "strait_health_checks_total{{{},result=\"pass\"}}",
        labels(&up.url())
    );
    let fail = format!(
        "strait_health_checks_total{{{},result=\"fail\"}}",
        labels(&down.url())
    );
    let metrics = || async move { http1(admin, "GET", "/metrics", &[]).await.1 };
    assert_eventually!(
        {
            let text = metrics().await;
            has(&text, &pass) && has(&text, &fail)
        },
        WAIT,
        "health check counters missing:\n{}",
        metrics().await
    );
    let text = metrics().await;
    assert!(
        text.contains(&format!(
            "strait_endpoint_healthy{{{}}} 1",
            labels(&up.url())
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "strait_endpoint_healthy{{{}}} 0",
            labels(&down.url())
        )),
        "{text}"
    );
}
