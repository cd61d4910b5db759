use std::collections::VecDeque;
use std::sync::Mutex;

use strait_config::{Http2Settings, Lifecycle, ServiceLimits, UpstreamScheme, UpstreamUrl};
use tokio::time::Instant;

use super::*;

fn config(healthy_threshold: u32, unhealthy_threshold: u32) -> HealthCheck {
    HealthCheck {
        kind: HealthCheckKind::Tcp,
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(1),
        healthy_threshold,
        unhealthy_threshold,
        jitter: Duration::ZERO,
    }
}

fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[test]
fn the_request_encodes_the_service_name_as_field_one() {
    assert_eq!(&grpc_request("")[..], &[0, 0, 0, 0, 0]);
    assert_eq!(
        &grpc_request("shop.Orders")[..],
        &frame(b"\x0a\x0bshop.Orders")[..]
    );
    let long = "s".repeat(200);
    let encoded = grpc_request(&long);
    // 200 needs a two-byte varint: 0xc8 0x01.
    assert_eq!(&encoded[5..8], &[0x0a, 0xc8, 0x01]);
    assert_eq!(encoded.len(), 5 + 3 + 200);
}

#[test]
fn the_serving_status_is_read_from_field_one() {
    assert_eq!(serving_status(&frame(&[0x08, 1])), Ok(1));
    assert_eq!(serving_status(&frame(&[0x08, 2])), Ok(2));
    // proto3: an absent field is 0 (UNKNOWN).
    assert_eq!(serving_status(&frame(&[])), Ok(0));
    // Unknown fields of every wire type are skipped.
    let mut message = vec![0x10, 0x96, 0x01]; // field 2, varint 150
    message.extend_from_slice(&[0x1a, 2, b'h', b'i']); // field 3, bytes
    message.extend_from_slice(&[0x21, 0, 0, 0, 0, 0, 0, 0, 0]); // field 4, fixed64
    message.extend_from_slice(&[0x2d, 0, 0, 0, 0]); // field 5, fixed32
    message.extend_from_slice(&[0x08, 1]);
    assert_eq!(serving_status(&frame(&message)), Ok(1));
}

#[test]
fn malformed_health_answers_fail_with_a_reason() {
    for (data, why) in [
        (vec![], "no message"),
        (vec![0, 0, 0], "no message"),
        (vec![1, 0, 0, 0, 2, 0x08, 1], "compressed"),
        (
            vec![0, 0, 0, 0, 9, 0x08, 1],
            "shorter than its length prefix",
        ),
        (frame(&[0x08]), "bad status"),
        (frame(&[0x1a, 5, b'x']), "short field"),
        (frame(&[0x0f]), "unknown wire type"),
    ] {
        let err = serving_status(&data).unwrap_err();
        assert!(err.contains(why), "{data:?}: {err}");
    }
}

#[test]
fn thresholds_count_checks_in_a_row() {
    let mut tracker = Tracker::new(&config(2, 3));
    assert_eq!(tracker.record(false), None);
    assert_eq!(tracker.record(false), None);
    // A pass in between starts the count again.
    assert_eq!(tracker.record(true), None);
    assert_eq!(tracker.record(false), None);
    assert_eq!(tracker.record(false), None);
    assert_eq!(tracker.record(false), Some(false));
    assert_eq!(tracker.record(false), None);
    assert_eq!(tracker.record(true), None);
    assert_eq!(tracker.record(false), None);
    assert_eq!(tracker.record(true), None);
    assert_eq!(tracker.record(true), Some(true));
    assert_eq!(tracker.record(true), None);
}

