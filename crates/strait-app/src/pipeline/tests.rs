//! The phases one at a time, over a snapshot built from a config and a connection that
//! never saw a socket. The call phase has its own tests in strait-balance; the whole path
//! runs on real sockets in `tests/`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Response;
use http::{Request, StatusCode, Version};
use http_body_util::BodyExt;
use strait_config::{parse_str, Format};
use strait_core::{Body, ErrorKind, RequestHead};
use strait_http::{ConnInfo, ListenerConfig, Reply, ReplyFormat};
use strait_telemetry::{AccessLog, Metrics};

use super::*;
use crate::snapshot::Snapshot;

const CONFIG: &str = "\
entrypoints:
  web: { address: 127.0.0.1:0 }
services:
  s: { servers: [h2c://127.0.0.1:9] }
routers:
  faulty:
    match: { path_prefix: /faulty }
    service: s
    fault: { abort: { grpc_status: UNAVAILABLE, percent: 100 } }
  timed:
    match: { path_prefix: / }
    service: s
    timeout: 100ms
";

struct World {
    snapshot: Arc<Snapshot>,
    conn: Arc<ConnInfo>,
    metrics: Metrics,
}

fn world() -> World {
    let config = parse_str(CONFIG, Format::Yaml, "test.yaml").unwrap();
    let metrics = Metrics::new();
    let snapshot = Arc::new(Snapshot::new(&config, AccessLog::disabled(), &metrics).unwrap());
    let remote: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let conn = Arc::new(ConnInfo::new(
        Arc::from("web"),
        remote,
        local,
        None,
        Arc::new(ListenerConfig::default()),
    ));
    World {
        snapshot,
        conn,
        metrics,
    }
}

impl World {
    fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            snapshot: &self.snapshot,
            entrypoint: self.snapshot.entrypoints.get("web"),
            conn: &self.conn,
            metrics: &self.metrics,
        }
    }
}

fn grpc(path: &str) -> Request<Body> {
    Request::post(format!("http://api.example{path}"))
        .version(Version::HTTP_2)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(strait_core::empty())
        .unwrap()
}

/// The phases between accept and log, as `serve` runs them.
async fn run(
    p: &Pipeline<'_>,
    ctx: &mut RequestCtx,
    head: RequestHead,
    body: Body,
) -> Response<Body> {
    match p.phases(ctx, head, body).await {
        Ok(response) => response,
        Err(reply) => p.respond(ctx, reply),
    }
}

#[tokio::test]
async fn accept_settles_the_id_the_record_and_the_reply_format() {
    let w = world();
    let (ctx, head, _) = w.pipeline().accept(grpc("/pkg.Svc/M"));
    assert_eq!(ctx.format, ReplyFormat::Grpc);
    let id = head.headers()["x-request-id"].clone();
    assert_eq!(ctx.record.request_id.as_ref(), Some(&id));
    assert!(ctx.record.grpc);
    assert_eq!(ctx.record.client, Some(w.conn.remote));
}

#[tokio::test]
async fn route_hands_back_the_routers_runtime_or_names_what_did_not_match() {
    let w = world();
    let p = w.pipeline();
    let (mut ctx, head, _) = p.accept(grpc("/pkg.Svc/M"));
    let route = p.route(&mut ctx, &head).unwrap();
    assert_eq!(&*route.name, "timed");
    assert_eq!(&**route.service.name(), "s");
    assert_eq!(ctx.record.router.as_deref(), Some("timed"));
    assert_eq!(ctx.record.service.as_deref(), Some("s"));

    // A listener whose entrypoint a reload removed matches nothing.
    let gone = Pipeline {
        entrypoint: None,
        ..w.pipeline()
    };
    let Err(Reply::Error(err)) = gone.route(&mut ctx, &head) else {
        panic!("no router may match");
    };
    assert_eq!(err.kind(), ErrorKind::NoRoute);
    assert_eq!(
        err.to_string(),
        "no router on entrypoint `web` matches POST /pkg.Svc/M"
    );
}

