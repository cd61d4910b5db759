//! Resilience against real tonic backends: outlier detection reading grpc-status from real
//! trailers, transparent and configured retries, the retry budget, the route breaker,
//! traffic classes, P2C, fallbacks and fault injection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use strait_grpc::echo::echo_client::EchoClient;
use strait_grpc::echo::EchoRequest;
use strait_test::backend::{hanging, in_mode, Behaviour, TestBackend};
use strait_test::raw::SilentBackend;
use strait_test::{assert_eventually, echo_client, start_strait};
use tonic::transport::Channel;
use tonic::{Code, Request};

/// One service `echo` with `servers`, its extra settings `service`, and router `r` with
/// `router` settings; admin on for metrics.
fn config(servers: &[String], service: &str, router: &str) -> String {
    let servers: String = servers.iter().map(|s| format!("      - {s}\n")).collect();
    format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         routers:\n  r:\n    service: echo\n{router}\
         services:\n  echo:\n    servers:\n{servers}{service}"
    )
}

fn failing(code: Code) -> Behaviour {
    Behaviour {
        fail: Some(code),
        ..Behaviour::default()
    }
}

async fn client(strait: &strait_app::Running) -> EchoClient<Channel> {
    echo_client(strait.entrypoint("web").unwrap()).await
}

fn with_header(name: &'static str, value: &str) -> Request<EchoRequest> {
    let mut request = Request::new(EchoRequest::default());
    request.metadata_mut().insert(name, value.parse().unwrap());
    request
}

