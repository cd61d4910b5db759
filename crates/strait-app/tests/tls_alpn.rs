//! TLS listeners and upstreams end to end, with real peers: tonic over TLS, openssl
//! s_client, curl, rustls clients with and without ALPN, certificates made at test time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use strait_grpc::echo::{EchoClient, EchoRequest};
use strait_test::backend::TestBackend;
use strait_test::http_echo::HttpEcho;
use strait_test::tls::{tls_connect, Issued, TestCa};
use strait_test::{assert_eventually, start_strait, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// One TLS entrypoint `websecure` with `cert`, extra `tls:` lines (indented 6 spaces), and a
/// catch-all router to service `b` with server `backend`; more service lines (indented 4
/// spaces) can follow the returned text.
fn tls_config(cert: &Issued, extra: &str, backend: &str) -> String {
    format!(
        "entrypoints:\n  websecure:\n    address: 127.0.0.1:0\n    tls:\n      certificates:\n        \
         - {{ cert_file: '{}', key_file: '{}' }}\n{extra}\
         routers:\n  all: {{ service: b }}\nservices:\n  b:\n    servers: ['{backend}']\n",
        cert.cert_file.display(),
        cert.key_file.display(),
    )
}

/// A TLS entrypoint (certificate for `localhost` from `ca`) in front of the `https://` server
/// `backend`, whose service trusts `ca` and has `extra` TLS settings (e.g. `, alpn: [h2]`).
fn https_service_config(ca: &TestCa, backend: SocketAddr, extra: &str) -> String {
    format!(
        "{}    tls: {{ ca_file: '{}'{extra} }}\n",
        tls_config(
            &ca.server(&["localhost"]),
            "",
            &format!("https://{backend}")
        ),
        ca.ca_file().display()
    )
}

async fn start(cert: &Issued, extra: &str, backend: &str) -> (Running, SocketAddr) {
    let strait = start_strait(&tls_config(cert, extra, backend)).await;
    let addr = strait.entrypoint("websecure").unwrap();
    (strait, addr)
}

async fn grpc_channel(
    ca: &TestCa,
    addr: SocketAddr,
    identity: Option<&Issued>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.ca_pem()))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
    }
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
}

async fn say(channel: Channel, text: &str) -> Result<String, tonic::Status> {
    let reply = EchoClient::new(channel)
        .unary(EchoRequest {
            payload: text.to_owned().into(),
            repeat: 0,
        })
        .await?;
    Ok(String::from_utf8(reply.into_inner().payload.to_vec()).unwrap())
}

/// Runs a command with a time limit, returning (success, stdout + stderr).
async fn run(program: &str, args: Vec<String>) -> (bool, String) {
    let program = program.to_owned();
    tokio::task::spawn_blocking(move || {
        let output = Command::new("timeout")
            .arg("20")
            .arg(&program)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program} is installed: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    })
    .await
    .unwrap()
}

async fn s_client(addr: SocketAddr, ca: &TestCa, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "s_client".to_owned(),
        "-connect".to_owned(),
        addr.to_string(),
        "-CAfile".to_owned(),
        ca.ca_file().display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run("openssl", args).await
}

