//! A plain HTTP backend (HTTP/1.1 and h2c prior knowledge on one port) that answers every
//! request with a description of what it received, so tests can check what the proxy sent.
//! A request with `x-test: hang` gets no answer until [`HttpEcho::release_held`];
//! [`HttpEcho::set_status`] makes a path answer another status.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub struct HttpEcho {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    statuses: Statuses,
    released: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The status a path answers with instead of 200.
type Statuses = Arc<Mutex<HashMap<String, u16>>>;

impl Drop for HttpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpEcho {
    pub async fn start() -> HttpEcho {
        Self::start_with(None).await
    }

    /// The same backend behind TLS with `identity`, offering `alpn` (e.g. `["http/1.1"]` for
    /// a backend that cannot speak HTTP/2 over TLS).
    pub async fn start_tls(identity: &crate::tls::Issued, alpn: &[&str]) -> HttpEcho {
        Self::start_mtls(identity, alpn, None).await
    }

    /// Like [`HttpEcho::start_tls`], and with `client_ca` it requires client certificates
    /// issued by that CA.
    pub async fn start_mtls(
        identity: &crate::tls::Issued,
        alpn: &[&str],
        client_ca: Option<&crate::tls::TestCa>,
    ) -> HttpEcho {
        let builder = rustls::ServerConfig::builder();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(crate::tls::pem_certs(ca.ca_pem()).remove(0))
                    .unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(
                crate::tls::pem_certs(&identity.cert_pem),
                crate::tls::pem_key(&identity.key_pem),
            )
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> HttpEcho {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let accepted = connections.clone();
        let statuses = Statuses::default();
        let answers = statuses.clone();
        let (released, held) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let counter = counter.clone();
                let tls = tls.clone();
                let answers = answers.clone();
                let held = held.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let status = answers
                            .lock()
                            .unwrap()
                            .get(request.uri().path())
                            .copied()
                            .unwrap_or(200);
                        describe(request, status, held.clone())
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                            let builder = if h2 {
                                builder.http2_only()
                            } else {
                                builder.http1_only()
                            };
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        HttpEcho {
            addr,
            requests,
            connections,
            statuses,
            released,
            task,
        }
    }

    /// Answers the `x-test: hang` requests held so far, and every later one at once.
    pub fn release_held(&self) {
        self.released.send_replace(true);
    }

    /// Requests for `path` get `status` from now on.
    pub fn set_status(&self, path: &str, status: u16) {
        self.statuses
            .lock()
            .unwrap()
            .insert(path.to_owned(), status);
    }

    /// `http://` (HTTP/1.1) or `h2c://` URL for a strait config.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// The response body lists `version`, `method`, `uri`, each header as `name: value`, then a
/// blank line and the request body. Response header `x-backend-version` repeats the version.
async fn describe(
    request: Request<Incoming>,
    status: u16,
    mut held: tokio::sync::watch::Receiver<bool>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request
        .headers()
        .get(crate::backend::MODE)
        .is_some_and(|v| v.as_bytes() == b"hang")
    {
        // Never released: the sender lives as long as the backend.
        let _ = held.wait_for(|released| *released).await;
    }
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => Bytes::from(format!("body error: {e}")),
    };
    let mut text = format!(
        "version: {:?}\nmethod: {}\nuri: {}\n",
        parts.version, parts.method, parts.uri
    );
    for (name, value) in &parts.headers {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&body));
    let response = Response::builder()
        .status(status)
        .header("x-backend-version", format!("{:?}", parts.version))
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(text)))
        .unwrap();
    Ok(response)
}
