//! Request header lists at every size, against real tonic peers and a raw h2 client: a
//! request over `http2.max_header_list_size` fails alone with a status naming the limit, its
//! connection's other streams go on; blocks past the engine's bound get a bare 431, and
//! only attack-sized ones close the connection. With the limits raised, 64 KiB of metadata
//! passes both ways over h2c and TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use http::StatusCode;
use strait_grpc::echo::echo_client::EchoClient;
use strait_grpc::echo::EchoRequest;
use strait_test::backend::TestBackend;
use strait_test::raw::h2_connect;
use strait_test::tls::TestCa;
use strait_test::{start_strait, Running};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// 64 KiB: what a large JWT plus tracing baggage can reach.
const BIG: usize = 64 << 10;

/// Entrypoint `web` (plaintext) and, when `cert` is given, `websecure` (TLS), both with
/// `entrypoint` lines (indented 4), in front of `backend`.
fn config(
    backend: &TestBackend,
    entrypoint: &str,
    cert: Option<&strait_test::tls::Issued>,
) -> String {
    let secure = cert.map_or(String::new(), |cert| {
        format!(
            "  websecure:\n    address: 127.0.0.1:0\n{entrypoint}    tls:\n      certificates:\n        \
             - {{ cert_file: '{}', key_file: '{}' }}\n",
            cert.cert_file.display(),
            cert.key_file.display()
        )
    });
    format!(
        "admin: {{ address: 127.0.0.1:0 }}\n\
         entrypoints:\n  web:\n    address: 127.0.0.1:0\n{entrypoint}{secure}\
         routers:\n  all: {{ service: echo }}\n\
         services:\n  echo:\n    servers: ['{}']\n",
        backend.url()
    )
}

/// A client that takes response header lists up to 1 MiB, over h2c or (with `ca`) TLS.
async fn channel(addr: SocketAddr, ca: Option<&TestCa>) -> Channel {
    let endpoint = match ca {
        None => Endpoint::from_shared(format!("http://{addr}")).unwrap(),
        Some(ca) => Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca.ca_pem()))
                    .domain_name("localhost"),
            )
            .unwrap(),
    };
    endpoint
        .http2_max_header_list_size(1 << 20)
        .connect()
        .await
        .unwrap()
}

fn with_metadata(name: &'static str, size: usize) -> tonic::Request<EchoRequest> {
    let mut request = tonic::Request::new(EchoRequest::default());
    request
        .metadata_mut()
        .insert(name, "a".repeat(size).parse().unwrap());
    request
}

/// `size` bytes of metadata in 4 KiB headers `x-big-0`, `x-big-1`, ..., each under the
/// default `max_header_size`, so that only the list's size is over a limit.
fn spread(size: usize) -> Vec<(String, String)> {
    (0..size / PART)
        .map(|i| (format!("x-big-{i}"), "a".repeat(PART)))
        .collect()
}

const PART: usize = 4 << 10;

/// `strait_limit_exceeded_total{entrypoint="web",limit=...}`.
fn exceeded(strait: &Running, limit: &str) -> f64 {
    let prefix = format!("strait_limit_exceeded_total{{entrypoint=\"web\",limit=\"{limit}\"}} ");
    strait
        .metrics()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0.0)
}

/// Against the defaults, a unary call with 64 KiB of metadata fails on its own with
/// RESOURCE_EXHAUSTED naming the setting, while a stream open on the same connection goes
/// on and completes.
#[tokio::test]
async fn an_oversized_call_fails_alone_and_its_neighbour_completes() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&config(&backend, "", None)).await;
    let channel = channel(strait.entrypoint("web").unwrap(), None).await;
    let mut client = EchoClient::new(channel);
    let (tx, rx) = mpsc::channel(1);
    let mut replies = client
        .clone()
        .bidi(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(EchoRequest {
        payload: "before".into(),
        repeat: 0,
    })
    .await
    .unwrap();
    assert_eq!(
        replies.message().await.unwrap().unwrap().payload,
        "before".as_bytes()
    );

    let mut big = tonic::Request::new(EchoRequest::default());
    for (name, value) in spread(BIG) {
        let name: tonic::metadata::MetadataKey<_> = name.parse().unwrap();
        big.metadata_mut().insert(name, value.parse().unwrap());
    }
    let status = client.unary(big).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("http2.max_header_list_size")
            && status.message().contains("entrypoint `web`"),
        "{}",
        status.message()
    );
    assert_eq!(exceeded(&strait, "max_header_list_size"), 1.0);
    // One 64 KiB header is over `max_header_size` first: the same, naming that setting.
    let status = client.unary(with_metadata("x-big", BIG)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("limits.max_header_size"),
        "{}",
        status.message()
    );

    tx.send(EchoRequest {
        payload: "after".into(),
        repeat: 0,
    })
    .await
    .unwrap();
    assert_eq!(
        replies.message().await.unwrap().unwrap().payload,
        "after".as_bytes()
    );
    drop(tx);
    assert!(
        replies.message().await.unwrap().is_none(),
        "the stream ended with OK"
    );
    // Only the bidi call reached the backend, and the connection still serves.
    assert_eq!(backend.calls(), 1);
    client.unary(EchoRequest::default()).await.unwrap();
}

