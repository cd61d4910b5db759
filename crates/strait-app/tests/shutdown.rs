//! Shutdown stops accepting and lets open streams finish; the admin listener answers until
//! the drain has ended; a reload during the drain is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use strait_grpc::echo::EchoRequest;
use strait_test::backend::TestBackend;
use strait_test::{assert_eventually, echo_client, http1, single_service_config, start_strait};

#[tokio::test]
async fn open_stream_finishes_after_shutdown_starts() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let addr = strait.entrypoint("web").unwrap();
    let mut client = echo_client(addr).await;

    let (tx, mut replies) = strait_test::open_bidi(&mut client).await;

    let mut drain = strait.drain_watch();
    let shutdown = tokio::spawn(strait.shutdown(Duration::from_secs(20)));
    drain.signaled().await;
    drop(drain);

    // New connections are refused once the listener has stopped...
    strait_test::assert_eventually!(tokio::net::TcpStream::connect(addr).await.is_err());
    // ...while the open stream keeps working.
    tx.send(EchoRequest {
        payload: "after drain".into(),
        repeat: 0,
    })
    .await
    .unwrap();
    let reply = replies.message().await.unwrap().unwrap();
    assert_eq!(reply.payload, "after drain");
    assert!(
        !shutdown.is_finished(),
        "shutdown must wait for the open stream"
    );

    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
    drop((replies, client));
    assert!(
        shutdown.await.unwrap(),
        "every connection ended within the grace period"
    );
}

/// An HTTP/1.1 request in flight when draining starts is answered, with `connection: close`,
/// and the connection then ends.
#[tokio::test]
async fn http1_request_in_flight_gets_connection_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // A backend that answers only when told to.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let backend = listener.local_addr().unwrap();
    let (received_tx, received) = tokio::sync::oneshot::channel::<()>();
    let (answer, answer_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut connection = h2::server::handshake(socket).await.unwrap();
        let (_request, mut respond) = connection.accept().await.unwrap().unwrap();
        received_tx.send(()).unwrap();
        let drive = async { while connection.accept().await.is_some() {} };
        tokio::select! {
            _ = drive => {}
            _ = answer_rx => {
                let head = http::Response::builder().body(()).unwrap();
                let mut body = respond.send_response(head, false).unwrap();
                body.send_data(bytes::Bytes::from_static(b"done"), true).unwrap();
                while connection.accept().await.is_some() {}
            }
        }
    });
    let strait = start_strait(&single_service_config(&[format!("h2c://{backend}")])).await;
    let mut tcp = tokio::net::TcpStream::connect(strait.entrypoint("web").unwrap())
        .await
        .unwrap();
    tcp.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    received.await.unwrap();

    let mut drain = strait.drain_watch();
    let shutdown = tokio::spawn(strait.shutdown(Duration::from_secs(20)));
    drain.signaled().await;
    drop(drain);
    answer.send(()).unwrap();

    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    assert!(response.ends_with("4\r\ndone\r\n0\r\n\r\n"), "{response}");
    assert!(shutdown.await.unwrap());
}

#[tokio::test]
async fn the_admin_listener_answers_until_the_drain_has_ended() {
    let backend = TestBackend::start().await;
    let yaml = format!(
        "admin: {{ address: 127.0.0.1:0 }}\n{}",
        single_service_config(&[backend.url()])
    );
    let strait = start_strait(&yaml).await;
    let admin = strait.admin().unwrap();
    let (tx, mut replies) =
        strait_test::open_bidi(&mut echo_client(strait.entrypoint("web").unwrap()).await).await;

    let mut drain = strait.drain_watch();
    let stop = tokio::spawn(strait.stop());
    drain.signaled().await;
    drop(drain);
    assert_eq!(http1(admin, "GET", "/readyz", &[]).await.0, 503);
    assert_eq!(http1(admin, "GET", "/healthz", &[]).await.0, 200);
    assert!(!stop.is_finished(), "the drain waits for the open stream");

    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
    drop(replies);
    assert!(stop.await.unwrap());
    assert_eventually!(tokio::net::TcpStream::connect(admin).await.is_err());
}

/// Once the drain has started the config is no longer reloaded (a listener it started would
/// never be drained), and the refusal comes at once, not after the drain.
#[tokio::test]
async fn reload_is_refused_once_the_drain_has_started() {
    let backend = TestBackend::start().await;
    let yaml = single_service_config(&[backend.url()]);
    let strait = start_strait(&yaml).await;
    let (tx, mut replies) =
        strait_test::open_bidi(&mut echo_client(strait.entrypoint("web").unwrap()).await).await;

    let handle = strait.clone();
    let mut drain = strait.drain_watch();
    let shutdown = tokio::spawn(strait.shutdown(Duration::from_secs(20)));
    drain.signaled().await;
    drop(drain);
    let more = yaml.replace(
        "entrypoints:\n",
        "entrypoints:\n  more: { address: 127.0.0.1:0 }\n",
    );
    let config = strait_config::parse_str(&more, strait_config::Format::Yaml, "t.yaml").unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), handle.reload(config))
        .await
        .expect("refused at once")
        .unwrap_err();
    assert!(
        matches!(err, strait_app::StartError::ShuttingDown),
        "{err:?}"
    );
    assert!(err.to_string().contains("shutting down"), "{err}");
    assert_eq!(handle.entrypoints().len(), 1);
    assert_eq!(handle.live().generation, 1);

    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
    drop(replies);
    assert!(shutdown.await.unwrap());
}
