//! `max_requests_per_connection` on a service rotates upstream connections: an HTTP/2
//! connection that has carried N streams takes no new ones and closes once they have ended;
//! an HTTP/1.1 connection is closed instead of reused after its Nth request. No request fails
//! because of the rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use strait_grpc::echo::EchoRequest;
use strait_test::backend::{Behaviour, TestBackend};
use strait_test::http_echo::HttpEcho;
use strait_test::{assert_eventually, echo_client, start_strait, Running};

/// One entrypoint `web` routing everything to service `b` with one server `url`; `extra`
/// goes into the service's mapping.
fn rotating(url: &str, max_requests: u32, extra: &str) -> String {
    format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\nrouters:\n  all: {{ service: b }}\n\
         services:\n  b:\n    servers: ['{url}']\n    max_requests_per_connection: {max_requests}\n{extra}"
    )
}

/// `strait_upstream_connections_closed_total`, summed over its series.
fn closed(strait: &Running) -> u64 {
    strait
        .metrics()
        .encode()
        .lines()
        .filter(|l| l.starts_with("strait_upstream_connections_closed_total"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test]
async fn http2_connections_rotate_after_n_requests() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&rotating(&backend.url(), 3, "")).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;
    for i in 0..12 {
        let reply = client
            .unary(EchoRequest {
                payload: format!("call {i}").into(),
                repeat: 0,
            })
            .await
            .unwrap_or_else(|status| panic!("call {i} failed: {status:?}"));
        assert_eq!(reply.into_inner().payload, format!("call {i}"));
    }
    assert_eq!(backend.calls(), 12);
    assert_eq!(backend.connections(), 4, "12 calls at 3 per connection");
    // Every connection carried its 3 and closed once they had ended; none is kept open.
    assert_eventually!(closed(&strait) == 4);
    let endpoint = strait.proxy().services()[0].endpoints()[0].clone();
    assert_eq!(endpoint.open_connections(), 0);

    client.unary(EchoRequest::default()).await.unwrap();
    assert_eq!(backend.connections(), 5);
}

/// A stream open on a connection when it reaches its count keeps going there; new requests
/// go to new connections; the old one closes only when that stream ends.
#[tokio::test]
async fn a_stream_open_across_the_rotation_finishes_on_its_connection() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&rotating(&backend.url(), 2, "")).await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    let (tx, mut replies) = strait_test::open_bidi(&mut client).await;
    assert_eq!(backend.connections(), 1);

    // The second request on the first connection uses it up; the next two use up a second,
    // the fifth opens a third.
    for _ in 0..4 {
        client.unary(EchoRequest::default()).await.unwrap();
    }
    assert_eq!(backend.connections(), 3);
    // The second connection has nothing open, so it closes; the first has the stream.
    assert_eventually!(closed(&strait) == 1);

    tx.send(EchoRequest {
        payload: "still here".into(),
        repeat: 0,
    })
    .await
    .unwrap();
    assert_eq!(
        replies.message().await.unwrap().unwrap().payload,
        "still here"
    );
    assert_eq!(
        closed(&strait),
        1,
        "the first connection waits for its stream"
    );
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
    assert_eventually!(closed(&strait) == 2);
    assert_eq!(backend.connections(), 3);
}

/// Calls in flight together across several rotations all succeed, N to a connection.
#[tokio::test]
async fn concurrent_streams_across_rotations_all_succeed() {
    let backend = TestBackend::start().await;
    // Answers come late, so the calls are open on their connections together.
    backend.set_behaviour(Behaviour {
        fail: None,
        delay: Duration::from_millis(300),
    });
    let strait = start_strait(&rotating(&backend.url(), 5, "")).await;
    let client = echo_client(strait.entrypoint("web").unwrap()).await;
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                client
                    .unary(EchoRequest {
                        payload: format!("call {i}").into(),
                        repeat: 0,
                    })
                    .await
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let reply = call
            .await
            .unwrap()
            .unwrap_or_else(|status| panic!("call {i} failed: {status:?}"));
        assert_eq!(reply.into_inner().payload, format!("call {i}"));
    }
    assert_eq!(backend.calls(), 20);
    assert_eq!(backend.connections(), 4, "20 calls at 5 per connection");
    assert_eventually!(closed(&strait) == 4);
}

/// Under `circuit_breakers.max_connections: 1`, a used-up connection makes room for its
/// replacement: nothing waits forever and nothing fails.
#[tokio::test]
async fn rotation_under_a_connection_limit() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&rotating(
        &backend.url(),
        2,
        "    circuit_breakers: { max_connections: 1 }\n",
    ))
    .await;
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;
    for _ in 0..6 {
        tokio::time::timeout(
            Duration::from_secs(10),
            client.unary(EchoRequest::default()),
        )
        .await
        .expect("a call waited for a connection that never came")
        .unwrap();
    }
    assert_eq!(backend.connections(), 3);
}

#[tokio::test]
async fn http1_connections_close_after_n_requests() {
    let backend = HttpEcho::start().await;
    let strait = start_strait(&rotating(&backend.url("http"), 3, "")).await;
    let addr = strait.entrypoint("web").unwrap();
    let mut h2 = strait_test::raw::h2_connect(addr).await;
    for i in 0..7 {
        let head = http::Request::get(format!("http://{addr}/r{i}"))
            .body(())
            .unwrap();
        let (response, _) = h2.send_request(head, true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200, "request {i}");
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            chunk.unwrap();
        }
    }
    assert_eq!(backend.requests(), 7);
    assert_eq!(backend.connections(), 3, "7 requests at 3 per connection");
    // The two used-up connections are closed; the third, with one request, is pooled.
    assert_eventually!(closed(&strait) == 2);
    let endpoint = strait.proxy().services()[0].endpoints()[0].clone();
    assert_eq!(endpoint.open_connections(), 1);
}