/// The loop under a paused clock: the first check within a second, then one per interval;
/// the endpoint leaves after 3 failures in a row and returns after 2 passes; the metrics
/// follow each check.
#[tokio::test(start_paused = true)]
async fn the_endpoint_leaves_and_returns_at_the_thresholds() {
    let config = config(2, 3);
    let start = Instant::now();
    let state = Arc::new(EndpointState::new(start));
    let metrics = Metrics::new();
    // (when the check ran, whether the endpoint was healthy before it)
    let seen: Arc<Mutex<Vec<(Duration, bool)>>> = Arc::default();
    let mut script: VecDeque<bool> = [false, false, false, true, false, true, true, true].into();
    let total = script.len();
    let task = tokio::spawn(watch(
        &config,
        Arc::from("orders"),
        Arc::from("h2c://127.0.0.1:1"),
        state.clone(),
        metrics.clone(),
        {
            let seen = seen.clone();
            let state = state.clone();
            move || {
                seen.lock()
                    .unwrap()
                    .push((start.elapsed(), state.is_healthy()));
                let passed = script.pop_front().unwrap_or(true);
                async move {
                    if passed {
                        Ok(())
                    } else {
                        Err("status 503".to_owned())
                    }
                }
            }
        },
    ));
    // The last scripted check runs by 71s, the one after it not before 80s.
    tokio::time::sleep(Duration::from_secs(75)).await;
    task.abort();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), total, "{seen:?}");
    let first = seen[0].0;
    assert!(first <= Duration::from_secs(1), "first check at {first:?}");
    for (i, (at, _)) in seen.iter().enumerate() {
        assert_eq!(*at, first + Duration::from_secs(10) * i as u32, "{seen:?}");
    }
    let healthy: Vec<bool> = seen.iter().map(|(_, h)| *h).collect();
    assert_eq!(
        healthy,
        [true, true, true, false, false, false, false, true]
    );
    assert!(state.is_healthy());

    let text = metrics.encode();
    let line = |result: &str| {
        format!(
            "strait_health_checks_total{{service=\"orders\",endpoint=\"h2c://127.0.0.1:1\",result=\"{result}\"}} "
        )
    };
    assert!(text.contains(&format!("{}4", line("pass"))), "{text}");
    assert!(text.contains(&format!("{}4", line("fail"))), "{text}");
    assert!(
        text.contains(
            "strait_endpoint_healthy{service=\"orders\",endpoint=\"h2c://127.0.0.1:1\"} 1"
        ),
        "{text}"
    );
}

/// A real TCP check against a closed port fails with the connect error; dropping the checks
/// stops the task and lets go of the endpoint and its state.
#[tokio::test]
async fn dropping_the_checks_stops_them_and_releases_the_endpoint() {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = UpstreamUrl {
        scheme: UpstreamScheme::H2c,
        host: "127.0.0.1".to_owned(),
        port,
    };
    let metrics = Metrics::new();
    let endpoint = Arc::new(Endpoint::new(
        &url,
        None,
        &Http2Settings::default(),
        &Lifecycle::default(),
        &ServiceLimits::default(),
        Duration::from_secs(5),
        &metrics,
    ));
    let probe = Probe::new(&config(1, 1));
    let err = probe.check(&endpoint).await.unwrap_err();
    assert!(err.contains("connect failed"), "{err}");

    let mut check = config(1, 1);
    check.interval = Duration::from_millis(20);
    let state = Arc::new(EndpointState::new(Instant::now()));
    let checks = Checks::start(
        &Arc::from("orders"),
        Some(&check),
        std::slice::from_ref(&endpoint),
        std::slice::from_ref(&state),
        &metrics,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.is_healthy() {
        assert!(
            Instant::now() < deadline,
            "the closed port never failed a check"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(Arc::strong_count(&endpoint) > 1);
    drop(checks);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&endpoint) > 1 || Arc::strong_count(&state) > 1 {
        assert!(
            Instant::now() < deadline,
            "the check task kept the endpoint"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn without_a_runtime_no_check_starts() {
    let url = UpstreamUrl {
        scheme: UpstreamScheme::H2c,
        host: "127.0.0.1".to_owned(),
        port: 1,
    };
    let metrics = Metrics::new();
    let endpoint = Arc::new(Endpoint::new(
        &url,
        None,
        &Http2Settings::default(),
        &Lifecycle::default(),
        &ServiceLimits::default(),
        Duration::from_secs(5),
        &metrics,
    ));
    let state = Arc::new(EndpointState::new(Instant::now()));
    let checks = Checks::start(
        &Arc::from("orders"),
        Some(&config(1, 1)),
        &[endpoint],
        &[state],
        &metrics,
    );
    assert!(checks.tasks.is_empty());
}