/// The value of the sample whose line starts with `name` and contains every one of `parts`.
fn sample(strait: &strait_app::Running, name: &str, parts: &[&str]) -> Option<f64> {
    let metrics = strait.metrics().encode();
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Server-streaming call; the status the stream ended with (OK when it ended cleanly).
async fn stream_status(client: &mut EchoClient<Channel>) -> Code {
    let request = EchoRequest {
        payload: "p".into(),
        repeat: 1,
    };
    let mut stream = match client.server_stream(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return status.code(),
    };
    loop {
        match stream.message().await {
            Ok(Some(_)) => {}
            Ok(None) => return Code::Ok,
            Err(status) => return status.code(),
        }
    }
}

/// envoyproxy/envoy#8228: a backend whose streams end with UNAVAILABLE in real trailers
/// (after a message, so no retry can hide it) is ejected; nearly all later calls succeed.
#[tokio::test]
async fn unavailable_in_real_trailers_ejects_the_backend() {
    let good = TestBackend::start().await;
    let bad = TestBackend::start().await;
    bad.set_behaviour(failing(Code::Unavailable));
    let strait = start_strait(&config(
        &[good.url(), bad.url()],
        "    load_balancer: round_robin\n    outlier_detection: { consecutive_failures: 3 }\n",
        "",
    ))
    .await;
    let mut client = client(&strait).await;
    let mut ok = 0;
    for _ in 0..106 {
        if stream_status(&mut client).await == Code::Ok {
            ok += 1;
        }
    }
    // Round robin sends every other call to the bad backend until its 3rd failure.
    assert!(ok >= 100, "{ok} of 106 calls succeeded");
    assert_eq!(bad.calls(), 3, "ejected after 3 failures in a row");
    let service = &strait.proxy().services()[0];
    assert!(service.is_ejected(1) && !service.is_ejected(0));
    assert_eq!(
        sample(
            &strait,
            "strait_outlier_ejections_total",
            &["endpoint=\"h2c"]
        ),
        Some(1.0)
    );
}

/// The same for trailers-only answers (unary errors).
#[tokio::test]
async fn unavailable_trailers_only_ejects_too() {
    let good = TestBackend::start().await;
    let bad = TestBackend::start().await;
    bad.set_behaviour(failing(Code::Internal));
    let strait = start_strait(&config(
        &[good.url(), bad.url()],
        "    load_balancer: round_robin\n",
        "",
    ))
    .await;
    let mut client = client(&strait).await;
    let mut failed = 0;
    for _ in 0..100 {
        if client.unary(EchoRequest::default()).await.is_err() {
            failed += 1;
        }
    }
    // The default: 5 failures in a row eject.
    assert_eq!(failed, 5);
    assert_eq!(bad.calls(), 5);
}

/// Application errors (NOT_FOUND, FAILED_PRECONDITION...) are answers, not sickness.
#[tokio::test]
async fn application_errors_do_not_eject() {
    let a = TestBackend::start().await;
    let b = TestBackend::start().await;
    a.set_behaviour(failing(Code::NotFound));
    b.set_behaviour(failing(Code::NotFound));
    let strait = start_strait(&config(
        &[a.url(), b.url()],
        "    load_balancer: round_robin\n",
        "",
    ))
    .await;
    let mut client = client(&strait).await;
    for _ in 0..20 {
        let status = client.unary(EchoRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
    assert_eq!((a.calls(), b.calls()), (10, 10));
}

/// A backend that refuses every stream (REFUSED_STREAM) never saw the request: strait
/// retries it on another endpoint, without any retry policy, and tells the backend it is a
/// retry.
#[tokio::test]
async fn refused_streams_are_retried_transparently() {
    let refusing = SilentBackend::resetting(h2::Reason::REFUSED_STREAM).await;
    let good = TestBackend::start().await;
    let strait = start_strait(&config(
        &[refusing.url(), good.url()],
        "    load_balancer: round_robin\n    outlier_detection: { enabled: false }\n",
        "",
    ))
    .await;
    let mut client = client(&strait).await;
    for _ in 0..10 {
        client
            .unary(EchoRequest {
                payload: "body".into(),
                repeat: 0,
            })
            .await
            .unwrap();
    }
    assert_eq!(good.calls(), 10);
    assert!(
        refusing.request_count() >= 5,
        "{}",
        refusing.request_count()
    );
    let retried = good
        .observed
        .metadata
        .lock()
        .unwrap()
        .iter()
        .filter(|m| {
            m.get("grpc-previous-rpc-attempts")
                .is_some_and(|v| v == "1")
        })
        .count();
    assert_eq!(retried, refusing.request_count());
    assert_eq!(
        sample(
            &strait,
            "strait_retries_total",
            &["reason=\"refused-stream\""]
        ),
        Some(refusing.request_count() as f64)
    );
}

/// A connect failure is retried on another endpoint: a dead server costs no failed call.
#[tokio::test]
async fn connect_failures_are_retried_elsewhere() {
    let good = TestBackend::start().await;
    let dead = format!("h2c://127.0.0.1:{}", strait_test::closed_port().await);
    let strait = start_strait(&config(
        &[dead, good.url()],
        "    load_balancer: round_robin\n",
        "",
    ))
    .await;
    let mut client = client(&strait).await;
    for _ in 0..20 {
        client.unary(EchoRequest::default()).await.unwrap();
    }
    assert_eq!(good.calls(), 20);
}

/// Two backends, one restarted gracefully (GOAWAY, drain, gone, back) under steady load of
/// about 50 calls a second: no call fails.
#[tokio::test]
async fn a_graceful_restart_under_load_loses_no_call() {
    let mut restarting = TestBackend::start().await;
    let steady = TestBackend::start().await;
    // Round robin, so both backends surely carry load; a short ejection, so the restarted
    // backend is back in the rotation soon.
    let strait = start_strait(&config(
        &[restarting.url(), steady.url()],
        "    load_balancer: round_robin\n    outlier_detection: { base_ejection_time: 500ms }\n",
        "",
    ))
    .await;
    let addr = strait.entrypoint("web").unwrap();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(async move {
        let mut client = echo_client(addr).await;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let (mut ok, mut failed) = (0, Vec::new());
        while !*stopped.borrow_and_update() {
            tick.tick().await;
            match client.unary(EchoRequest::default()).await {
                Ok(_) => ok += 1,
                Err(status) => failed.push(status),
            }
        }
        (ok, failed)
    });
    assert_eventually!(
        restarting.calls() >= 10,
        Duration::from_secs(10),
        "restarting backend serves"
    );
    let before = restarting.calls();
    restarting
        .restart_gracefully(async {
            // Down long enough for calls to find nothing listening.
            let down = steady.calls();
            assert_eventually!(
                steady.calls() >= down + 10,
                Duration::from_secs(10),
                "load goes on while down"
            );
        })
        .await;
    assert_eventually!(
        restarting.calls() > before + 5,
        Duration::from_secs(30),
        "the restarted backend serves again ({} calls)",
        restarting.calls()
    );
    stop.send(true).unwrap();
    let (ok, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} calls failed: {failed:?}",
        failed.len()
    );
    assert!(ok >= 30, "{ok} calls");
}

/// With every backend failing, retries stay within the budget: with no room (0% and no
/// floor) none is made, and each one not made is counted.
#[tokio::test]
async fn the_retry_budget_caps_retries_when_all_backends_fail() {
    let backend = TestBackend::start().await;
    backend.set_behaviour(failing(Code::Unavailable));
    let strait = start_strait(&config(
        &[backend.url()],
        "",
        "    retry: { attempts: 3, retry_on: [unavailable], budget_percent: 0, budget_min: 0 }\n",
    ))
    .await;
    let mut client = client(&strait).await;
    for _ in 0..10 {
        let status = client.unary(EchoRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
    }
    assert_eq!(backend.calls(), 10, "no retries");
    assert_eq!(
        sample(
            &strait,
            "strait_retry_budget_exhausted_total",
            &["router=\"r\""]
        ),
        Some(10.0)
    );
}

/// With room in the budget, UNAVAILABLE is retried up to `attempts`, with backoff, and the
/// backend sees grpc-previous-rpc-attempts.
#[tokio::test]
async fn unavailable_is_retried_up_to_attempts() {
    let backend = TestBackend::start().await;
    backend.set_behaviour(failing(Code::Unavailable));
    let strait = start_strait(&config(
        &[backend.url()],
        "",
        "    retry: { attempts: 3, retry_on: [unavailable], backoff_base: 1ms, backoff_max: 5ms }\n",
    ))
    .await;
    let mut client = client(&strait).await;
    let status = client.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(backend.calls(), 3);
    assert_eq!(
        backend
            .last_metadata()
            .get("grpc-previous-rpc-attempts")
            .unwrap(),
        "2"
    );
    // Recovered: one try is enough.
    backend.set_behaviour(Behaviour::default());
    client.unary(EchoRequest::default()).await.unwrap();
    assert_eq!(backend.calls(), 4);
}

/// A request body larger than the replay buffer is never retried: it could not be sent
/// again whole.
#[tokio::test]
async fn a_body_past_the_buffer_is_not_retried() {
    let backend = TestBackend::start().await;
    backend.set_behaviour(failing(Code::Unavailable));
    let strait = start_strait(&config(
        &[backend.url()],
        "",
        "    retry: { attempts: 3, retry_on: [unavailable], backoff_base: 1ms, buffer: 1KiB }\n",
    ))
    .await;
    let mut client = client(&strait).await;
    let big = EchoRequest {
        payload: "x".repeat(4096).into(),
        repeat: 0,
    };
    client.unary(big).await.unwrap_err();
    assert_eq!(backend.calls(), 1);
    client.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(backend.calls(), 4, "small bodies are retried");
}

/// The route breaker opens on the failure rate, rejects without reaching the backend, then
/// half-opens and closes once the backend recovers.
#[tokio::test]
async fn the_breaker_opens_half_opens_and_closes() {
    let backend = TestBackend::start().await;
    backend.set_behaviour(failing(Code::Unavailable));
    let strait = start_strait(&config(
        &[backend.url()],
        "",
        "    circuit_breaker: { minimum_requests: 4, failure_percent: 50, open_for: 300ms, half_open_requests: 2 }\n",
    ))
    .await;
    let mut client = client(&strait).await;
    for _ in 0..4 {
        client.unary(EchoRequest::default()).await.unwrap_err();
    }
    assert_eq!(backend.calls(), 4);
    let rejected = client.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(rejected.code(), Code::Unavailable);
    assert!(
        rejected
            .message()
            .contains("circuit breaker of router `r` is open"),
        "{}",
        rejected.message()
    );
    assert_eq!(backend.calls(), 4, "rejected without reaching the backend");
    assert_eq!(
        sample(&strait, "strait_circuit_breaker_state", &["router=\"r\""]),
        Some(1.0)
    );

    backend.set_behaviour(Behaviour::default());
    assert_eventually!(
        client.unary(EchoRequest::default()).await.is_ok(),
        Duration::from_secs(10),
        "a probe gets through once open_for has passed"
    );
    client.unary(EchoRequest::default()).await.unwrap();
    assert_eq!(
        sample(&strait, "strait_circuit_breaker_state", &["router=\"r\""]),
        Some(0.0)
    );
    for to in ["open", "half_open", "closed"] {
        let label = format!("to=\"{to}\"");
        assert_eq!(
            sample(
                &strait,
                "strait_circuit_breaker_transitions_total",
                &[&label]
            ),
            Some(1.0),
            "{to}"
        );
    }
}

/// Best-effort overload never rejects premium: each class has its own limit.
#[tokio::test]
async fn traffic_classes_are_isolated() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&config(
        &[backend.url()],
        "    circuit_breakers:\n      traffic_classes:\n        classes: { premium: 10, best-effort: 2 }\n",
        "",
    ))
    .await;
    let addr = strait.entrypoint("web").unwrap();
    let mut hanging = Vec::new();
    for _ in 0..2 {
        let mut client = echo_client(addr).await;
        let request = in_mode(with_header("x-traffic-class", "best-effort"), "hang");
        hanging.push(tokio::spawn(async move { client.unary(request).await }));
    }
    assert_eventually!(
        backend.calls() == 2,
        Duration::from_secs(10),
        "two best-effort calls hang"
    );
    let mut client = client(&strait).await;
    let rejected = client
        .unary(with_header("x-traffic-class", "best-effort"))
        .await
        .unwrap_err();
    assert_eq!(rejected.code(), Code::ResourceExhausted);
    assert!(
        rejected.message().contains("best-effort"),
        "{}",
        rejected.message()
    );
    // No header: the default class, the last one listed.
    assert_eq!(
        client
            .unary(EchoRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::ResourceExhausted
    );
    for _ in 0..5 {
        client
            .unary(with_header("x-traffic-class", "premium"))
            .await
            .unwrap();
    }
    assert_eq!(
        sample(
            &strait,
            "strait_rejected_requests_total",
            &["reason=\"class_limit\""]
        ),
        Some(2.0)
    );
    for call in hanging {
        call.abort();
    }
}

/// P2C over latency: of two backends, the faster gets nearly everything.
#[tokio::test]
async fn p2c_prefers_the_faster_backend() {
    let fast = TestBackend::start().await;
    let slow = TestBackend::start().await;
    slow.set_behaviour(Behaviour {
        delay: Duration::from_millis(40),
        ..Behaviour::default()
    });
    let strait = start_strait(&config(&[fast.url(), slow.url()], "", "")).await;
    let mut client = client(&strait).await;
    for _ in 0..100 {
        client.unary(EchoRequest::default()).await.unwrap();
    }
    assert!(
        fast.calls() >= 90,
        "fast {} slow {}",
        fast.calls(),
        slow.calls()
    );
}

/// The hash balancer keeps one key on one backend.
#[tokio::test]
async fn hash_balancing_is_sticky() {
    let a = TestBackend::start().await;
    let b = TestBackend::start().await;
    let strait = start_strait(&config(
        &[a.url(), b.url()],
        "    load_balancer: { policy: hash, hash_on: { header: x-user } }\n",
        "",
    ))
    .await;
    let mut client = client(&strait).await;
    for user in 0..20 {
        let before = (a.calls(), b.calls());
        for _ in 0..5 {
            client
                .unary(with_header("x-user", &format!("user-{user}")))
                .await
                .unwrap();
        }
        let after = (a.calls(), b.calls());
        assert!(
            after.0 - before.0 == 5 || after.1 - before.1 == 5,
            "user-{user} was split: {before:?} -> {after:?}"
        );
    }
    assert!(
        a.calls() > 0 && b.calls() > 0,
        "keys spread: {} {}",
        a.calls(),
        b.calls()
    );
}

/// Fallbacks answer when strait turns a request away: a static gRPC status, an HTTP
/// response, or another service.
#[tokio::test]
async fn fallbacks_answer_for_rejected_requests() {
    let backend = TestBackend::start().await;
    let backup = TestBackend::start().await;
    let yaml = format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         routers:\n\
         \x20 static:\n    match: {{ headers: {{ x-route: {{ exact: static }} }} }}\n    service: limited\n\
         \x20   fallback: {{ grpc_status: UNAVAILABLE, message: 'degraded: try later' }}\n\
         \x20 failover:\n    match: {{ headers: {{ x-route: {{ exact: failover }} }} }}\n    service: limited\n\
         \x20   fallback: {{ service: backup }}\n\
         \x20 http:\n    match: {{ path_prefix: /plain }}\n    service: limited\n\
         \x20   fallback: {{ http_status: 503, body: 'maintenance' }}\n\
         services:\n\
         \x20 limited:\n    servers: ['{}']\n    circuit_breakers: {{ max_requests: 1 }}\n\
         \x20 backup:\n    servers: ['{}']\n",
        backend.url(),
        backup.url()
    );
    let strait = start_strait(&yaml).await;
    let addr = strait.entrypoint("web").unwrap();
    // Fill `limited`'s one place.
    let mut hanging_client = echo_client(addr).await;
    let hang = in_mode(with_header("x-route", "static"), "hang");
    let hanging = tokio::spawn(async move { hanging_client.unary(hang).await });
    assert_eventually!(
        backend.calls() == 1,
        Duration::from_secs(10),
        "the call hangs"
    );

    let mut client = client(&strait).await;
    let status = client
        .unary(with_header("x-route", "static"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "degraded: try later");

    client
        .unary(with_header("x-route", "failover"))
        .await
        .unwrap();
    assert_eq!(backup.calls(), 1);

    let (status, body) = strait_test::http1(addr, "GET", "/plain", &[]).await;
    assert_eq!((status, body.as_str()), (503, "maintenance\n"));

    assert_eq!(
        sample(
            &strait,
            "strait_fallback_total",
            &["router=\"static\"", "reason=\"max_requests\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&strait, "strait_fallback_total", &["router=\"failover\""]),
        Some(1.0)
    );
    hanging.abort();
}

/// No healthy endpoint with `panic_mode: fail_fast`... here: every endpoint ejected and a
/// fallback: the fallback answers. Without a fallback, UNAVAILABLE names the cause.
#[tokio::test]
async fn fail_fast_answers_unavailable_when_all_are_ejected() {
    let a = TestBackend::start().await;
    let b = TestBackend::start().await;
    a.set_behaviour(failing(Code::Unavailable));
    b.set_behaviour(failing(Code::Unavailable));
    let strait = start_strait(&config(
        &[a.url(), b.url()],
        "    load_balancer: round_robin\n    panic_mode: fail_fast\n\
         \x20   outlier_detection: { consecutive_failures: 1, max_ejection_percent: 100 }\n",
        "",
    ))
    .await;
    let mut client = client(&strait).await;
    client.unary(EchoRequest::default()).await.unwrap_err();
    client.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(a.calls() + b.calls(), 2);
    let status = client.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("no healthy endpoint"),
        "{}",
        status.message()
    );
    assert_eq!(a.calls() + b.calls(), 2);
}

/// `panic_mode: try_all` (the default) still tries when every endpoint is ejected.
#[tokio::test]
async fn try_all_keeps_trying_when_all_are_ejected() {
    let a = TestBackend::start().await;
    a.set_behaviour(failing(Code::Unavailable));
    let strait = start_strait(&config(
        &[a.url()],
        "    outlier_detection: { consecutive_failures: 1, max_ejection_percent: 100 }\n",
        "",
    ))
    .await;
    let mut client = client(&strait).await;
    client.unary(EchoRequest::default()).await.unwrap_err();
    a.set_behaviour(Behaviour::default());
    client.unary(EchoRequest::default()).await.unwrap();
    assert_eq!(a.calls(), 2);
}

/// Fault injection aborts and delays the requests that carry the trigger header.
#[tokio::test]
async fn faults_are_injected_on_the_trigger_header() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&config(
        &[backend.url()],
        "",
        "    fault:\n      abort: { grpc_status: UNAVAILABLE, percent: 100 }\n      header_trigger: x-chaos\n",
    ))
    .await;
    let mut client = client(&strait).await;
    client.unary(EchoRequest::default()).await.unwrap();
    let status = client.unary(with_header("x-chaos", "1")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "fault injected");
    assert_eq!(backend.calls(), 1);
    assert_eq!(
        sample(
            &strait,
            "strait_faults_injected_total",
            &["reason=\"abort\""]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn delays_are_injected() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&config(
        &[backend.url()],
        "",
        "    fault: { delay: { duration: 200ms, percent: 100 } }\n",
    ))
    .await;
    let mut client = client(&strait).await;
    let started = tokio::time::Instant::now();
    client.unary(EchoRequest::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        sample(
            &strait,
            "strait_faults_injected_total",
            &["reason=\"delay\""]
        ),
        Some(1.0)
    );
}

