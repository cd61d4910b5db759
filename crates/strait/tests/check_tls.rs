//! `strait check tls` as a user runs it, against real TLS servers: openssl s_server with
//! certificates made at test time, and strait's own TLS listener.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use strait_test::tls::{CertSpec, Issued, TestCa};

/// What one `strait check tls` run printed, and how it exited.
struct Outcome {
    code: i32,
    stdout: String,
}

impl Outcome {
    #[track_caller]
    fn assert_fine(&self) -> &Self {
        assert_eq!(self.code, 0, "expected exit 0:\n{}", self.stdout);
        self
    }

    #[track_caller]
    fn assert_problem(&self) -> &Self {
        assert_eq!(self.code, 1, "expected exit 1:\n{}", self.stdout);
        self
    }

    #[track_caller]
    fn assert_says(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "expected {text:?} in:\n{}",
            self.stdout
        );
        self
    }
}

/// Runs `strait check tls ARGS...` (the command has its own time limits; `timeout` is a
/// backstop so a bug cannot hang the suite).
fn check(args: &[&str]) -> Outcome {
    let output = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_strait"))
        .args(["check", "tls"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An `openssl s_server -www` on a free port of 127.0.0.1, killed (by PID) when dropped.
struct SServer {
    child: Child,
    target: String,
}

impl SServer {
    /// Starts s_server serving `cert` with the extra arguments, and waits until it accepts.
    fn start(cert: &Issued, extra: &[&str]) -> SServer {
        // A port freed just before s_server binds it can be taken in between: try again then.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let target = format!("127.0.0.1:{port}");
            let mut child = Command::new("openssl")
                .args(["s_server", "-accept", &target, "-www"])
                .args(["-cert", path(&cert.cert_file), "-key", path(&cert.key_file)])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("openssl is installed");
            if wait_for_accept(&mut child) {
                return SServer { child, target };
            }
            let _ = child.kill();
            let _ = child.wait();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut last_error)
                .unwrap();
        }
        panic!("openssl s_server did not start: {last_error}");
    }

    fn target(&self) -> &str {
        &self.target
    }
}

/// Reads s_server's stdout until it prints `ACCEPT` (it is listening) or exits; then keeps
/// draining it so the server never blocks on a full pipe.
fn wait_for_accept(child: &mut Child) -> bool {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        for line in lines.by_ref() {
            if line.trim() == "ACCEPT" {
                let _ = tx.send(());
                break;
            }
        }
        lines.for_each(drop);
    });
    rx.recv_timeout(Duration::from_secs(20)).is_ok()
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server certificate for localhost and 127.0.0.1 from `ca`.
fn server_cert(ca: &TestCa) -> Issued {
    ca.server(&["localhost", "127.0.0.1"])
}

#[test]
fn h2_negotiated_and_verified_is_fine() {
    let ca = TestCa::new();
    let server = SServer::start(&server_cert(&ca), &["-alpn", "h2,http/1.1"]);
    check(&[server.target(), "--ca", path(&ca.ca_file())])
        .assert_fine()
        .assert_says("ALPN: h2")
        .assert_says("TLS version: TLS 1.3")
        .assert_says("subject: CN=localhost")
        .assert_says("issuer: CN=strait test CA")
        .assert_says("SANs: DNS:localhost, IP:127.0.0.1")
        .assert_says("key: EC P-256")
        .assert_says("verified: yes")
        .assert_says("gRPC clients can connect");

    // By name: SNI is sent and the name is verified.
    let by_name = server.target().replace("127.0.0.1", "localhost");
    check(&[&by_name, "--ca", path(&ca.ca_file())])
        .assert_fine()
        .assert_says("SNI: localhost");
}

#[test]
fn a_server_that_selects_http11_breaks_grpc() {
    let ca = TestCa::new();
    let server = SServer::start(&server_cert(&ca), &["-alpn", "http/1.1"]);
    check(&[server.target(), "--ca", path(&ca.ca_file())])
        .assert_problem()
        .assert_says("ALPN: http/1.1")
        .assert_says("gRPC clients will fail or fall back to HTTP/1.1");

    // Asking for http/1.1 only, getting it is fine; the output still says gRPC needs h2.
    check(&[
        server.target(),
        "--ca",
        path(&ca.ca_file()),
        "--alpn",
        "http/1.1",
    ])
    .assert_fine()
    .assert_says("gRPC needs h2");
}

