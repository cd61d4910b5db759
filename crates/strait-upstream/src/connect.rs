use std::sync::Arc;
use std::time::Duration;

use strait_core::{ErrorKind, ProxyError, Side};
use tokio::net::TcpStream;

/// How long establishing a TCP connection may take. A connect is not a stream, so this is the
/// one timeout strait applies by default (Envoy uses the same 5 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where an endpoint's connections go.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    host: String,
    port: u16,
    pub(crate) label: Arc<str>,
}

impl Target {
    pub(crate) fn new(host: String, port: u16, label: Arc<str>) -> Target {
        Target { host, port, label }
    }

    pub(crate) async fn connect(&self) -> Result<TcpStream, ProxyError> {
        let fail = |what: &str| {
            ProxyError::new(
                ErrorKind::Connect,
                Side::Upstream,
                format!("{what} endpoint {}", self.label),
            )
        };
        let attempt = TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(fail("cannot connect to").with_source(e)),
            Err(_) => {
                return Err(fail("timed out after 5s connecting to"));
            }
        };
        // Small gRPC messages must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// The `Host`/`:authority` to use when the client sent none.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}
