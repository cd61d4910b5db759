//! A tonic echo backend whose behaviour a test picks per call with the `x-test` request
//! metadata, and which records what it saw.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use strait_grpc::echo::{DemoEcho, Echo, EchoReply, EchoRequest, EchoServer, ReplyStream};
use tokio::net::TcpListener;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status, Streaming};

/// Every byte value, so a byte-exact check of `grpc-status-details-bin` means something.
pub fn details() -> Bytes {
    (0..=255u8)
        .chain([0, 0, 255, 10, 13])
        .collect::<Vec<_>>()
        .into()
}

pub const TRAILER_BIN: &[u8] = &[0, 1, 2, 254, 255];

/// The request metadata that picks a call's behaviour.
pub const MODE: &str = "x-test";

/// `request` with its behaviour picked: `x-test: <mode>` (`hang`, `gap`, `fail`, ...).
pub fn in_mode<T>(mut request: Request<T>, mode: &str) -> Request<T> {
    request.metadata_mut().insert(MODE, mode.parse().unwrap());
    request
}

/// A unary call the backend holds open until the client goes away.
pub fn hanging() -> Request<EchoRequest> {
    in_mode(Request::new(EchoRequest::default()), "hang")
}

/// The silent gap `x-test: gap` puts between two server-stream messages.
pub const GAP: Duration = Duration::from_secs(75);

#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Request metadata of every call, in arrival order.
    pub metadata: Arc<Mutex<Vec<MetadataMap>>>,
    /// Handlers dropped before they finished: the call was cancelled under them.
    pub cancelled: Arc<AtomicUsize>,
    /// TCP connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// How every call behaves, whatever its `x-test` mode.
    pub behaviour: Arc<Mutex<Behaviour>>,
}

/// What the backend does to every call: fail it with a status (unary: trailers-only;
/// server streaming: one message, then the status in real trailers), or answer late.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    pub fail: Option<Code>,
    pub delay: Duration,
}

pub struct TestBackend {
    pub addr: SocketAddr,
    pub observed: Observed,
    /// grpc.health.v1 on the backend: the whole server ("") and the echo service start
    /// SERVING.
    health: tonic_health::server::HealthReporter,
    task: tokio::task::JoinHandle<()>,
    /// Starts a graceful shutdown (GOAWAY, in-flight calls finish).
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    max_streams: Option<u32>,
}

#[derive(Clone, Debug)]
struct TestEcho {
    observed: Observed,
}

/// Counts a handler as cancelled if it is dropped before `finish`.
struct CancelGuard {
    cancelled: Arc<AtomicUsize>,
    finished: bool,
}

impl CancelGuard {
    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestBackend {
    pub async fn start() -> TestBackend {
        Self::start_with_max_streams(None).await
    }

    /// A backend that advertises SETTINGS_MAX_CONCURRENT_STREAMS = `max`.
    pub async fn start_with_max_streams(max: Option<u32>) -> TestBackend {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        Self::serve(listener, max, None, Observed::default())
    }

    /// Shuts down gracefully (HTTP/2 GOAWAY; calls in flight finish), waits until it has,
    /// then serves again on the same address, as a backend restarted by its orchestrator.
    /// `while_down` runs while nothing listens.
    pub async fn restart_gracefully<F: std::future::Future<Output = ()>>(&mut self, while_down: F) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.task).await.unwrap();
        while_down.await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let restarted = Self::serve(listener, self.max_streams, None, self.observed.clone());
        *self = restarted;
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.observed.behaviour.lock().unwrap() = behaviour;
    }

    /// A gRPC backend behind TLS (tonic's rustls) with `identity`; it offers ALPN h2.
    pub async fn start_tls(identity: &crate::tls::Issued) -> TestBackend {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let tls = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&identity.cert_pem, &identity.key_pem),
        );
        Self::serve(listener, None, Some(tls), Observed::default())
    }

    fn serve(
        listener: TcpListener,
        max_streams: Option<u32>,
        tls: Option<tonic::transport::ServerTlsConfig>,
        observed: Observed,
    ) -> TestBackend {
        let addr = listener.local_addr().unwrap();
        let connections = observed.connections.clone();
        let incoming = TcpListenerStream::new(listener).inspect(move |stream| {
            connections.fetch_add(1, Ordering::SeqCst);
            // Trailers right after a message must not wait for Nagle and a delayed ACK.
            if let Ok(stream) = stream {
                let _ = stream.set_nodelay(true);
            }
        });
        let service = EchoServer::new(TestEcho {
            observed: observed.clone(),
        })
        .max_decoding_message_size(strait_grpc::echo::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(strait_grpc::echo::MAX_MESSAGE_SIZE);
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).unwrap();
        }
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = builder
                .max_concurrent_streams(max_streams)
                // Backends take large metadata, so strait's own limits are what tests see.
                .http2_max_header_list_size(1 << 20)
                .add_service(health_service)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop.await;
                })
                .await;
        });
        TestBackend {
            addr,
            observed,
            health,
            task,
            shutdown: Some(shutdown),
            max_streams,
        }
    }

    pub fn url(&self) -> String {
        format!("h2c://{}", self.addr)
    }

    /// What grpc.health.v1 reports for the whole server ("") and the echo service.
    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        for name in ["", strait_grpc::echo::SERVICE_NAME] {
            self.health.set_service_status(name, status).await;
        }
    }

    pub fn calls(&self) -> usize {
        self.observed.metadata.lock().unwrap().len()
    }

    pub fn last_metadata(&self) -> MetadataMap {
        self.observed
            .metadata
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the backend saw a call")
    }

    pub fn cancelled(&self) -> usize {
        self.observed.cancelled.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.observed.connections.load(Ordering::SeqCst)
    }
}

