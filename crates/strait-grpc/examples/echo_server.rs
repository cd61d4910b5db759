//! A demo gRPC backend for the configs in `examples/`: the echo service and grpc.health.v1.
//! `cargo run --example echo_server [ADDRESS]` (default 127.0.0.1:50051).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".to_owned());
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    println!("echo backend listening on {}", listener.local_addr()?);
    strait_grpc::echo::serve_demo(listener).await?;
    Ok(())
}