#[test]
fn a_server_without_alpn_breaks_grpc() {
    let ca = TestCa::new();
    let server = SServer::start(&server_cert(&ca), &[]);
    check(&[server.target(), "--ca", path(&ca.ca_file())])
        .assert_problem()
        .assert_says("ALPN: none")
        .assert_says("selected no ALPN protocol: gRPC clients will fail or fall back");
}

#[test]
fn an_expired_certificate() {
    let ca = TestCa::new();
    let expired = ca.issue(&CertSpec {
        not_before_days: -30,
        not_after_days: -2,
        ..CertSpec::server(&["localhost", "127.0.0.1"])
    });
    let server = SServer::start(&expired, &["-alpn", "h2"]);
    check(&[server.target(), "--ca", path(&ca.ca_file())])
        .assert_problem()
        .assert_says("ALPN: h2")
        .assert_says("expired on")
        .assert_says("renew it");
}

#[test]
fn a_certificate_not_valid_yet() {
    let ca = TestCa::new();
    let future = ca.issue(&CertSpec {
        not_before_days: 2,
        not_after_days: 30,
        ..CertSpec::server(&["localhost", "127.0.0.1"])
    });
    let server = SServer::start(&future, &["-alpn", "h2"]);
    check(&[server.target(), "--ca", path(&ca.ca_file())])
        .assert_problem()
        .assert_says("is not valid yet");
}

#[test]
fn a_hostname_mismatch_lists_the_names_the_certificate_has() {
    let ca = TestCa::new();
    let server = SServer::start(&server_cert(&ca), &["-alpn", "h2"]);
    check(&[
        server.target(),
        "--ca",
        path(&ca.ca_file()),
        "--sni",
        "other.test",
    ])
    .assert_problem()
    .assert_says("SNI: other.test")
    .assert_says("does not match \"other.test\"")
    .assert_says("valid for DNS:localhost, IP:127.0.0.1");
}

#[test]
fn a_self_signed_certificate() {
    let ca = TestCa::new();
    let server = SServer::start(
        &ca.self_signed(&["localhost", "127.0.0.1"]),
        &["-alpn", "h2"],
    );
    check(&[server.target(), "--ca", path(&ca.ca_file())])
        .assert_problem()
        .assert_says("self-signed");

    // Without --ca (the public roots) it is just as self-signed.
    check(&[server.target()])
        .assert_problem()
        .assert_says("self-signed");

    // --insecure shows it without judging it.
    check(&[server.target(), "--insecure"])
        .assert_fine()
        .assert_says("not verified (--insecure)");
}

#[test]
fn a_server_that_leaves_out_the_intermediate() {
    let root = TestCa::new();
    let intermediate = root.intermediate("strait test intermediate");
    let leaf = intermediate.server(&["localhost", "127.0.0.1"]);

    let leaf_only = SServer::start(&leaf, &["-alpn", "h2"]);
    check(&[leaf_only.target(), "--ca", path(&root.ca_file())])
        .assert_problem()
        .assert_says("chain (1 certificate, as sent by the server)")
        .assert_says("incomplete chain")
        .assert_says("issued by \"CN=strait test intermediate\"");

    let full_chain = SServer::start(
        &leaf,
        &["-alpn", "h2", "-cert_chain", path(&intermediate.ca_file())],
    );
    check(&[full_chain.target(), "--ca", path(&root.ca_file())])
        .assert_fine()
        .assert_says("chain (2 certificates, as sent by the server)")
        .assert_says("[1] subject: CN=strait test intermediate");
}

