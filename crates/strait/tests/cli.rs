//! The `strait` command line as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use strait_grpc::echo::EchoRequest;
use strait_test::backend::TestBackend;

fn strait() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strait"))
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `strait run` whose stderr lines arrive on a channel.
struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Process {
    fn start(args: &[&str]) -> Process {
        let mut child = strait()
            .args(args)
            .env("STRAIT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Process { child, lines }
    }

    /// Waits up to 30 s for a log line containing `needle`.
    fn wait_for(&self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(e) => panic!("no log line with {needle:?}: {e}"),
            }
        }
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap()
            .success());
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.child.wait().unwrap()
    }

    fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `address` field of a JSON log line (strait logs JSON when stderr is not a terminal).
fn address_in(line: &str) -> SocketAddr {
    let rest = line
        .split_once("\"address\":\"")
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .1;
    let (address, _) = rest.split_once('"').unwrap();
    address.parse().unwrap()
}

#[test]
fn version_prints_the_version() {
    let output = strait().arg("version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        format!("strait {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_prints_the_effective_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "ok.yaml",
        "entrypoints:\n  web: { address: 127.0.0.1:8080 }\nrouters:\n  r: { service: s }\n\
         services:\n  s: { servers: [h2c://127.0.0.1:50051] }\n",
    );
    let output = strait()
        .args(["check", "config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("entrypoints:"), "{stdout}");
    // Defaults are filled in: the router lists the entrypoints it serves.
    assert!(stdout.contains("entrypoints: [web]"), "{stdout}");
    assert!(stdout.contains("url: h2c://127.0.0.1:50051"), "{stdout}");
}

#[test]
fn check_config_reports_every_error_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.yaml",
        "entrypoints:\n\
         \x20 web: { address: 127.0.0.1:8080 }\n\
         \x20 also: { address: 127.0.0.1:8080 }\n\
         routers:\n\
         \x20 r:\n\
         \x20   service: missing\n\
         \x20   timeout: 5 seconds\n\
         \x20   mach: {}\n\
         services:\n\
         \x20 s: { servers: [ftp://127.0.0.1:21] }\n",
    );
    let output = strait()
        .args(["check", "config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let name = file.display().to_string();
    for (line_col, words) in [
        ("3:20", "already used by entrypoint `web`"),
        ("6:14", "service `missing`"),
        ("7:14", "5 seconds"),
        ("8:5", "unknown key `mach`"),
        ("10:18", "ftp://"),
    ] {
        let prefix = format!("{name}:{line_col}: ");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(words)),
            "missing `{prefix}...{words}` in:\n{stderr}"
        );
    }
    assert!(stderr.contains("did you mean `match`?"), "{stderr}");
    assert!(stderr.trim_end().ends_with("5 errors"), "{stderr}");
}

#[test]
fn run_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.toml",
        "[entrypoints.web]\naddress = \"nowhere\"\n",
    );
    let output = strait()
        .args(["run", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!("{}:2:11:", file.display())),
        "{stderr}"
    );
    assert!(stderr.contains("refusing to start"), "{stderr}");
}

#[test]
fn run_reports_a_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "busy.yaml",
        &format!("entrypoints:\n  web: {{ address: 127.0.0.1:{port} }}\n"),
    );
    let output = strait()
        .args(["run", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "entrypoint `web` cannot listen on 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn run_proxies_grpc_and_exits_cleanly_on_sigterm() {
    let backend = TestBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "strait.yaml",
        &format!(
            "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\nrouters:\n  all: {{ service: echo }}\n\
             services:\n  echo: {{ servers: ['{}'] }}\n",
            backend.url()
        ),
    );
    let process = Process::start(&["run", "--workers", "1", "--config", file.to_str().unwrap()]);
    let addr = address_in(&process.wait_for("listening"));
    process.wait_for("strait is serving");

    let mut client = strait_test::echo_client(addr).await;
    let reply = client
        .unary(EchoRequest {
            payload: "via the binary".into(),
            repeat: 0,
        })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().payload, "via the binary");
    assert_eq!(backend.calls(), 1);
    drop(client);

    let status = tokio::task::spawn_blocking(move || process.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// `strait run` with no config: the embedded default proxies to the built-in echo service
/// on 127.0.0.1:8080, with the admin address on 127.0.0.1:9901.
#[tokio::test]
async fn run_without_config_serves_the_demo() {
    let process = Process::start(&["run"]);
    process.wait_for("strait is serving");
    let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let mut client = strait_test::echo_client(addr).await;
    let reply = client
        .unary(EchoRequest {
            payload: "demo".into(),
            repeat: 0,
        })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().payload, "demo");

    let mut admin = tokio::net::TcpStream::connect("127.0.0.1:9901")
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    admin
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    admin.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");
    drop(client);
    let status = tokio::task::spawn_blocking(move || process.terminate())
        .await
        .unwrap();
    assert!(status.success());
}