/// A call whose client gives up before the answer leaves no trace in the endpoint's load:
/// P2C and least_request would otherwise avoid the endpoint for good.
#[tokio::test]
async fn a_cancelled_call_is_not_counted_in_flight_forever() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&config(&[backend.url()], "", "")).await;
    let mut client = client(&strait).await;
    let hang = hanging();
    let call = tokio::spawn(async move { client.unary(hang).await });
    let service = strait.proxy().services()[0].clone();
    assert_eventually!(
        service.endpoint_states()[0].active() == 1,
        Duration::from_secs(10),
        "the hanging call is in flight"
    );
    call.abort();
    assert_eventually!(
        service.endpoint_states()[0].active() == 0,
        Duration::from_secs(10),
        "the cancelled call is no longer counted"
    );
}

/// A try that outlives `per_try_timeout` is reset and counts as `reset`: with `reset` in
/// `retry_on` it is tried again, up to `attempts`.
#[tokio::test]
async fn a_per_try_timeout_is_retried_as_a_reset() {
    let backend = TestBackend::start().await;
    backend.set_behaviour(Behaviour {
        delay: Duration::from_secs(30),
        ..Behaviour::default()
    });
    let strait = start_strait(&config(
        &[backend.url()],
        "",
        "    retry: { attempts: 2, retry_on: [reset], per_try_timeout: 100ms, backoff_base: 1ms }\n",
    ))
    .await;
    let mut client = client(&strait).await;
    let status = client.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(backend.calls(), 2);
    assert_eq!(
        sample(&strait, "strait_retries_total", &["reason=\"reset\""]),
        Some(1.0)
    );
}

