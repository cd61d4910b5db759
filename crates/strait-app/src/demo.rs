//! The embedded default that `strait run` uses without a config: a plaintext entrypoint on
//! 127.0.0.1:8080 in front of the demo echo + health service, which strait starts on a
//! loopback port and reaches through the ordinary upstream path.

use std::net::SocketAddr;

use strait_config::{Config, ConfigError, Format};
use tokio::net::TcpListener;
use tracing::warn;

/// The embedded config; `{demo}` becomes the demo backend's address.
pub const DEFAULT_CONFIG: &str = r#"# strait's embedded default: try it with
#   cargo run --example echo_client
admin:
  address: 127.0.0.1:9901

entrypoints:
  web:
    address: 127.0.0.1:8080

routers:
  demo:
    match: { path_prefix: / }
    service: demo

services:
  demo:
    servers:
      - url: h2c://{demo}
"#;

/// Starts the demo backend on a free loopback port and returns the default config that
/// points at it.
pub async fn default_config() -> Result<(Config, SocketAddr), DemoError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(DemoError::Bind)?;
    let address = listener.local_addr().map_err(DemoError::Bind)?;
    tokio::spawn(async move {
        if let Err(e) = strait_grpc::echo::serve_demo(listener).await {
            warn!(error = %e, "demo echo backend stopped");
        }
    });
    let text = DEFAULT_CONFIG.replace("{demo}", &address.to_string());
    let config = strait_config::parse_str(&text, Format::Yaml, "<embedded default>")
        .map_err(DemoError::Config)?;
    Ok((config, address))
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the demo echo backend on 127.0.0.1: {0}")]
    Bind(std::io::Error),
    #[error("the embedded default config is invalid (a bug in strait): {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<ConfigError>),
}
