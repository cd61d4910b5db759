//! `Service::call` on its own: a real endpoint (strait-upstream over loopback) in front of an
//! in-process HTTP/2 backend whose answers each test scripts, without a listener or router.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use strait_config::{parse_str, Format};
use strait_core::{Body, ErrorKind};
use strait_telemetry::Metrics;
use strait_upstream::Endpoint;
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::*;

/// What the backend does with its n-th request (0-based).
#[derive(Clone, Copy, Debug)]
enum Script {
    /// Answers trailers-only with this grpc-status.
    Status(u32),
    /// Never answers; counts a reset when the proxy gives up on the stream.
    Hang,
}

struct Backend {
    addr: SocketAddr,
    /// The headers of every request, in order.
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    /// Streams the proxy reset.
    resets: Arc<AtomicUsize>,
}

async fn backend(script: impl Fn(usize) -> Script + Send + Sync + 'static) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let resets = Arc::new(AtomicUsize::new(0));
    let script = Arc::new(script);
    let (seen2, resets2) = (seen.clone(), resets.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (seen, resets, script) = (seen2.clone(), resets2.clone(), script.clone());
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(socket).await.unwrap();
                while let Some(Ok((request, mut respond))) = conn.accept().await {
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(request.headers().clone());
                        seen.len() - 1
                    };
                    match script(n) {
                        Script::Status(code) => {
                            let response = Response::builder()
                                .header("content-type", "application/grpc")
                                .header("grpc-status", code.to_string())
                                .body(())
                                .unwrap();
                            let _ = respond.send_response(response, true);
                        }
                        Script::Hang => {
                            let resets = resets.clone();
                            tokio::spawn(async move {
                                let _ = poll_fn(|cx| respond.poll_reset(cx)).await;
                                resets.fetch_add(1, Ordering::SeqCst);
                            });
                        }
                    }
                }
            });
        }
    });
    Backend { addr, seen, resets }
}

/// A service `s` over `backends`, and router `r`'s retry policy from `retry` (YAML, or empty).
fn service(backends: &[&Backend], retry: &str) -> (Arc<Service>, Retries, Metrics) {
    service_with(backends, "", retry)
}

/// As [`service`], with more of the service's settings (YAML at its indentation).
fn service_with(
    backends: &[&Backend],
    settings: &str,
    retry: &str,
) -> (Arc<Service>, Retries, Metrics) {
    let servers: Vec<String> = backends
        .iter()
        .map(|b| format!("h2c://{}", b.addr))
        .collect();
    let yaml = format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         services:\n  s:\n    servers: [{}]\n    load_balancer: round_robin\n{settings}\
         routers:\n  r:\n    match: {{ path_prefix: / }}\n    service: s\n{retry}",
        servers.join(", ")
    );
    let config = parse_str(&yaml, Format::Yaml, "test.yaml").unwrap();
    let metrics = Metrics::new();
    let s = &config.services["s"];
    let endpoints = s
        .servers
        .iter()
        .map(|server| {
            Arc::new(Endpoint::new(
                &server.url,
                None,
                &s.http2,
                &s.lifecycle,
                &s.limits,
                s.connect_timeout,
                &metrics,
            ))
        })
        .collect();
    let service = Arc::new(Service::new("s", s, endpoints, &metrics));
    let retries = Retries::new(config.routers["r"].retry.as_ref());
    (service, retries, metrics)
}

