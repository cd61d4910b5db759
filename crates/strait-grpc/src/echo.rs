//! The demo echo service (`strait.echo.v1.Echo`) and a server for it with grpc.health.v1.
//! `strait run` without a config proxies to it; tests build their backends on the same code.

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};

include!(concat!(env!("OUT_DIR"), "/strait.echo.v1.Echo.rs"));

pub use echo_client::EchoClient;
pub use echo_server::{Echo, EchoServer};

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(bytes = "bytes", tag = "1")]
    pub payload: Bytes,
    /// ServerStream: how many replies to send (at least one).
    #[prost(uint32, tag = "2")]
    pub repeat: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    #[prost(bytes = "bytes", tag = "1")]
    pub payload: Bytes,
    /// Position of this reply in its stream, from 0.
    #[prost(uint32, tag = "2")]
    pub index: u32,
}

pub type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send + 'static>>;

/// Echoes what it is sent; nothing more.
#[derive(Clone, Copy, Debug, Default)]
pub struct DemoEcho;

/// The service name grpc.health.v1 reports for the echo service.
pub const SERVICE_NAME: &str = "strait.echo.v1.Echo";

/// Largest message the demo accepts or sends, so large-message tests fit.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Serves the echo service and grpc.health.v1 (reporting it SERVING) on `listener` until the
/// future is dropped.
pub async fn serve_demo(listener: TcpListener) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<EchoServer<DemoEcho>>().await;
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(
            EchoServer::new(DemoEcho)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        )
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
}

// === impl DemoEcho ===

#[tonic::async_trait]
impl Echo for DemoEcho {
    type ServerStreamStream = ReplyStream;
    type BidiStream = ReplyStream;

    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let payload = request.into_inner().payload;
        Ok(Response::new(EchoReply { payload, index: 0 }))
    }

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        let EchoRequest { payload, repeat } = request.into_inner();
        let replies = (0..repeat.max(1)).map(move |index| {
            Ok(EchoReply {
                payload: payload.clone(),
                index,
            })
        });
        Ok(Response::new(Box::pin(futures_util::stream::iter(replies))))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let mut stream = request.into_inner();
        let mut all = BytesMut::new();
        let mut count = 0u32;
        while let Some(message) = stream.next().await {
            all.extend_from_slice(&message?.payload);
            count += 1;
        }
        Ok(Response::new(EchoReply {
            payload: all.freeze(),
            index: count,
        }))
    }

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let stream = request.into_inner();
        let replies = stream.enumerate().map(|(index, message)| {
            message.map(|m| EchoReply {
                payload: m.payload,
                index: u32::try_from(index).unwrap_or(u32::MAX),
            })
        });
        Ok(Response::new(Box::pin(replies)))
    }
}
