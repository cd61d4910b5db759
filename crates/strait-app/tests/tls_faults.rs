//! TLS fault injection for rehearsals (`tls.fault`): a service's upstream handshakes aborted
//! or delayed, an entrypoint's client handshakes delayed; each counted, and the proxy keeps
//! serving everything else. Real TLS both ways, certificates from the test CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use strait_grpc::echo::{EchoClient, EchoRequest};
use strait_test::backend::TestBackend;
use strait_test::tls::TestCa;
use strait_test::{echo_client, start_strait, Running};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Code, Request};

/// A plaintext entrypoint `web` with an access log; router `faulty` to service `b`, the `https://` server `backend` with `tls` settings `fault` (a flow
/// mapping) and `service` lines; router `healthy` (requests with `x-route: healthy`) to the
/// h2c server `healthy`.
fn upstream_config(
    ca: &TestCa,
    backend: SocketAddr,
    healthy: &str,
    log: &Path,
    fault: &str,
    service: &str,
) -> String {
    format!(
        "access_log: {{ path: '{}' }}\n\
         entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         routers:\n  faulty:\n    service: b\n\
         \x20 healthy: {{ match: {{ headers: {{ x-route: healthy }} }}, service: h }}\n\
         services:\n  b:\n    servers: ['https://{backend}']\n{service}\
         \x20   tls: {{ ca_file: '{}'{fault} }}\n\
         \x20 h:\n    servers: ['{healthy}']\n",
        log.display(),
        ca.ca_file().display(),
    )
}

fn request(text: &str) -> EchoRequest {
    EchoRequest {
        payload: text.to_owned().into(),
        repeat: 0,
    }
}

fn to_healthy(text: &str) -> Request<EchoRequest> {
    let mut request = Request::new(request(text));
    request
        .metadata_mut()
        .insert("x-route", "healthy".parse().unwrap());
    request
}

