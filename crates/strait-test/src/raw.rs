//! A raw HTTP/2 backend built on the `h2` crate: it accepts streams, records them, never
//! answers, and records the RST_STREAM reason of every stream the proxy resets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use h2::Reason;
use tokio::net::TcpListener;

#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub requests: Arc<Mutex<Vec<http::request::Parts>>>,
    pub resets: Arc<Mutex<Vec<Reason>>>,
}

pub struct SilentBackend {
    pub addr: SocketAddr,
    pub observed: Observed,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SilentBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SilentBackend {
    /// Accepts streams and never answers them.
    pub async fn start() -> SilentBackend {
        Self::start_with(None).await
    }

    /// Resets every stream with `reason` as soon as it arrives.
    pub async fn resetting(reason: Reason) -> SilentBackend {
        Self::start_with(Some(reason)).await
    }

    async fn start_with(reset: Option<Reason>) -> SilentBackend {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let observed = Observed::default();
        let o = observed.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let o = o.clone();
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((request, mut respond))) = conn.accept().await {
                        o.requests.lock().unwrap().push(request.into_parts().0);
                        if let Some(reason) = reset {
                            respond.send_reset(reason);
                            continue;
                        }
                        let resets = o.resets.clone();
                        tokio::spawn(async move {
                            if let Ok(reason) =
                                std::future::poll_fn(|cx| respond.poll_reset(cx)).await
                            {
                                resets.lock().unwrap().push(reason);
                            }
                        });
                    }
                });
            }
        });
        SilentBackend {
            addr,
            observed,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("h2c://{}", self.addr)
    }

    pub fn request_count(&self) -> usize {
        self.observed.requests.lock().unwrap().len()
    }

    pub fn resets(&self) -> Vec<Reason> {
        self.observed.resets.lock().unwrap().clone()
    }
}

/// A raw HTTP/2 client connection (prior knowledge) to `addr`; the connection is driven in
/// the background.
pub async fn h2_connect(addr: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// A gRPC-shaped request head for raw clients.
pub fn grpc_request(addr: SocketAddr, path: &str) -> http::request::Builder {
    http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
}