#[test]
fn a_server_that_requires_a_client_certificate() {
    let ca = TestCa::new();
    let server = SServer::start(
        &server_cert(&ca),
        &[
            "-alpn",
            "h2",
            "-Verify",
            "1",
            "-verify_return_error",
            "-CAfile",
            path(&ca.ca_file()),
        ],
    );
    check(&[server.target(), "--ca", path(&ca.ca_file())])
        .assert_problem()
        .assert_says("client certificate: requested by the server; none sent")
        .assert_says("the server requires a client certificate")
        .assert_says("pass --cert FILE and --key FILE");

    let client = ca.client(&["client.test"]);
    check(&[
        server.target(),
        "--ca",
        path(&ca.ca_file()),
        "--cert",
        path(&client.cert_file),
        "--key",
        path(&client.key_file),
    ])
    .assert_fine()
    .assert_says("accepted the one from --cert");

    let other_ca = TestCa::named("someone else");
    let stranger = other_ca.client(&["client.test"]);
    check(&[
        server.target(),
        "--ca",
        path(&ca.ca_file()),
        "--cert",
        path(&stranger.cert_file),
        "--key",
        path(&stranger.key_file),
    ])
    .assert_problem()
    .assert_says("the server rejected the client certificate");
}

#[test]
fn nothing_listening() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    check(&[&format!("127.0.0.1:{port}")])
        .assert_problem()
        .assert_says("cannot connect to 127.0.0.1:");
}

#[test]
fn a_plaintext_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    // A plaintext HTTP/1.1 server: answers anything with a 400.
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            use std::io::Write;
            let _ = conn.read(&mut [0u8; 1024]);
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    check(&[&target])
        .assert_problem()
        .assert_says("did not answer with TLS");
}

#[test]
fn json_has_the_same_facts() {
    let ca = TestCa::new();
    let server = SServer::start(&server_cert(&ca), &["-alpn", "http/1.1"]);
    let outcome = check(&[server.target(), "--ca", path(&ca.ca_file()), "--json"]);
    outcome.assert_problem();
    let json = parse_as(strait_tls::check::Report::to_json, &outcome.stdout);
    assert_eq!(json["alpn"], "http/1.1");
    assert_eq!(json["version"], "TLS 1.3");
    assert!(json["cipher"].as_str().unwrap().starts_with("TLS13_"));
    assert_eq!(json["chain"][0]["subject"], "CN=localhost");
    assert_eq!(json["chain"][0]["key"], "EC P-256");
    assert_eq!(json["verified"], true);
    assert_eq!(json["fine"], false);
    assert_eq!(json["diagnosis"][0]["code"], "alpn_not_h2");
    assert_eq!(json["diagnosis"][0]["problem"], true);
    assert_eq!(outcome.stdout.lines().count(), 1, "one object, one line");
}

/// Parses `text` as the JSON type `f` returns: this crate does not depend on serde_json
/// itself, and `Report::to_json` names the type for it.
fn parse_as<T>(_: fn(&strait_tls::check::Report) -> T, text: &str) -> T
where
    T: std::str::FromStr,
    T::Err: std::fmt::Debug,
{
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("not JSON ({e:?}):\n{text}"))
}

#[tokio::test]
async fn against_strait_itself() {
    let ca = TestCa::new();
    let cert = server_cert(&ca);
    let config = |alpn: &str| {
        format!(
            "entrypoints:\n  websecure:\n    address: 127.0.0.1:0\n    tls:\n      \
             certificates:\n        - {{ cert_file: '{}', key_file: '{}' }}\n{alpn}\
             routers:\n  all: {{ service: b }}\n\
             services:\n  b:\n    servers: ['h2c://127.0.0.1:9']\n",
            path(&cert.cert_file),
            path(&cert.key_file),
        )
    };
    let ca_file = ca.ca_file();

    // The default ALPN: h2 first.
    let strait = strait_test::start_strait(&config("")).await;
    let target = strait.entrypoint("websecure").unwrap().to_string();
    let args = [target, "--ca".into(), path(&ca_file).to_owned()];
    let outcome = tokio::task::spawn_blocking(move || {
        check(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    outcome
        .assert_fine()
        .assert_says("ALPN: h2")
        .assert_says("gRPC clients can connect");

    // A listener locked to HTTP/1.1 is diagnosed as one gRPC cannot use.
    let strait = strait_test::start_strait(&config("      alpn: [http/1.1]\n")).await;
    let target = strait.entrypoint("websecure").unwrap().to_string();
    let args = [target, "--ca".into(), path(&ca_file).to_owned()];
    let outcome = tokio::task::spawn_blocking(move || {
        check(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    outcome
        .assert_problem()
        .assert_says("ALPN: http/1.1")
        .assert_says("gRPC clients will fail or fall back to HTTP/1.1");
}