#[tokio::test]
async fn admit_sets_the_deadline_and_makes_the_head_an_upstream_one() {
    let w = world();
    let p = w.pipeline();
    let mut request = grpc("/pkg.Svc/M");
    request
        .headers_mut()
        .insert("grpc-timeout", "10S".parse().unwrap());
    request
        .headers_mut()
        .insert("connection", "x-hop".parse().unwrap());
    request.headers_mut().insert("x-hop", "1".parse().unwrap());
    let (mut ctx, head, body) = p.accept(request);
    let route = p.route(&mut ctx, &head).unwrap();
    let (call, request) = p.admit(&ctx, route, head, body);
    // The router's 100ms is sooner than the client's 10s, and the backend is told so.
    let deadline = call.deadline.expect("a deadline");
    assert!(deadline.at() <= ctx.started + Duration::from_millis(100));
    let told = &request.headers()["grpc-timeout"];
    let left = strait_grpc::parse_timeout(told.as_bytes()).unwrap();
    assert!(left <= Duration::from_millis(100), "grpc-timeout {told:?}");
    assert!(!request.headers().contains_key("x-hop"));
    assert!(!request.headers().contains_key("connection"));
    assert_eq!(request.headers()["x-forwarded-for"], "192.0.2.7");
    assert_eq!(request.uri(), "http://api.example/pkg.Svc/M");
    assert!(
        call.idle.is_none(),
        "no idle timer unless the router sets one"
    );
}

#[tokio::test]
async fn a_filter_that_answers_is_responded_to_in_the_clients_form() {
    let w = world();
    let p = w.pipeline();
    let (mut ctx, head, body) = p.accept(grpc("/faulty/x"));
    let response = run(&p, &mut ctx, head, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "14");
    assert_eq!(response.headers()["grpc-message"], "fault injected");
    assert_eq!(ctx.record.router.as_deref(), Some("faulty"));
    assert!(
        ctx.record.error.is_some(),
        "the access log says strait answered"
    );
    assert!(ctx.pending.is_none(), "nothing was sent upstream");
    let metrics = w.metrics.encode();
    assert!(
        metrics.contains("strait_faults_injected_total{router=\"faulty\",reason=\"abort\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn grpc_over_http1_is_refused_before_routing() {
    let w = world();
    let p = w.pipeline();
    let mut request = grpc("/pkg.Svc/M");
    *request.version_mut() = Version::HTTP_11;
    let (mut ctx, head, body) = p.accept(request);
    let response = run(&p, &mut ctx, head, body).await;
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(ctx.record.router, None);
    assert_eq!(ctx.record.error.as_deref(), Some("gRPC over HTTP/1.1"));
}

#[tokio::test]
async fn log_records_the_request_once_its_response_stream_ends() {
    let w = world();
    let p = w.pipeline();
    let (mut ctx, head, body) = p.accept(grpc("/faulty/x"));
    let response = run(&p, &mut ctx, head, body).await;
    let response = log(ctx, response, w.snapshot.clone(), w.metrics.clone());
    let counted = "router=\"faulty\"";
    let requests = |m: &str| {
        m.lines()
            .any(|l| l.starts_with("strait_requests_total{") && l.contains(counted))
    };
    assert!(!requests(&w.metrics.encode()), "not before the stream ends");
    let _ = response.into_body().collect().await.unwrap();
    let metrics = w.metrics.encode();
    assert!(requests(&metrics), "{metrics}");
}

#[tokio::test]
async fn a_panic_costs_one_request_an_internal_status() {
    let w = world();
    let p = w.pipeline();
    let (mut ctx, _, _) = p.accept(grpc("/pkg.Svc/M"));
    let response = p.panicked(&mut ctx, &"boom");
    assert_eq!(response.headers()["grpc-status"], "13");
    assert_eq!(ctx.record.error.as_deref(), Some("panic: boom"));
}
