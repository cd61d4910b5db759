//! The default balancer (P2C) at low and at high load, against real tonic backends: calls
//! sent one at a time reach every healthy backend at once, an endpoint back from an ejection
//! or from failed health checks gets traffic again within two seconds, and under concurrency
//! the faster backend still gets most of the calls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use strait_grpc::echo::echo_client::EchoClient;
use strait_grpc::echo::EchoRequest;
use strait_test::backend::{Behaviour, TestBackend};
use strait_test::{assert_eventually, echo_client, start_strait, Running};
use tokio::time::{Instant, MissedTickBehavior};
use tonic::transport::Channel;
use tonic::Code;

/// The pace of the low-rate tests: 20 calls a second, one at a time.
const PACE: Duration = Duration::from_millis(50);

/// One service with `servers` behind a catch-all router, with extra service settings.
fn config(servers: &[String], service: &str) -> String {
    let servers: String = servers.iter().map(|s| format!("      - {s}\n")).collect();
    format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         routers:\n  r: {{ service: echo }}\n\
         services:\n  echo:\n    servers:\n{servers}{service}"
    )
}

async fn client(strait: &Running) -> EchoClient<Channel> {
    echo_client(strait.entrypoint("web").unwrap()).await
}

/// What a run of paced calls saw of one backend.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// The first call (1-based) that reached it, and how long after the run started.
    first: Option<(usize, Duration)>,
    /// The longest run of calls in a row that did not reach it.
    longest_gap: usize,
    calls: usize,
}

/// A client sending `calls` calls one after another, one every [`PACE`], and which of
/// `backends` each reached. `until`, checked after each call, ends the run early.
async fn paced(
    client: &mut EchoClient<Channel>,
    backends: &[&TestBackend],
    calls: usize,
    mut until: impl FnMut(&[Seen]) -> bool,
) -> Vec<Seen> {
    let mut seen = vec![Seen::default(); backends.len()];
    let mut gaps = vec![0; backends.len()];
    let mut ticks = tokio::time::interval(PACE);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let start = Instant::now();
    for call in 1..=calls {
        ticks.tick().await;
        let before: Vec<usize> = backends.iter().map(|b| b.calls()).collect();
        // Failures are part of some runs (a backend being ejected); which backend the call
        // reached is what counts here.
        let _ = client.unary(EchoRequest::default()).await;
        for (i, backend) in backends.iter().enumerate() {
            if backend.calls() > before[i] {
                seen[i].calls += 1;
                seen[i].first.get_or_insert((call, start.elapsed()));
                gaps[i] = 0;
            } else {
                gaps[i] += 1;
                seen[i].longest_gap = seen[i].longest_gap.max(gaps[i]);
            }
        }
        if until(&seen) {
            break;
        }
    }
    seen
}

/// Paced calls while backend 1 is out, until `back` says it is in again and a call reaches
/// it; which call that was, counted from the first that could have (1: at once). It must get
/// one within 40 calls (2 s at 20/s), and none while it was out.
async fn reached_again(
    client: &mut EchoClient<Channel>,
    backends: &[&TestBackend],
    back: impl Fn() -> bool,
) -> usize {
    // `back` is checked after each call: it went true after the check before call
    // `back_after` and before the one after it, so that call is the first it may take.
    let (mut calls, mut back_after) = (0, None);
    let seen = paced(client, backends, 400, |seen| {
        calls += 1;
        if back_after.is_none() && back() {
            back_after = Some(calls);
        }
        seen[1].calls > 0
    })
    .await;
    let back_after = back_after.unwrap_or_else(|| panic!("it never came back: {seen:?}"));
    let first = seen[1].first.map(|(call, _)| call);
    assert!(
        first.is_some_and(|call| call >= back_after && call < back_after + 40),
        "back by call {back_after}, first call to it: {first:?}"
    );
    first.unwrap_or(0) + 1 - back_after
}

/// A fresh proxy, calls one at a time at 20/s: every backend answers within the first
/// second (20 calls), and none goes a second without a call after that.
async fn every_backend_is_reached_at_low_rate(n: usize) {
    let backends: Vec<TestBackend> =
        futures_util::future::join_all((0..n).map(|_| TestBackend::start())).await;
    let urls: Vec<String> = backends.iter().map(TestBackend::url).collect();
    let strait = start_strait(&config(&urls, "")).await;
    let mut client = client(&strait).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let seen = paced(&mut client, &refs, 60, |_| false).await;
    for (i, s) in seen.iter().enumerate() {
        let (call, after) = s
            .first
            .unwrap_or_else(|| panic!("backend {i} never reached: {seen:?}"));
        eprintln!(
            "{n} backends: backend {i} first reached by call {call} ({} ms), {} of 60 calls, longest gap {} calls",
            after.as_millis(),
            s.calls,
            s.longest_gap
        );
        assert!(
            call <= 20,
            "backend {i} first reached by call {call}: {seen:?}"
        );
        assert!(
            s.longest_gap <= 20,
            "backend {i} went {} calls without one: {seen:?}",
            s.longest_gap
        );
    }
}