impl TestEcho {
    fn record<T>(&self, request: &Request<T>) -> Option<String> {
        let metadata = request.metadata().clone();
        let mode = metadata
            .get(MODE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.observed.metadata.lock().unwrap().push(metadata);
        mode
    }

    /// Applies the backend-wide behaviour: waits out the delay, then the failure if any.
    async fn behave(&self) -> Option<Status> {
        let behaviour = self.observed.behaviour.lock().unwrap().clone();
        if !behaviour.delay.is_zero() {
            tokio::time::sleep(behaviour.delay).await;
        }
        behaviour
            .fail
            .map(|code| Status::new(code, "the test backend is failing"))
    }

    fn guard(&self) -> CancelGuard {
        CancelGuard {
            cancelled: self.observed.cancelled.clone(),
            finished: false,
        }
    }
}

fn failure() -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert_bin("x-trailer-bin", MetadataValue::from_bytes(TRAILER_BIN));
    metadata.insert("x-trailer", "trailer-value".parse().unwrap());
    Status::with_details_and_metadata(
        Code::FailedPrecondition,
        "precondition failed: ünïcode and 100%",
        details(),
        metadata,
    )
}

/// Request metadata whose key starts with `x-echo` comes back in the response headers.
fn echoed(request: &MetadataMap) -> MetadataMap {
    let mut out = MetadataMap::new();
    for entry in request.iter() {
        match entry {
            tonic::metadata::KeyAndValueRef::Ascii(k, v) if k.as_str().starts_with("x-echo") => {
                out.insert(k.clone(), v.clone());
            }
            tonic::metadata::KeyAndValueRef::Binary(k, v) if k.as_str().starts_with("x-echo") => {
                out.insert_bin(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    out
}

#[tonic::async_trait]
impl Echo for TestEcho {
    type ServerStreamStream = ReplyStream;
    type BidiStream = ReplyStream;

    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let guard = self.guard();
        let mode = self.record(&request);
        if let Some(status) = self.behave().await {
            guard.finish();
            return Err(status);
        }
        match mode.as_deref() {
            Some("details") => {
                guard.finish();
                return Err(failure());
            }
            Some("hang") => std::future::pending::<()>().await,
            _ => {}
        }
        guard.finish();
        let metadata = echoed(request.metadata());
        let payload = request.into_inner().payload;
        let mut response = Response::new(EchoReply { payload, index: 0 });
        *response.metadata_mut() = metadata;
        Ok(response)
    }

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        let mode = self.record(&request);
        let failing = self.behave().await;
        let EchoRequest { payload, repeat } = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let guard = self.guard();
        tokio::spawn(async move {
            if let Some(status) = failing {
                // The status goes in real trailers, after a message.
                let _ = tx
                    .send(Ok(EchoReply {
                        payload: payload.clone(),
                        index: 0,
                    }))
                    .await;
                let _ = tx.send(Err(status)).await;
                guard.finish();
                return;
            }
            let reply = |index| {
                Ok(EchoReply {
                    payload: payload.clone(),
                    index,
                })
            };
            match mode.as_deref() {
                Some("gap") => {
                    let _ = tx.send(reply(0)).await;
                    tokio::select! {
                        _ = tokio::time::sleep(GAP) => {}
                        // The proxy reset the stream: stop, counting it as cancelled.
                        _ = tx.closed() => return,
                    }
                    let _ = tx.send(reply(1)).await;
                }
                Some("fail-after") => {
                    for index in 0..repeat {
                        let _ = tx.send(reply(index)).await;
                    }
                    let _ = tx.send(Err(failure())).await;
                }
                _ => {
                    for index in 0..repeat.max(1) {
                        if tx.send(reply(index)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            guard.finish();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        self.record(&request);
        DemoEcho.client_stream(request).await
    }

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        self.record(&request);
        DemoEcho.bidi(request).await
    }
}
