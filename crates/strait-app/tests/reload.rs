//! Reload without loss: new requests use the new config, requests in flight finish on the
//! old one, unchanged listeners keep their sockets, a bad config changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use strait_config::{parse_str, Format};
use strait_grpc::echo::EchoRequest;
use strait_test::backend::TestBackend;
use strait_test::{assert_eventually, echo_client, single_service_config, start_strait};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn config(yaml: &str) -> strait_config::Config {
    parse_str(yaml, Format::Yaml, "reload.yaml").unwrap()
}

fn hello(text: &str) -> EchoRequest {
    EchoRequest {
        payload: text.to_owned().into(),
        repeat: 0,
    }
}

#[tokio::test]
async fn a_stream_spanning_a_reload_completes_on_its_old_backend() {
    let old = TestBackend::start().await;
    let new = TestBackend::start().await;
    let strait = start_strait(&single_service_config(&[old.url()])).await;
    let addr = strait.entrypoint("web").unwrap();
    let mut client = echo_client(addr).await;

    let (tx, rx) = mpsc::channel(1);
    let mut replies = client
        .bidi(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(hello("before")).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().payload, "before");

    let generation = strait
        .reload(config(&single_service_config(&[new.url()])))
        .await
        .unwrap();
    assert_eq!(generation, 2);
    assert_eq!(
        strait.entrypoint("web"),
        Some(addr),
        "unchanged entrypoint keeps its socket"
    );

    for i in 0..5 {
        tx.send(hello(&format!("during {i}"))).await.unwrap();
        let reply = replies.message().await.unwrap().unwrap();
        assert_eq!(reply.payload, format!("during {i}").as_bytes());
    }
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());

    // New calls, even on the same client connection, use the new config.
    client.unary(hello("after")).await.unwrap();
    assert_eq!((old.calls(), new.calls()), (1, 1));
}

#[tokio::test]
async fn calls_started_during_a_reload_all_succeed() {
    let a = TestBackend::start().await;
    let b = TestBackend::start().await;
    let strait = start_strait(&single_service_config(&[a.url()])).await;
    let client = echo_client(strait.entrypoint("web").unwrap()).await;
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move { client.unary(hello(&format!("{i}"))).await })
        })
        .collect();
    strait
        .reload(config(&single_service_config(&[b.url()])))
        .await
        .unwrap();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(a.calls() + b.calls(), 20);
}

#[tokio::test]
async fn an_invalid_config_file_keeps_the_old_one_serving() {
    let a = TestBackend::start().await;
    let b = TestBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("strait.yaml");
    std::fs::write(&file, single_service_config(&[a.url()])).unwrap();
    let strait = strait_app::start(strait_config::load(&file).unwrap())
        .await
        .unwrap();
    strait.watch_config_file(file.clone());
    let mut client = echo_client(strait.entrypoint("web").unwrap()).await;

    std::fs::write(
        &file,
        "entrypoints:\n  web: { address: 127.0.0.1:0 }\nrouters:\n  all: { service: nowhere }\n",
    )
    .unwrap();
    let err = strait.reload_from_source().await.unwrap_err().to_string();
    assert!(err.contains(&format!("{}:4:19:", file.display())), "{err}");
    assert!(err.contains("`nowhere`"), "{err}");
    assert_eq!(strait.live().generation, 1);
    client.unary(hello("still a")).await.unwrap();
    assert_eq!(a.calls(), 1);

    // A fixed file is picked up by the watcher without a signal.
    std::fs::write(&file, single_service_config(&[b.url()])).unwrap();
    assert_eventually!(strait.live().generation >= 2);
    client.unary(hello("now b")).await.unwrap();
    assert_eq!((a.calls(), b.calls()), (1, 1));
}

#[tokio::test]
async fn entrypoints_are_added_kept_and_removed() {
    let backend = TestBackend::start().await;
    let two = |names: &[&str]| {
        let entrypoints: String = names
            .iter()
            .map(|n| format!("  {n}: {{ address: 127.0.0.1:0 }}\n"))
            .collect();
        format!(
            "entrypoints:\n{entrypoints}routers:\n  all: {{ service: b }}\nservices:\n  b: {{ servers: ['{}'] }}\n",
            backend.url()
        )
    };
    let strait = start_strait(&two(&["web", "old"])).await;
    let web = strait.entrypoint("web").unwrap();
    let old = strait.entrypoint("old").unwrap();

    strait
        .reload(config(&two(&["web", "added"])))
        .await
        .unwrap();
    assert_eq!(strait.entrypoint("web"), Some(web));
    assert_eq!(strait.entrypoint("old"), None);
    let added = strait.entrypoint("added").unwrap();
    echo_client(added)
        .await
        .unary(hello("new port"))
        .await
        .unwrap();
    echo_client(web)
        .await
        .unary(hello("same port"))
        .await
        .unwrap();
    assert_eventually!(tokio::net::TcpStream::connect(old).await.is_err());
}

#[tokio::test]
async fn a_reload_that_cannot_bind_changes_nothing() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&single_service_config(&[backend.url()])).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let yaml = format!(
        "entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n  busy: {{ address: 127.0.0.1:{port} }}\n\
         routers:\n  all: {{ service: nothing }}\nservices:\n  nothing: {{ servers: ['h2c://127.0.0.1:1'] }}\n"
    );
    let err = strait.reload(config(&yaml)).await.unwrap_err().to_string();
    assert!(err.contains("entrypoint `busy` cannot listen"), "{err}");
    assert_eq!(strait.live().generation, 1);
    echo_client(strait.entrypoint("web").unwrap())
        .await
        .unary(hello("old routes"))
        .await
        .unwrap();
    assert_eq!(backend.calls(), 1);
}
