//! Shutdown stops accepting and lets open streams finish.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use strait_grpc::echo::EchoRequest;
use strait_test::backend::TestBackend;
use strait_test::{echo_client, single_service_config, start_strait};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[tokio::test]
async fn open_stream_finishes_after_shutdown_starts() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let addr = strait.entrypoint("web").unwrap();
    let mut client = echo_client(addr).await;

    let (tx, rx) = mpsc::channel(1);
    let mut replies = client
        .bidi(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(EchoRequest::default()).await.unwrap();
    replies.message().await.unwrap().unwrap();

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