/// For requests that are not gRPC, `5xx` retries an HTTP 5xx answer.
#[tokio::test]
async fn http_5xx_is_retried_for_plain_http() {
    let backend = strait_test::http_echo::HttpEcho::start().await;
    backend.set_status("/flaky", 503);
    let strait = start_strait(&config(
        &[backend.url("http")],
        "",
        "    retry: { attempts: 3, retry_on: [5xx], backoff_base: 1ms }\n",
    ))
    .await;
    let addr = strait.entrypoint("web").unwrap();
    let (status, _) = strait_test::http1(addr, "GET", "/flaky", &[]).await;
    assert_eq!(status, 503, "the last answer goes to the client");
    assert_eq!(backend.requests(), 3);
    let (status, _) = strait_test::http1(addr, "GET", "/fine", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(backend.requests(), 4);
}

/// Retries stop at the client's deadline: no try starts after it, and the client hears
/// DEADLINE_EXCEEDED.
#[tokio::test]
async fn no_retry_outlives_the_clients_deadline() {
    let backend = TestBackend::start().await;
    backend.set_behaviour(Behaviour {
        delay: Duration::from_secs(30),
        ..Behaviour::default()
    });
    let strait = start_strait(&config(
        &[backend.url()],
        "",
        // The route's timeout is the deadline here (a client-side timeout would race it).
        "    timeout: 250ms\n    retry: { attempts: 10, retry_on: [reset], per_try_timeout: 100ms, backoff_base: 1ms }\n",
    ))
    .await;
    let mut client = client(&strait).await;
    let status = client.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let calls = backend.calls();
    assert!(
        (1..=3).contains(&calls),
        "{calls} tries within 250ms of 100ms each"
    );
}