async fn curl(addr: SocketAddr, ca: &TestCa, extra: &[&str], path: &str) -> (bool, String) {
    let mut args = vec![
        "-sS".to_owned(),
        "-D".to_owned(),
        "-".to_owned(),
        "--cacert".to_owned(),
        ca.ca_file().display().to_string(),
        "--resolve".to_owned(),
        format!("localhost:{}:127.0.0.1", addr.port()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(format!("https://localhost:{}{path}", addr.port()));
    run("curl", args).await
}

#[tokio::test]
async fn grpc_over_tls_to_an_h2c_backend() {
    let ca = TestCa::new();
    let backend = TestBackend::start().await;
    let (_strait, addr) = start(&ca.server(&["localhost"]), "", &backend.url()).await;
    let channel = grpc_channel(&ca, addr, None).await.unwrap();
    assert_eq!(say(channel, "over tls").await.unwrap(), "over tls");
    let seen = backend.last_metadata();
    assert_eq!(seen.get("x-forwarded-proto").unwrap(), "https");
}

#[tokio::test]
async fn grpc_over_tls_to_a_tls_backend() {
    let ca = TestCa::new();
    let backend = TestBackend::start_tls(&ca.server(&["localhost", "127.0.0.1"])).await;
    let yaml = https_service_config(&ca, backend.addr, "");
    let strait = start_strait(&yaml).await;
    let channel = grpc_channel(&ca, strait.entrypoint("websecure").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(
        say(channel, "tls both ways").await.unwrap(),
        "tls both ways"
    );
    assert_eq!(backend.calls(), 1);
}

/// Without the right CA the backend's certificate is not trusted: UNAVAILABLE, not a
/// silent insecure connection.
#[tokio::test]
async fn untrusted_backend_certificate_is_unavailable() {
    let ca = TestCa::new();
    let other = TestCa::named("some other CA");
    let backend = TestBackend::start_tls(&other.server(&["127.0.0.1"])).await;
    let yaml = https_service_config(&ca, backend.addr, "");
    let strait = start_strait(&yaml).await;
    let channel = grpc_channel(&ca, strait.entrypoint("websecure").unwrap(), None)
        .await
        .unwrap();
    let status = say(channel, "x").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(backend.calls(), 0);
}

#[tokio::test]
async fn openssl_negotiates_h2_or_http11_as_offered() {
    let ca = TestCa::new();
    let backend = HttpEcho::start().await;
    let (_strait, addr) = start(&ca.server(&["localhost"]), "", &backend.url("h2c")).await;
    let (ok, out) = s_client(addr, &ca, &["-servername", "localhost", "-alpn", "h2"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    let (ok, out) = s_client(
        addr,
        &ca,
        &["-servername", "localhost", "-alpn", "http/1.1"],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
}

#[tokio::test]
async fn curl_over_tls_with_http2_and_http11() {
    let ca = TestCa::new();
    let backend = HttpEcho::start().await;
    let (_strait, addr) = start(&ca.server(&["localhost"]), "", &backend.url("h2c")).await;
    let (ok, out) = curl(addr, &ca, &["--http2"], "/two").await;
    assert!(ok, "{out}");
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(out.contains("x-forwarded-proto: https"), "{out}");
    let (ok, out) = curl(addr, &ca, &["--http1.1"], "/one").await;
    assert!(ok, "{out}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test]
async fn listener_locked_to_h2_refuses_http11() {
    let ca = TestCa::new();
    let backend = HttpEcho::start().await;
    let (strait, addr) = start(
        &ca.server(&["localhost"]),
        "      alpn: [h2]\n",
        &backend.url("h2c"),
    )
    .await;
    let (ok, out) = s_client(
        addr,
        &ca,
        &["-servername", "localhost", "-alpn", "http/1.1"],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(out.contains("no application protocol"), "{out}");
    let (ok, out) = curl(addr, &ca, &["--http1.1"], "/").await;
    assert!(!ok, "{out}");
    let (ok, out) = curl(addr, &ca, &["--http2"], "/").await;
    assert!(ok && out.starts_with("HTTP/2 200"), "{out}");
    // Each outcome is counted with what was negotiated.
    let metrics = strait.metrics().encode();
    let handshakes = |parts: &[&str]| {
        metrics
            .lines()
            .filter(|l| l.starts_with("strait_tls_handshakes_total{"))
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert!(handshakes(&["result=\"refused\""]) >= 2.0, "{metrics}");
    assert!(
        handshakes(&["result=\"ok\"", "alpn=\"h2\"", "version=\"TLSv1.3\""]) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn listener_locked_to_http11_refuses_h2() {
    let ca = TestCa::new();
    let backend = HttpEcho::start().await;
    let (_strait, addr) = start(
        &ca.server(&["localhost"]),
        "      alpn: [http/1.1]\n",
        &backend.url("h2c"),
    )
    .await;
    let (ok, out) = s_client(addr, &ca, &["-servername", "localhost", "-alpn", "h2"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("no application protocol"), "{out}");
    // curl offers both and gets HTTP/1.1.
    let (ok, out) = curl(addr, &ca, &["--http2"], "/").await;
    assert!(ok && out.starts_with("HTTP/1.1 200"), "{out}");
}

/// A client that offers no ALPN at all is served HTTP/1.1.
#[tokio::test]
async fn no_alpn_is_served_http11() {
    let ca = TestCa::new();
    let backend = HttpEcho::start().await;
    let (_strait, addr) = start(&ca.server(&["localhost"]), "", &backend.url("h2c")).await;
    let mut tls = tls_connect(addr, "localhost", ca.client_config(&[]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    tls.write_all(b"GET /plain HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
}

#[tokio::test]
async fn sni_picks_the_certificate() {
    let ca = TestCa::new();
    let backend = HttpEcho::start().await;
    let a = ca.server(&["a.test"]);
    let b = ca.server(&["*.b.test"]);
    let extra = format!(
        "        - {{ cert_file: '{}', key_file: '{}' }}\n",
        b.cert_file.display(),
        b.key_file.display()
    );
    let (_strait, addr) = start(&a, &extra, &backend.url("h2c")).await;
    for (sni, expected) in [
        ("a.test", "a.test"),
        ("x.b.test", "*.b.test"),
        ("other.test", "a.test"),
    ] {
        let (_, out) = s_client(addr, &ca, &["-servername", sni, "-alpn", "h2"]).await;
        let subject = out
            .lines()
            .find(|l| l.starts_with("subject="))
            .unwrap_or_else(|| panic!("no subject for {sni}: {out}"));
        assert!(subject.ends_with(expected), "{sni}: {subject}");
    }
}

#[tokio::test]
async fn sni_strict_refuses_unknown_names() {
    let ca = TestCa::new();
    let backend = HttpEcho::start().await;
    let (_strait, addr) = start(
        &ca.server(&["a.test"]),
        "      sni_strict: true\n",
        &backend.url("h2c"),
    )
    .await;
    let known = tls_connect(addr, "a.test", ca.client_config(&["h2"])).await;
    assert!(known.is_ok());
    let unknown = tls_connect(addr, "other.test", ca.client_config(&["h2"])).await;
    assert!(
        unknown.is_err(),
        "a name with no certificate must be refused"
    );
}

fn mtls_extra(ca: &TestCa, mode: &str) -> String {
    format!(
        "      client_auth:\n        mode: {mode}\n        ca_file: '{}'\n        forward_header: x-forwarded-client-cert\n",
        ca.ca_file().display()
    )
}

#[tokio::test]
async fn mtls_require_refuses_clients_without_a_certificate() {
    let ca = TestCa::new();
    let backend = TestBackend::start().await;
    let (_strait, addr) = start(
        &ca.server(&["localhost"]),
        &mtls_extra(&ca, "require"),
        &backend.url(),
    )
    .await;

    // TLS 1.3 finishes the client's side of the handshake before the server has checked the
    // certificate, so the refusal may only show on the first exchange.
    let without = match grpc_channel(&ca, addr, None).await {
        Ok(channel) => say(channel, "x").await.is_err(),
        Err(_) => true,
    };
    assert!(without, "a client without a certificate got through");

    let other_ca = TestCa::named("untrusted clients");
    let wrong = other_ca.client(&["spiffe://test/intruder"]);
    let refused = match grpc_channel(&ca, addr, Some(&wrong)).await {
        Ok(channel) => say(channel, "x").await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a certificate from an unknown CA got through");
    assert_eq!(backend.calls(), 0);

    let allowed = grpc_channel(&ca, addr, Some(&ca.client(&["spiffe://test/orders"])))
        .await
        .unwrap();
    assert_eq!(say(allowed, "let in").await.unwrap(), "let in");
    assert_eq!(backend.calls(), 1);
}

#[tokio::test]
async fn mtls_identity_is_forwarded_and_spoofing_is_dropped() {
    let ca = TestCa::new();
    let backend = HttpEcho::start().await;
    let (_strait, addr) = start(
        &ca.server(&["localhost"]),
        &mtls_extra(&ca, "require"),
        &backend.url("h2c"),
    )
    .await;
    let client = ca.client(&["spiffe://test/orders", "orders.test"]);
    let cert = client.cert_file.display().to_string();
    let key = client.key_file.display().to_string();
    let (ok, out) = curl(
        addr,
        &ca,
        &[
            "--cert",
            &cert,
            "--key",
            &key,
            "-H",
            "x-forwarded-client-cert: Hash=forged;URI=spiffe://test/admin",
        ],
        "/whoami",
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("HTTP/2 200"), "{out}");
    let forwarded = out
        .lines()
        .find(|l| l.starts_with("x-forwarded-client-cert: "))
        .unwrap_or_else(|| panic!("no identity header: {out}"));
    assert!(
        forwarded.contains("URI=spiffe://test/orders"),
        "{forwarded}"
    );
    assert!(forwarded.contains("DNS=orders.test"), "{forwarded}");
    assert!(
        forwarded.contains("Subject=\"CN=spiffe://test/orders\""),
        "{forwarded}"
    );
    assert!(
        !forwarded.contains("forged") && !forwarded.contains("admin"),
        "{forwarded}"
    );
    assert_eq!(out.matches("x-forwarded-client-cert:").count(), 1, "{out}");
}

#[tokio::test]
async fn mtls_request_mode_lets_clients_without_a_certificate_in() {
    let ca = TestCa::new();
    let backend = TestBackend::start().await;
    let (_strait, addr) = start(
        &ca.server(&["localhost"]),
        &mtls_extra(&ca, "request"),
        &backend.url(),
    )
    .await;
    let channel = grpc_channel(&ca, addr, None).await.unwrap();
    assert_eq!(say(channel, "anonymous").await.unwrap(), "anonymous");
    assert!(backend
        .last_metadata()
        .get("x-forwarded-client-cert")
        .is_none());
}

#[tokio::test]
async fn client_cert_san_routes_by_identity() {
    let ca = TestCa::new();
    let orders = TestBackend::start().await;
    let others = TestBackend::start().await;
    let server = ca.server(&["localhost"]);
    let yaml = format!(
        "entrypoints:\n  websecure:\n    address: 127.0.0.1:0\n    tls:\n      certificates:\n        \
         - {{ cert_file: '{}', key_file: '{}' }}\n{}\
         routers:\n  orders: {{ match: {{ client_cert_san: 'spiffe://test/orders' }}, service: orders }}\n  \
         rest: {{ service: others }}\n\
         services:\n  orders: {{ servers: ['{}'] }}\n  others: {{ servers: ['{}'] }}\n",
        server.cert_file.display(),
        server.key_file.display(),
        mtls_extra(&ca, "require"),
        orders.url(),
        others.url()
    );
    let strait = start_strait(&yaml).await;
    let addr = strait.entrypoint("websecure").unwrap();
    let as_orders = grpc_channel(&ca, addr, Some(&ca.client(&["spiffe://test/orders"])))
        .await
        .unwrap();
    say(as_orders, "1").await.unwrap();
    let as_billing = grpc_channel(&ca, addr, Some(&ca.client(&["spiffe://test/billing"])))
        .await
        .unwrap();
    say(as_billing, "2").await.unwrap();
    assert_eq!((orders.calls(), others.calls()), (1, 1));
}

/// A renewed certificate is served to new handshakes without a restart, while a connection
/// opened before keeps working.
#[tokio::test]
async fn certificate_hot_swap_under_an_open_connection() {
    let ca = TestCa::new();
    let backend = TestBackend::start().await;
    let first = ca.server(&["localhost"]);
    let (_strait, addr) = start(&first, "", &backend.url()).await;
    let open = grpc_channel(&ca, addr, None).await.unwrap();
    say(open.clone(), "before").await.unwrap();

    let peer_cert = || async {
        let tls = tls_connect(addr, "localhost", ca.client_config(&["h2"]))
            .await
            .unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0]
            .as_ref()
            .to_vec()
    };
    let first_der = strait_test::tls::pem_certs(&first.cert_pem)[0]
        .as_ref()
        .to_vec();
    assert_eq!(peer_cert().await, first_der);

    // A broken file is not served: the old certificate stays.
    std::fs::write(&first.cert_file, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    let renewed = ca.server(&["localhost"]);
    let renewed_der = strait_test::tls::pem_certs(&renewed.cert_pem)[0]
        .as_ref()
        .to_vec();
    assert_eq!(peer_cert().await, first_der);

    first.replace_with(&renewed);
    assert_eventually!(
        peer_cert().await == renewed_der,
        Duration::from_secs(15),
        "renewed certificate served"
    );
    assert_eq!(say(open, "after").await.unwrap(), "after");
}

#[tokio::test]
async fn upstream_alpn_falls_back_to_http11() {
    let ca = TestCa::new();
    let backend = HttpEcho::start_tls(&ca.server(&["127.0.0.1"]), &["http/1.1"]).await;
    let yaml = https_service_config(&ca, backend.addr, "");
    let strait = start_strait(&yaml).await;
    let addr = strait.entrypoint("websecure").unwrap();

    let (ok, out) = curl(addr, &ca, &["--http2"], "/plain").await;
    assert!(ok, "{out}");
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(out.contains("x-backend-version: HTTP/1.1"), "{out}");
    let (ok, out) = curl(addr, &ca, &["--http2"], "/again").await;
    assert!(ok && out.contains("x-backend-version: HTTP/1.1"), "{out}");
    assert_eq!(
        backend.connections(),
        2,
        "one connection to learn ALPN, one reused pool connection"
    );

    // gRPC cannot work over the HTTP/1.1 the backend chose: a clear UNAVAILABLE.
    let channel = grpc_channel(&ca, addr, None).await.unwrap();
    let status = say(channel, "x").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("ALPN"), "{}", status.message());
    assert_eq!(backend.requests(), 2);
}

#[tokio::test]
async fn upstream_locked_to_h2_fails_against_an_http11_backend() {
    let ca = TestCa::new();
    let backend = HttpEcho::start_tls(&ca.server(&["127.0.0.1"]), &["http/1.1"]).await;
    let yaml = https_service_config(&ca, backend.addr, ", alpn: [h2]");
    let strait = start_strait(&yaml).await;
    let channel = grpc_channel(&ca, strait.entrypoint("websecure").unwrap(), None)
        .await
        .unwrap();
    let status = say(channel, "x").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn grpc_over_http11_gets_426() {
    let ca = TestCa::new();
    let backend = TestBackend::start().await;
    let (_strait, addr) = start(&ca.server(&["localhost"]), "", &backend.url()).await;
    let (ok, out) = curl(
        addr,
        &ca,
        &[
            "--http1.1",
            "-H",
            "content-type: application/grpc",
            "-d",
            "x",
        ],
        "/strait.echo.v1.Echo/Unary",
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.starts_with("HTTP/1.1 426"), "{out}");
    assert!(
        out.contains("gRPC needs HTTP/2") && out.contains("ALPN `h2`"),
        "{out}"
    );
    assert_eq!(backend.calls(), 0);
}

#[tokio::test]
async fn silent_client_is_cut_after_the_handshake_timeout() {
    let ca = TestCa::new();
    let backend = HttpEcho::start().await;
    let (_strait, addr) = start(
        &ca.server(&["localhost"]),
        "      handshake_timeout: 300ms\n",
        &backend.url("h2c"),
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "connection not closed: {read:?}"
    );
}

#[tokio::test]
async fn min_version_13_refuses_tls12_clients() {
    let ca = TestCa::new();
    let backend = HttpEcho::start().await;
    let (_strait, addr) = start(
        &ca.server(&["localhost"]),
        "      min_version: '1.3'\n",
        &backend.url("h2c"),
    )
    .await;
    let tls12 = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(strait_test::tls::pem_certs(ca.ca_pem()).remove(0))
                .unwrap();
            roots
        })
        .with_no_client_auth();
    assert!(tls_connect(addr, "localhost", tls12).await.is_err());
    let tls13 = tls_connect(addr, "localhost", ca.client_config(&["h2"]))
        .await
        .unwrap();
    assert_eq!(
        tls13.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test]
async fn a_bad_certificate_file_stops_start_with_its_path() {
    let ca = TestCa::new();
    let cert = ca.server(&["localhost"]);
    let other = ca.server(&["localhost"]);
    // The key of another certificate.
    std::fs::write(&cert.key_file, &other.key_pem).unwrap();
    let config = strait_config::parse_str(
        &tls_config(&cert, "", "h2c://127.0.0.1:1"),
        strait_config::Format::Yaml,
        "test.yaml",
    )
    .unwrap();
    let err = strait_app::start(config).await.unwrap_err().to_string();
    assert!(err.contains("entrypoint `websecure`"), "{err}");
    assert!(err.contains(&cert.key_file.display().to_string()), "{err}");
    assert!(err.contains("does not belong to the certificate"), "{err}");
}

/// Upstream TLS options: a client certificate for a backend that requires one, a
/// `server_name` that differs from the URL's host, and `insecure_skip_verify`.
#[tokio::test]
async fn upstream_client_certificate_server_name_and_insecure() {
    let ca = TestCa::new();
    let listener_cert = ca.server(&["localhost"]);

    // mTLS backend, certificate only for backend.internal, reached by IP.
    let backend = HttpEcho::start_mtls(&ca.server(&["backend.internal"]), &["h2"], Some(&ca)).await;
    let url = format!("https://127.0.0.1:{}", backend.addr.port());
    let client = ca.client(&["spiffe://test/strait"]);
    let with = |tls: &str| {
        format!(
            "{}    tls: {{ {tls} }}\n",
            tls_config(&listener_cert, "", &url)
        )
    };
    let ca_file = ca.ca_file().display().to_string();

    let cases = [
        // Everything right: works.
        (
            format!(
                "ca_file: '{ca_file}', server_name: backend.internal, cert_file: '{}', key_file: '{}'",
                client.cert_file.display(),
                client.key_file.display()
            ),
            true,
        ),
        // No client certificate: the backend refuses.
        (format!("ca_file: '{ca_file}', server_name: backend.internal"), false),
        // The URL's host (127.0.0.1) is not in the certificate.
        (
            format!(
                "ca_file: '{ca_file}', cert_file: '{}', key_file: '{}'",
                client.cert_file.display(),
                client.key_file.display()
            ),
            false,
        ),
        // No verification at all, for development.
        (
            format!(
                "insecure_skip_verify: true, cert_file: '{}', key_file: '{}'",
                client.cert_file.display(),
                client.key_file.display()
            ),
            true,
        ),
    ];
    for (tls, works) in cases {
        let strait = start_strait(&with(&tls)).await;
        let (ok, out) = curl(
            strait.entrypoint("websecure").unwrap(),
            &ca,
            &["--http2"],
            "/up",
        )
        .await;
        assert!(ok, "{out}");
        let expected = if works { "HTTP/2 200" } else { "HTTP/2 502" };
        assert!(out.starts_with(expected), "tls: {{ {tls} }}\n{out}");
    }
    assert_eq!(backend.requests(), 2);
}