#[tokio::test]
async fn two_backends_are_both_reached_at_low_rate() {
    every_backend_is_reached_at_low_rate(2).await;
}

#[tokio::test]
async fn three_backends_are_all_reached_at_low_rate() {
    every_backend_is_reached_at_low_rate(3).await;
}

/// A backend ejected by outlier detection, twice (the second ejection lasts longer), gets
/// calls again within two seconds (40 calls at 20/s) of each ejection ending, although the
/// latency last measured on it (slow failures) is far above the other backend's.
#[tokio::test]
async fn an_endpoint_back_from_ejection_gets_traffic_at_once() {
    let good = TestBackend::start().await;
    let bad = TestBackend::start().await;
    let strait = start_strait(&config(
        &[good.url(), bad.url()],
        "    outlier_detection: { consecutive_failures: 2, base_ejection_time: 1s }\n",
    ))
    .await;
    let mut client = client(&strait).await;
    let service = strait.proxy().services()[0].clone();
    let backends = [&good, &bad];
    for round in 1..=2 {
        // Failing slowly, as a struggling backend does: its latency is high when it leaves.
        bad.set_behaviour(Behaviour {
            fail: Some(Code::Unavailable),
            delay: Duration::from_millis(150),
        });
        let ejected = paced(&mut client, &backends, 200, |_| service.is_ejected(1)).await;
        assert!(
            service.is_ejected(1),
            "round {round}: not ejected: {ejected:?}"
        );
        bad.set_behaviour(Behaviour::default());
        let nth = reached_again(&mut client, &backends, || !service.is_ejected(1)).await;
        eprintln!(
            "after ejection {round}: reached again by call {nth} after it ended (within {} ms at 20 calls/s)",
            nth as u128 * PACE.as_millis()
        );
    }
}

/// The same for an endpoint that failed its health checks and passes them again.
#[tokio::test]
async fn an_endpoint_back_from_failed_health_checks_gets_traffic_at_once() {
    let a = TestBackend::start().await;
    let b = TestBackend::start().await;
    let strait = start_strait(&config(
        &[a.url(), b.url()],
        "    health_check: { type: grpc, interval: 100ms, timeout: 90ms, \
         healthy_threshold: 1, unhealthy_threshold: 1 }\n",
    ))
    .await;
    let mut client = client(&strait).await;
    let service = strait.proxy().services()[0].clone();
    let healthy = |i: usize| service.endpoint_states()[i].is_healthy();
    let backends = [&a, &b];
    b.set_serving(false).await;
    assert_eventually!(!healthy(1), Duration::from_secs(10), "b stayed healthy");
    // Calls arrive while it is out, so the balancer's picture of it grows old.
    let out = paced(&mut client, &backends, 20, |_| false).await;
    assert_eq!(out[1].calls, 0, "an unhealthy endpoint got calls: {out:?}");
    b.set_serving(true).await;
    let nth = reached_again(&mut client, &backends, || healthy(1)).await;
    eprintln!(
        "after failed health checks: reached again by call {nth} after it passed (within {} ms at 20 calls/s)",
        nth as u128 * PACE.as_millis()
    );
}

/// Under concurrency P2C still prefers the faster backend: 8 callers at once, a 40 ms
/// backend beside a fast one.
#[tokio::test]
async fn p2c_prefers_the_faster_backend_under_concurrency() {
    let fast = TestBackend::start().await;
    let slow = TestBackend::start().await;
    slow.set_behaviour(Behaviour {
        delay: Duration::from_millis(40),
        ..Behaviour::default()
    });
    let strait = start_strait(&config(&[fast.url(), slow.url()], "")).await;
    let channel = strait_test::channel(strait.entrypoint("web").unwrap()).await;
    let callers = (0..8).map(|_| {
        let mut client = EchoClient::new(channel.clone());
        tokio::spawn(async move {
            for _ in 0..50 {
                client.unary(EchoRequest::default()).await.unwrap();
            }
        })
    });
    for caller in futures_util::future::join_all(callers).await {
        caller.unwrap();
    }
    assert_eq!(fast.calls() + slow.calls(), 400);
    assert!(
        fast.calls() >= 360,
        "fast {} slow {}",
        fast.calls(),
        slow.calls()
    );
}