fn proxy_config(backend: &str) -> String {
    format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\nrouters:\n  all: {{ service: echo }}\n\
         services:\n  echo: {{ servers: ['{backend}'] }}\n"
    )
}

/// `proxy_config` with an admin listener on a free port and `extra` at top level.
fn proxy_config_with_admin(backend: &str, extra: &str) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0 }}\n{extra}{}",
        proxy_config(backend)
    )
}

/// The entrypoint's and the admin listener's addresses from the start-up log.
fn listening(process: &Process) -> (SocketAddr, SocketAddr) {
    let entrypoint = address_in(&process.wait_for("\"listening\""));
    let admin = address_in(&process.wait_for("admin listening"));
    process.wait_for("strait is serving");
    (entrypoint, admin)
}

/// The admin listener during a shutdown: `/readyz` is a clean 503 and `/metrics` answers.
async fn not_ready_but_answering(admin: SocketAddr) {
    use strait_test::http1;
    assert_eq!(
        http1(admin, "GET", "/readyz", &[]).await,
        (503, "not ready\n".into())
    );
    let (status, metrics) = http1(admin, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("strait_config_generation 1"), "{metrics}");
}

/// SIGTERM while a stream is open, with the default accept grace (none): the drain starts at
/// once, so new connections are refused, while the stream still completes and the admin
/// listener keeps answering — `/readyz` 503, `/metrics` — until the process exits 0.
#[tokio::test]
async fn sigterm_lets_an_open_stream_finish() {
    use strait_test::{assert_eventually, http1};
    let backend = TestBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "strait.yaml",
        &proxy_config_with_admin(&backend.url(), ""),
    );
    let process = Process::start(&["run", "--config", file.to_str().unwrap()]);
    let (addr, admin) = listening(&process);
    assert_eq!(
        http1(admin, "GET", "/readyz", &[]).await,
        (200, "ready\n".into())
    );

    let mut client = strait_test::echo_client(addr).await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(EchoRequest::default()).await.unwrap();
    replies.message().await.unwrap().unwrap();

    process.signal("TERM");
    process.wait_for("shutting down");
    // New connections are refused while the open stream goes on...
    assert_eventually!(tokio::net::TcpStream::connect(addr).await.is_err());
    // ...and probes get a clean "not ready", not a refused connection.
    not_ready_but_answering(admin).await;
    tx.send(EchoRequest {
        payload: "after SIGTERM".into(),
        repeat: 0,
    })
    .await
    .unwrap();
    assert_eq!(
        replies.message().await.unwrap().unwrap().payload,
        "after SIGTERM"
    );
    assert_eq!(http1(admin, "GET", "/readyz", &[]).await.0, 503);
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
    drop((replies, client));
    let status = tokio::task::spawn_blocking(move || process.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// `lifecycle.accept_grace`: after SIGTERM `/readyz` answers 503 at once while the entrypoint
/// still accepts and serves new connections; when the grace is over the drain runs, new
/// connections are refused and the process exits 0.
#[tokio::test]
async fn sigterm_with_accept_grace_keeps_accepting_while_not_ready() {
    use strait_test::{assert_eventually, http1};
    let backend = TestBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "strait.yaml",
        &proxy_config_with_admin(&backend.url(), "lifecycle: { accept_grace: 5s }\n"),
    );
    let process = Process::start(&["run", "--config", file.to_str().unwrap()]);
    let (addr, admin) = listening(&process);
    assert_eq!(http1(admin, "GET", "/readyz", &[]).await.0, 200);

    process.signal("TERM");
    process.wait_for("not ready; accepting for 5s more before draining");
    not_ready_but_answering(admin).await;
    // A connection opened now is still accepted and served: the drain has not started
    // (it would have closed the listener).
    let mut client = strait_test::echo_client(addr).await;
    let reply = client
        .unary(EchoRequest {
            payload: "during the grace".into(),
            repeat: 0,
        })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().payload, "during the grace");
    assert_eq!(backend.calls(), 1);
    drop(client);

    process.wait_for("shutting down");
    assert_eventually!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        Duration::from_secs(30),
        "the entrypoint still accepts after the grace"
    );
    let status = tokio::task::spawn_blocking(move || process.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// A second signal during the accept grace exits at once (status 130).
#[tokio::test]
async fn a_second_signal_during_the_accept_grace_exits_at_once() {
    let backend = TestBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "strait.yaml",
        &proxy_config_with_admin(&backend.url(), "lifecycle: { accept_grace: 10m }\n"),
    );
    let process = Process::start(&["run", "--config", file.to_str().unwrap()]);
    listening(&process);
    process.signal("TERM");
    process.wait_for("not ready; accepting for 600s more");
    process.signal("INT");
    process.wait_for("second signal");
    let status = tokio::task::spawn_blocking(move || process.wait())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
}

