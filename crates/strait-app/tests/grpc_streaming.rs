//! Every gRPC streaming kind through a real strait to a real tonic backend, with large
//! messages and many concurrent streams on one connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use strait_grpc::echo::{EchoClient, EchoRequest};
use strait_test::backend::TestBackend;
use strait_test::{echo_client, single_service_config, start_strait, Running};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

async fn setup() -> (TestBackend, Running, EchoClient<Channel>) {
    let backend = TestBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let client = echo_client(strait.entrypoint("web").unwrap()).await;
    (backend, strait, client)
}

fn request(payload: impl Into<Bytes>, repeat: u32) -> EchoRequest {
    EchoRequest {
        payload: payload.into(),
        repeat,
    }
}

#[tokio::test]
async fn unary() {
    let (backend, _strait, mut client) = setup().await;
    let reply = client
        .unary(request("hello", 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.payload, "hello");
    assert_eq!(backend.calls(), 1);
}

#[tokio::test]
async fn server_streaming() {
    let (_backend, _strait, mut client) = setup().await;
    let mut stream = client
        .server_stream(request("tick", 100))
        .await
        .unwrap()
        .into_inner();
    let mut indexes = Vec::new();
    while let Some(reply) = stream.message().await.unwrap() {
        assert_eq!(reply.payload, "tick");
        indexes.push(reply.index);
    }
    assert_eq!(indexes, (0..100).collect::<Vec<_>>());
}

#[tokio::test]
async fn client_streaming() {
    let (_backend, _strait, mut client) = setup().await;
    let messages = (0..50).map(|i| request(format!("{i:02}"), 0));
    let reply = client
        .client_stream(futures_util::stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.index, 50);
    let expected: String = (0..50).map(|i| format!("{i:02}")).collect();
    assert_eq!(reply.payload, expected.as_bytes());
}

/// Lockstep ping-pong: each reply must arrive before the next message is sent, which only
/// works if strait forwards each message at once in both directions.
#[tokio::test]
async fn bidi_streaming_is_not_buffered() {
    let (_backend, _strait, mut client) = setup().await;
    let (tx, rx) = mpsc::channel(1);
    let mut replies = client
        .bidi(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for i in 0..20u32 {
        tx.send(request(format!("ping {i}"), 0)).await.unwrap();
        let reply = replies
            .message()
            .await
            .unwrap()
            .expect("a reply per message");
        assert_eq!(reply.payload, format!("ping {i}").as_bytes());
        assert_eq!(reply.index, i);
    }
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
}

#[tokio::test]
async fn sixteen_mib_messages_both_ways() {
    let (_backend, _strait, mut client) = setup().await;
    let big: Bytes = (0..16 * 1024 * 1024 + 7)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let reply = client
        .unary(request(big.clone(), 0))
        .await
        .unwrap()
        .into_inner();
    assert!(
        reply.payload == big,
        "16 MiB unary payload came back changed"
    );

    let messages = vec![request(big.clone(), 0), request(big.clone(), 0)];
    let mut replies = client
        .bidi(futures_util::stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    let mut count = 0;
    while let Some(reply) = replies.message().await.unwrap() {
        assert!(reply.payload == big);
        count += 1;
    }
    assert_eq!(count, 2);
}

/// 250 streams open at the same time on one client connection (more than hyper's default
/// limit of 200), each answered while all are open; the backend is reached over a few shared
/// connections, not one per stream.
#[tokio::test]
async fn two_hundred_fifty_concurrent_streams_on_one_connection() {
    let (backend, _strait, client) = setup().await;
    let mut senders = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..250 {
        let (tx, rx) = mpsc::channel(1);
        let mut client = client.clone();
        senders.push(tx);
        streams.push(tokio::spawn(async move {
            client
                .bidi(ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner()
        }));
    }
    let mut open = Vec::new();
    for (i, (tx, stream)) in senders.iter().zip(streams).enumerate() {
        tx.send(request(format!("{i}"), 0)).await.unwrap();
        let mut stream = stream.await.unwrap();
        let reply = stream.message().await.unwrap().unwrap();
        assert_eq!(reply.payload, format!("{i}").as_bytes());
        open.push(stream);
    }
    // All 250 are still open here; now finish them.
    drop(senders);
    for mut stream in open {
        assert!(stream.message().await.unwrap().is_none());
    }
    assert!(
        backend.connections() <= 3,
        "250 streams used {} upstream connections",
        backend.connections()
    );
}

#[tokio::test]
async fn upstream_connection_is_reused_across_calls() {
    let (backend, _strait, client) = setup().await;
    let calls = (0..50).map(|i| {
        let mut client = client.clone();
        async move { client.unary(request(format!("{i}"), 0)).await.unwrap() }
    });
    let replies = futures_util::future::join_all(calls).await;
    assert_eq!(replies.len(), 50);
    assert_eq!(backend.connections(), 1);
}
