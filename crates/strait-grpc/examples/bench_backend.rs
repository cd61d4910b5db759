//! The backend of `bench/run`: a minimal HTTP/2 (h2c) server that answers every POST like a
//! unary gRPC echo — it reads the whole request body, then sends `200`,
//! `content-type: application/grpc`, the same bytes back, and a real trailer
//! `grpc-status: 0`. It is built on `h2` alone (no tonic, no protobuf decoding) so that it
//! costs as little CPU as possible: it shares one core with the load generator.
//!
//! `GET /stats` answers `connections N\nrequests M\n`: how many connections have carried at
//! least one echo request, and how many echo requests there were. The harness reads it before
//! and after each run to measure how many upstream connections a proxy opened per request.
//!
//! `cargo run --release --example bench_backend -- 127.0.0.1:50051`

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, HeaderValue, Request, Response};

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static REQUESTS: AtomicU64 = AtomicU64::new(0);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".to_owned());
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    println!("bench backend listening on {}", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        tokio::spawn(async move {
            if let Err(e) = connection(socket).await {
                if !e.is_go_away() && !e.is_io() {
                    eprintln!("connection: {e}");
                }
            }
        });
    }
}

async fn connection(socket: tokio::net::TcpStream) -> Result<(), h2::Error> {
    let mut conn = h2::server::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .max_concurrent_streams(1024)
        .handshake::<_, Bytes>(socket)
        .await?;
    let mut counted = false;
    while let Some(next) = conn.accept().await {
        let (request, respond) = next?;
        if request.uri().path() == "/stats" {
            stats(respond);
            continue;
        }
        if !counted {
            counted = true;
            CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        }
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(echo(request, respond));
    }
    Ok(())
}

fn stats(mut respond: SendResponse<Bytes>) {
    let body = format!(
        "connections {}\nrequests {}\n",
        CONNECTIONS.load(Ordering::Relaxed),
        REQUESTS.load(Ordering::Relaxed)
    );
    if let Ok(mut send) = respond.send_response(Response::new(()), false) {
        let _ = send.send_data(Bytes::from(body), true);
    }
}

async fn echo(request: Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    let mut body = request.into_body();
    let mut chunks = Vec::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return };
        let _ = body.flow_control().release_capacity(chunk.len());
        chunks.push(chunk);
    }
    let mut response = Response::new(());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let Ok(mut send) = respond.send_response(response, false) else {
        return;
    };
    for chunk in chunks {
        // h2 queues data beyond the peer's window and sends it as the window opens.
        if send.send_data(chunk, false).is_err() {
            return;
        }
    }
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let _ = send.send_trailers(trailers);
}