/// SIGHUP reloads the config file; a broken file is refused with its location and the old
/// config keeps serving.
#[tokio::test]
async fn sighup_reloads_and_refuses_a_broken_file() {
    let a = TestBackend::start().await;
    let b = TestBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "strait.yaml", &proxy_config(&a.url()));
    let process = Process::start(&["run", "--config", file.to_str().unwrap()]);
    let addr = address_in(&process.wait_for("listening"));
    process.wait_for("strait is serving");
    let mut client = strait_test::echo_client(addr).await;
    client.unary(EchoRequest::default()).await.unwrap();

    std::fs::write(
        &file,
        "entrypoints:\n  web: { address: 127.0.0.1:0 }\nrouters:\n  all: { service: gone }\n",
    )
    .unwrap();
    process.signal("HUP");
    let refused = process.wait_for(&format!("{}:4:19:", file.display()));
    assert!(refused.contains("`gone`"), "{refused}");
    process.wait_for("config reload refused");
    client.unary(EchoRequest::default()).await.unwrap();
    assert_eq!(a.calls(), 2);

    std::fs::write(&file, proxy_config(&b.url())).unwrap();
    process.signal("HUP");
    process.wait_for("reloaded on SIGHUP");
    client.unary(EchoRequest::default()).await.unwrap();
    assert_eq!((a.calls(), b.calls()), (2, 1));
    drop(client);
    let status = tokio::task::spawn_blocking(move || process.terminate())
        .await
        .unwrap();
    assert!(status.success());
}

/// A backend frozen with SIGSTOP never closes its sockets; only keepalive notices. The call
/// in flight through it fails instead of hanging.
#[tokio::test]
async fn keepalive_detects_a_backend_frozen_with_sigstop() {
    let backend = TestBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The frozen hop is a real process: a second strait in front of the tonic backend.
    let file = write(dir.path(), "hop.yaml", &proxy_config(&backend.url()));
    let hop = Process::start(&["run", "--workers", "1", "--config", file.to_str().unwrap()]);
    let hop_addr = address_in(&hop.wait_for("listening"));
    hop.wait_for("strait is serving");

    let front = strait_test::start_strait(&format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\nrouters:\n  all: {{ service: hop }}\n\
         services:\n  hop:\n    servers: ['h2c://{hop_addr}']\n    \
         http2: {{ keepalive_interval: 200ms, keepalive_timeout: 500ms }}\n"
    ))
    .await;
    let mut client = strait_test::echo_client(front.entrypoint("web").unwrap()).await;
    let mut request = tonic::Request::new(EchoRequest::default());
    request
        .metadata_mut()
        .insert("x-test", "hang".parse().unwrap());
    let call = tokio::spawn(async move { client.unary(request).await });
    strait_test::assert_eventually!(backend.calls() == 1);

    hop.signal("STOP");
    let result = tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .expect("keepalive noticed the frozen backend")
        .unwrap();
    assert_eq!(result.unwrap_err().code(), tonic::Code::Unavailable);
    hop.signal("CONT");
}