/// The value of the sample of `name` whose labels contain every one of `parts`; 0 if none.
fn sample(strait: &Running, name: &str, parts: &[&str]) -> f64 {
    strait
        .metrics()
        .encode()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && parts.iter().all(|p| l.contains(p)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

struct Upstream {
    _ca: TestCa,
    backend: TestBackend,
    healthy: TestBackend,
    strait: Running,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

async fn upstream(fault: &str, service: &str) -> Upstream {
    let ca = TestCa::new();
    let backend = TestBackend::start_tls(&ca.server(&["127.0.0.1"])).await;
    let healthy = TestBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let strait = start_strait(&upstream_config(
        &ca,
        backend.addr,
        &healthy.url(),
        &log,
        fault,
        service,
    ))
    .await;
    Upstream {
        _ca: ca,
        backend,
        healthy,
        strait,
        log,
        _dir: dir,
    }
}

/// An aborted handshake fails as a real one does: a connect failure (UNAVAILABLE), retried
/// transparently on a fresh connection, counted by outlier detection.
#[tokio::test]
async fn an_abort_at_100_percent_fails_calls_like_a_handshake_failure() {
    let up = upstream(
        ", fault: { abort: { percent: 100 } }",
        "    outlier_detection: { consecutive_failures: 2, max_ejection_percent: 100 }\n",
    )
    .await;
    let mut client = echo_client(up.strait.entrypoint("web").unwrap()).await;
    for _ in 0..3 {
        let status = client.unary(request("x")).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(status.message(), "upstream connect error");
    }
    assert_eq!(up.backend.calls(), 0);
    let line = strait_test::access_log_line(&up.log, "aborted by the `tls.fault`").await;
    let endpoint = format!(
        "TLS handshake failed with endpoint https://{}",
        up.backend.addr
    );
    assert!(line.contains(&endpoint), "{line}");
    assert!(
        line.contains("aborted by the `tls.fault` of service `b` (injected for a rehearsal"),
        "{line}"
    );
    let aborted = sample(
        &up.strait,
        "strait_upstream_tls_faults_injected_total",
        &["service=\"b\"", "fault=\"abort\""],
    );
    // The first try's handshake at least; later tries may find the endpoint backing off, as
    // after any failed connect. Three calls make at most three tries each.
    assert!((1.0..=9.0).contains(&aborted), "{aborted}");
    assert_eq!(
        sample(
            &up.strait,
            "strait_upstream_tls_faults_injected_total",
            &["fault=\"delay\""]
        ),
        0.0
    );
    // Retries and outlier detection read it as the connect failure it stands for.
    let retried = sample(
        &up.strait,
        "strait_retries_total",
        &["router=\"faulty\"", "reason=\"connect-failure\""],
    );
    assert!(retried >= 1.0, "{retried}");
    let ejected = sample(
        &up.strait,
        "strait_outlier_ejections_total",
        &["service=\"b\""],
    );
    assert!(ejected >= 1.0, "{ejected}");
    // Nothing else is touched.
    let reply = client.unary(to_healthy("fine")).await.unwrap();
    assert_eq!(&reply.into_inner().payload[..], b"fine");
    assert_eq!(up.healthy.calls(), 1);
}

#[tokio::test]
async fn a_delay_at_100_percent_still_succeeds_and_is_counted() {
    let up = upstream(", fault: { delay: { duration: 50ms, percent: 100 } }", "").await;
    let mut client = echo_client(up.strait.entrypoint("web").unwrap()).await;
    for text in ["one", "two", "three"] {
        let reply = client.unary(request(text)).await.unwrap();
        assert_eq!(&reply.into_inner().payload[..], text.as_bytes());
    }
    assert_eq!(up.backend.calls(), 3);
    // One HTTP/2 connection carries all three calls: one handshake, delayed once.
    let delayed = sample(
        &up.strait,
        "strait_upstream_tls_faults_injected_total",
        &["service=\"b\"", "fault=\"delay\""],
    );
    assert_eq!(delayed, 1.0);
    assert_eq!(
        sample(
            &up.strait,
            "strait_upstream_tls_faults_injected_total",
            &["fault=\"abort\""]
        ),
        0.0
    );
}

/// The injected wait is inside the service's connect_timeout, as a slow handshake would be.
#[tokio::test]
async fn a_delay_longer_than_connect_timeout_times_the_connect_out() {
    let up = upstream(
        ", fault: { delay: { duration: 1h } }",
        "    connect_timeout: 200ms\n",
    )
    .await;
    let mut client = echo_client(up.strait.entrypoint("web").unwrap()).await;
    let status = client.unary(request("x")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let line = strait_test::access_log_line(&up.log, "timed out").await;
    let want = format!(
        "connecting to endpoint https://{} timed out after 200ms (the service's \
         connect_timeout, which includes the TLS handshake)",
        up.backend.addr
    );
    assert!(line.contains(&want), "{line}");
    assert!(
        sample(
            &up.strait,
            "strait_upstream_tls_faults_injected_total",
            &["service=\"b\"", "fault=\"delay\""],
        ) >= 1.0
    );
    assert_eq!(up.backend.calls(), 0);
}

/// A reload switches a rehearsal on and off; calls in between see it at once.
#[tokio::test]
async fn a_reload_turns_the_fault_on_and_off() {
    let up = upstream("", "").await;
    let mut client = echo_client(up.strait.entrypoint("web").unwrap()).await;
    client.unary(request("before")).await.unwrap();

    let config = |fault: &str| {
        let text = upstream_config(
            &up._ca,
            up.backend.addr,
            &up.healthy.url(),
            &up.log,
            fault,
            "",
        );
        strait_config::parse_str(&text, strait_config::Format::Yaml, "test.yaml").unwrap()
    };
    up.strait
        .reload(config(", fault: { abort: { percent: 100 } }"))
        .await
        .unwrap();
    let status = client.unary(request("during")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        sample(
            &up.strait,
            "strait_upstream_tls_faults_injected_total",
            &["fault=\"abort\""]
        ) >= 1.0
    );

    up.strait.reload(config("")).await.unwrap();
    let reply = client.unary(request("after")).await.unwrap();
    assert_eq!(&reply.into_inner().payload[..], b"after");
    assert_eq!(up.backend.calls(), 2);
}

// === entrypoints ===

async fn tls_channel(ca: &TestCa, addr: SocketAddr) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.ca_pem()))
        .domain_name("localhost");
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_entrypoint_delay_counts_each_handshake_and_calls_succeed() {
    let ca = TestCa::new();
    let cert = ca.server(&["localhost"]);
    let backend = TestBackend::start().await;
    let strait = start_strait(&format!(
        "entrypoints:\n  websecure:\n    address: 127.0.0.1:0\n    tls:\n      certificates:\n        \
         - {{ cert_file: '{}', key_file: '{}' }}\n      \
         fault: {{ delay: {{ duration: 50ms, percent: 100 }} }}\n\
         routers:\n  all: {{ service: b }}\nservices:\n  b:\n    servers: ['{}']\n",
        cert.cert_file.display(),
        cert.key_file.display(),
        backend.url(),
    ))
    .await;
    let addr = strait.entrypoint("websecure").unwrap();
    // Three clients, three connections, three handshakes.
    for text in ["a", "b", "c"] {
        let mut client = EchoClient::new(tls_channel(&ca, addr).await);
        let reply = client.unary(request(text)).await.unwrap();
        assert_eq!(&reply.into_inner().payload[..], text.as_bytes());
    }
    assert_eq!(backend.calls(), 3);
    let delayed = sample(
        &strait,
        "strait_tls_faults_injected_total",
        &["entrypoint=\"websecure\"", "fault=\"delay\""],
    );
    assert_eq!(delayed, 3.0);
    let handshakes = sample(
        &strait,
        "strait_tls_handshakes_total",
        &["entrypoint=\"websecure\"", "result=\"ok\""],
    );
    assert_eq!(handshakes, 3.0);
}
