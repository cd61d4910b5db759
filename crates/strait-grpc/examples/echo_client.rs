//! Calls the demo echo service through strait: `cargo run --example echo_client [URL]`.
//! With `strait run` (no config) listening on 127.0.0.1:8080, it makes a unary call, a server
//! stream and a health check, and prints what came back.

use strait_grpc::echo::{EchoClient, EchoRequest};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let channel = tonic::transport::Endpoint::from_shared(url.clone())?
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {url} (is `strait run` running?): {e}"))?;

    let mut echo = EchoClient::new(channel.clone());
    let reply = echo
        .unary(EchoRequest {
            payload: "hello through strait".into(),
            repeat: 0,
        })
        .await?;
    println!(
        "unary:  {}",
        String::from_utf8_lossy(&reply.into_inner().payload)
    );

    let mut stream = echo
        .server_stream(EchoRequest {
            payload: "tick".into(),
            repeat: 3,
        })
        .await?
        .into_inner();
    while let Some(reply) = stream.message().await? {
        println!(
            "stream: {} #{}",
            String::from_utf8_lossy(&reply.payload),
            reply.index
        );
    }

    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: strait_grpc::echo::SERVICE_NAME.to_owned(),
        })
        .await?;
    println!("health: {:?}", health.into_inner().status());
    Ok(())
}