fn grpc_request() -> Request<Body> {
    Request::post("http://backend/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(strait_core::full(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap()
}

fn cx<'a>(router: &'a Arc<str>, retries: &'a Retries) -> CallContext<'a> {
    CallContext {
        router,
        retries,
        class: None,
        deadline: None,
        idle: None,
        grpc: true,
        hash_key: None,
    }
}

fn grpc_status(response: &Response<Body>) -> &str {
    response.headers()["grpc-status"].to_str().unwrap()
}

const RETRY_UNAVAILABLE: &str =
    "    retry: { attempts: 3, retry_on: [unavailable], backoff_base: 1ms, backoff_max: 2ms }\n";

#[tokio::test]
async fn an_unavailable_answer_is_retried_and_each_try_is_numbered() {
    let b = backend(|n| Script::Status(if n < 2 { 14 } else { 0 })).await;
    let (service, retries, metrics) = service(&[&b], RETRY_UNAVAILABLE);
    let router: Arc<str> = Arc::from("r");
    let _active = retries.start();
    let (response, completion) = service
        .call(grpc_request(), &cx(&router, &retries))
        .await
        .unwrap();
    assert_eq!(grpc_status(&response), "0");
    assert_eq!(completion.tries(), 3);
    let seen = b.seen.lock().unwrap();
    let attempts: Vec<_> = seen
        .iter()
        .map(|h| {
            h.get("grpc-previous-rpc-attempts")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(attempts, [None, Some("1".into()), Some("2".into())]);
    assert!(metrics
        .encode()
        .contains("strait_retries_total{router=\"r\",reason=\"unavailable\"} 2"));
}

#[tokio::test]
async fn when_tries_run_out_the_last_answer_is_the_answer() {
    let b = backend(|_| Script::Status(14)).await;
    let (service, retries, _) = service(&[&b], RETRY_UNAVAILABLE);
    let router: Arc<str> = Arc::from("r");
    let _active = retries.start();
    let (response, completion) = service
        .call(grpc_request(), &cx(&router, &retries))
        .await
        .unwrap();
    assert_eq!(grpc_status(&response), "14");
    assert_eq!(completion.tries(), 3);
    assert_eq!(b.seen.lock().unwrap().len(), 3);
    // The answer's endpoint counts it in flight until its stream ends.
    assert_eq!(service.endpoint_states()[0].active(), 1);
    completion.finish(&Ending::default());
    assert_eq!(service.endpoint_states()[0].active(), 0);
}

#[tokio::test]
async fn a_spent_budget_stops_retries() {
    let b = backend(|_| Script::Status(14)).await;
    let retry =
        "    retry: { attempts: 3, retry_on: [unavailable], budget_percent: 0, budget_min: 0 }\n";
    let (service, retries, metrics) = service(&[&b], retry);
    let router: Arc<str> = Arc::from("r");
    let _active = retries.start();
    let (response, completion) = service
        .call(grpc_request(), &cx(&router, &retries))
        .await
        .unwrap();
    assert_eq!(grpc_status(&response), "14");
    assert_eq!(completion.tries(), 1, "no retry past the budget");
    assert!(metrics
        .encode()
        .contains("strait_retry_budget_exhausted_total{router=\"r\"} 1"));
}

#[tokio::test]
async fn the_deadline_ends_the_call_and_resets_the_stream() {
    let b = backend(|_| Script::Hang).await;
    let (service, retries, _) = service(&[&b], "");
    let router: Arc<str> = Arc::from("r");
    let mut cx = cx(&router, &retries);
    cx.deadline = Deadline::for_request(
        &HeaderMap::new(),
        Some(Duration::from_millis(200)),
        Instant::now(),
    );
    let Err(Failure::Failed { error, tries }) = service.call(grpc_request(), &cx).await else {
        panic!("the call must fail at its deadline");
    };
    assert_eq!(error.kind(), ErrorKind::DeadlineExceeded);
    assert_eq!(error.to_string(), "deadline exceeded (router `r`)");
    assert_eq!(tries, 1);
    eventually(|| b.resets.load(Ordering::SeqCst) == 1).await;
    assert_eq!(service.endpoint_states()[0].active(), 0);
}

#[tokio::test]
async fn a_per_try_timeout_moves_the_request_to_another_try() {
    let b = backend(|n| {
        if n == 0 {
            Script::Hang
        } else {
            Script::Status(0)
        }
    })
    .await;
    let retry = "    retry: { attempts: 2, retry_on: [reset], per_try_timeout: 200ms, backoff_base: 1ms, backoff_max: 2ms }\n";
    let (service, retries, _) = service(&[&b], retry);
    let router: Arc<str> = Arc::from("r");
    let _active = retries.start();
    let (response, completion) = service
        .call(grpc_request(), &cx(&router, &retries))
        .await
        .unwrap();
    assert_eq!(grpc_status(&response), "0");
    assert_eq!(completion.tries(), 2);
    eventually(|| b.resets.load(Ordering::SeqCst) == 1).await;
}

#[tokio::test]
async fn a_cancelled_call_leaves_nothing_in_flight() {
    let b = backend(|_| Script::Hang).await;
    let (service, retries, _) = service(&[&b], "");
    let router: Arc<str> = Arc::from("r");
    let cx = cx(&router, &retries);
    let mut call = Box::pin(service.call(grpc_request(), &cx));
    // Drive the call until the backend has the request, then drop it as a client would.
    tokio::select! {
        _ = &mut call => panic!("the backend never answers"),
        () = eventually(|| b.seen.lock().unwrap().len() == 1) => {}
    }
    assert_eq!(service.endpoint_states()[0].active(), 1);
    drop(call);
    assert_eq!(service.endpoint_states()[0].active(), 0);
    eventually(|| b.resets.load(Ordering::SeqCst) == 1).await;
}

#[tokio::test]
async fn with_no_healthy_endpoint_the_request_comes_back_whole() {
    let b = backend(|_| Script::Status(0)).await;
    let (service, retries, _) = service_with(&[&b], "    panic_mode: fail_fast\n", "");
    let router: Arc<str> = Arc::from("r");
    // No endpoint can take it, and the service fails fast then: the request comes back for
    // the router's fallback.
    service.endpoint_states()[0].set_healthy(false);
    let Err(Failure::Rejected {
        request,
        error,
        reason,
    }) = service.call(grpc_request(), &cx(&router, &retries)).await
    else {
        panic!("the call must be turned away");
    };
    assert_eq!(reason, "no_healthy_endpoint");
    assert_eq!(error.kind(), ErrorKind::Overloaded);
    assert_eq!(request.uri().path(), "/pkg.Svc/Call");
    let body = request.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"\0\0\0\0\0", "the body comes back whole");
    assert!(b.seen.lock().unwrap().is_empty());
}

/// Polls `condition` until it holds, failing after 10 s.
async fn eventually(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "condition not met within 10 s");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