/// With `max_header_list_size` and `max_header_size` raised, 64 KiB of metadata reaches the
/// backend and comes back in the response headers, over h2c and over TLS.
#[tokio::test]
async fn large_metadata_passes_both_ways_with_raised_limits() {
    let backend = TestBackend::start().await;
    let ca = TestCa::new();
    let cert = ca.server(&["localhost"]);
    let raised =
        "    http2: { max_header_list_size: 256KiB }\n    limits: { max_header_size: 128KiB }\n";
    let strait = start_strait(&config(&backend, raised, Some(&cert))).await;
    for (name, ca) in [("web", None), ("websecure", Some(&ca))] {
        let mut client = EchoClient::new(channel(strait.entrypoint(name).unwrap(), ca).await);
        let response = client
            .unary(with_metadata("x-echo-big", BIG))
            .await
            .unwrap_or_else(|status| panic!("{name}: {status:?}"));
        let echoed = response.metadata().get("x-echo-big").expect("echoed back");
        assert_eq!(echoed.len(), BIG, "{name}");
        let seen = backend.last_metadata();
        assert_eq!(seen.get("x-echo-big").map(|v| v.len()), Some(BIG), "{name}");
    }
    assert_eq!(exceeded(&strait, "max_header_list_size"), 0.0);
}

/// A request over the limit that is not gRPC gets a plain 431 naming the setting; a header
/// list past the engine's bound (128 KiB by default) gets the engine's bare 431 on its stream;
/// both leave the connection serving. One of attack size gets GOAWAY ENHANCE_YOUR_CALM.
#[tokio::test]
async fn each_size_gets_its_answer_and_only_attacks_close_the_connection() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&config(&backend, "", None)).await;
    let addr = strait.entrypoint("web").unwrap();
    let h2 = h2_connect(addr).await;
    let request = |size: usize| {
        let mut request = http::Request::get(format!("http://{addr}/plain"));
        for (name, value) in spread(size) {
            request = request.header(name, value);
        }
        request.body(()).unwrap()
    };

    let (response, _) = h2
        .clone()
        .ready()
        .await
        .unwrap()
        .send_request(request(20 << 10), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        text.extend_from_slice(&chunk.unwrap());
    }
    let body = String::from_utf8_lossy(&text);
    assert!(body.contains("http2.max_header_list_size"), "{body}");
    assert_eq!(exceeded(&strait, "max_header_list_size"), 1.0);

    let (response, _) = h2
        .clone()
        .ready()
        .await
        .unwrap()
        .send_request(request(150 << 10), true)
        .unwrap();
    match response.await {
        Ok(response) => assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        ),
        Err(e) => assert!(e.is_reset(), "the stream alone, not the connection: {e:?}"),
    }

    // The connection still serves: a small request gets past admission (to routing).
    let (response, _) = h2
        .clone()
        .ready()
        .await
        .unwrap()
        .send_request(request(10), true)
        .unwrap();
    assert_ne!(
        response.await.unwrap().status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );

    let (response, _) = h2
        .ready()
        .await
        .unwrap()
        .send_request(request(600 << 10), true)
        .unwrap();
    // GOAWAY ENHANCE_YOUR_CALM, then the close; a client still writing its block may see the
    // close first (hardening.rs reads the GOAWAY itself, over raw frames).
    let error = response.await.unwrap_err();
    assert!(
        (error.is_go_away() && error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM))
            || error.is_io(),
        "{error:?}"
    );
    // The backend saw none of them, and other connections are served.
    assert_eq!(backend.calls(), 0);
    let mut client = EchoClient::new(channel(addr, None).await);
    client.unary(EchoRequest::default()).await.unwrap();
}
