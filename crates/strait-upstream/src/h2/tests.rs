//! The pool against a real HTTP/2 peer (`h2::server` on 127.0.0.1): which connection each
//! stream lands on, when connections open, and what GOAWAY and REFUSED_STREAM do. Every
//! response names the peer connection it came on (`x-conn`, in accept order).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use http_body_util::BodyExt;
use strait_telemetry::Metrics;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// What the test tells one of the peer's connections to do.
enum Ctl {
    /// A graceful shutdown (GOAWAY(NO_ERROR), a PING, then GOAWAY naming the last stream it
    /// saw), then a DATA frame on each stream it holds: once the client reads that frame, it
    /// has read the first GOAWAY too. The streams it holds stay open.
    GoAway,
    /// Ends every stream it holds.
    Finish,
    /// Starts the HTTP/2 handshake (sends SETTINGS), on a connection told to wait for this.
    Handshake,
}

/// An HTTP/2 server that answers every request with headers and holds the stream open
/// (`/refuse`: REFUSED_STREAM instead).
struct Peer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Each accepted connection's control, in accept order.
    new_conns: mpsc::UnboundedReceiver<mpsc::UnboundedSender<Ctl>>,
    conns: Vec<mpsc::UnboundedSender<Ctl>>,
}

impl Peer {
    /// A peer whose SETTINGS allow `max_streams` concurrent streams per connection.
    async fn start(max_streams: u32) -> Peer {
        Peer::start_holding(max_streams, None).await
    }

    /// Like [`Peer::start`], but connection `silent` (in accept order) sends nothing, its
    /// SETTINGS included, until told [`Ctl::Handshake`].
    async fn start_holding(max_streams: u32, silent: Option<usize>) -> Peer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (conns_tx, new_conns) = mpsc::unbounded_channel();
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let index = counter.fetch_add(1, Ordering::AcqRel);
                let (ctl_tx, ctl) = mpsc::unbounded_channel();
                let _ = conns_tx.send(ctl_tx);
                let silent = silent == Some(index);
                tokio::spawn(serve(tcp, index, max_streams, silent, ctl));
            }
        });
        Peer {
            addr,
            accepted,
            new_conns,
            conns: Vec::new(),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Acquire)
    }

    /// Sends `ctl` to the connection accepted `index`th.
    async fn tell(&mut self, index: usize, ctl: Ctl) {
        while self.conns.len() <= index {
            let conn = self.new_conns.recv().await.expect("the peer stopped");
            self.conns.push(conn);
        }
        assert!(
            self.conns[index].send(ctl).is_ok(),
            "connection {index} ended"
        );
    }

    /// A pool for one endpoint: this peer.
    fn pool(&self) -> H2Pool {
        let label: Arc<str> = format!("h2c://{}", self.addr).into();
        let target = Target::new(
            "127.0.0.1".to_owned(),
            self.addr.port(),
            label,
            None,
            WAIT,
            Metrics::new(),
        );
        H2Pool::new(target, Http2Settings::default(), Lifecycle::default(), None)
    }
}

/// One peer connection: answers requests, holding their streams, until the client leaves.
async fn serve(
    tcp: tokio::net::TcpStream,
    index: usize,
    max_streams: u32,
    silent: bool,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
) {
    if silent {
        while !matches!(ctl.recv().await, Some(Ctl::Handshake) | None) {}
    }
    let mut conn = h2::server::Builder::new()
        .max_concurrent_streams(max_streams)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let mut held: Vec<SendStream<Bytes>> = Vec::new();
    loop {
        tokio::select! {
            accepted = conn.accept() => {
                let Some(Ok((request, mut respond))) = accepted else { return };
                if request.uri().path() == "/refuse" {
                    respond.send_reset(Reason::REFUSED_STREAM);
                    continue;
                }
                let response = Response::builder()
                    .header("x-conn", index.to_string())
                    .body(())
                    .unwrap();
                held.push(respond.send_response(response, false).unwrap());
            }
            Some(told) = ctl.recv() => match told {
                Ctl::GoAway => {
                conn.graceful_shutdown();
                for stream in &mut held {
                    // A stream the client already dropped is reset: nothing to flush there.
                    let _ = stream.send_data(Bytes::from_static(b"after goaway"), false);
                }
                }
                Ctl::Handshake => {}
                Ctl::Finish => {
                    for mut stream in held.drain(..) {
                        let _ = stream.send_data(Bytes::new(), true);
                    }
                }
            },
        }
    }
}

/// A GET to `path` on a stream from the pool, bounded by [`WAIT`].
async fn get(pool: &H2Pool, path: &str) -> Result<Response<Body>, ProxyError> {
    let request = Request::get(format!("http://{}{path}", pool.target.authority()))
        .body(strait_core::empty())
        .unwrap();
    let sent = async { pool.send_on(pool.ready_stream().await?, request).await };
    tokio::time::timeout(WAIT, sent)
        .await
        .expect("no response within 10s")
}

/// The peer connection a response came on.
fn conn_of(response: &Response<Body>) -> usize {
    response.headers()["x-conn"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Reads the next DATA frame of `response`.
async fn next_data(response: &mut Response<Body>) -> Bytes {
    let frame = tokio::time::timeout(WAIT, response.body_mut().frame())
        .await
        .expect("no frame within 10s")
        .expect("the body ended")
        .unwrap();
    frame.into_data().unwrap()
}

#[tokio::test]
async fn streams_fill_a_connection_up_to_the_peers_limit_before_another_opens() {
    let peer = Peer::start(3).await;
    let pool = peer.pool();
    let mut open = Vec::new();
    for _ in 0..3 {
        let response = get(&pool, "/").await.unwrap();
        assert_eq!(conn_of(&response), 0);
        open.push(response);
    }
    assert_eq!(peer.accepted(), 1);
    assert_eq!(pool.open_connections(), 1);

    let fourth = get(&pool, "/").await.unwrap();
    assert_eq!(
        conn_of(&fourth),
        1,
        "the full connection took a fourth stream"
    );
    assert_eq!(peer.accepted(), 2);
    assert_eq!(pool.open_connections(), 2);
}

/// Room freed on an open connection is used before anything new opens; the first connection
/// with room gets the stream.
#[tokio::test]
async fn a_stream_goes_to_an_open_connection_with_room_not_a_new_one() {
    let peer = Peer::start(1).await;
    let pool = peer.pool();
    let first = get(&pool, "/").await.unwrap();
    let second = get(&pool, "/").await.unwrap();
    assert_eq!((conn_of(&first), conn_of(&second)), (0, 1));

    // The client gives up on the first stream: its slot on connection 0 is free again.
    drop(first);
    let third = get(&pool, "/").await.unwrap();
    assert_eq!(conn_of(&third), 0);
    assert_eq!(peer.accepted(), 2, "opened a connection while one had room");
}

/// A burst on an empty pool waits for one new connection instead of opening one each.
#[tokio::test]
async fn a_burst_on_an_empty_pool_opens_one_connection() {
    let peer = Peer::start(100).await;
    let pool = peer.pool();
    let burst = futures_util::future::join_all((0..8).map(|_| get(&pool, "/"))).await;
    for response in &burst {
        assert_eq!(conn_of(response.as_ref().unwrap()), 0);
    }
    assert_eq!(peer.accepted(), 1);
}

/// A new connection takes no more streams than the peer allowed on the last one, even
/// before its own SETTINGS arrive (until then h2 calls the limit unlimited).
#[tokio::test]
async fn a_new_connection_starts_at_the_limit_learned_from_the_last() {
    let mut peer = Peer::start_holding(2, Some(1)).await;
    let pool = peer.pool();
    let held = [
        get(&pool, "/").await.unwrap(),
        get(&pool, "/").await.unwrap(),
    ];
    assert!(held.iter().all(|r| conn_of(r) == 0));

    // Connection 1 is silent: its SETTINGS cannot have been read while these are placed.
    let ready = || async {
        tokio::time::timeout(WAIT, pool.ready_stream())
            .await
            .expect("no stream within 10s")
            .unwrap()
    };
    let third = ready().await;
    let fourth = ready().await;
    assert!(Arc::ptr_eq(&third.0.conn, &fourth.0.conn));
    assert_eq!(pool.open_connections(), 2);
    let fifth = ready().await;
    assert_eq!(
        pool.open_connections(),
        3,
        "a third stream went to a new connection whose peer allows two, like the last"
    );

    peer.tell(1, Ctl::Handshake).await;
    let mut conns = Vec::new();
    for ready in [third, fourth, fifth] {
        let request = Request::get(format!("http://{}/", pool.target.authority()))
            .body(strait_core::empty())
            .unwrap();
        let response = tokio::time::timeout(WAIT, pool.send_on(ready, request))
            .await
            .expect("no response within 10s")
            .unwrap();
        conns.push(conn_of(&response));
    }
    assert_eq!(conns, [1, 1, 2]);
}

/// GOAWAY: the stream open on that connection finishes there, the connection takes no new
/// ones, and the next request opens a fresh connection and succeeds.
#[tokio::test]
async fn a_goaway_connection_is_retired_and_the_next_request_goes_to_a_fresh_one() {
    let mut peer = Peer::start(100).await;
    let pool = peer.pool();
    let mut open = get(&pool, "/").await.unwrap();
    peer.tell(0, Ctl::GoAway).await;
    assert_eq!(next_data(&mut open).await, "after goaway");

    let next = get(&pool, "/").await.unwrap();
    assert_eq!(conn_of(&next), 1);
    assert_eq!(peer.accepted(), 2);
    assert_eq!(
        pool.open_connections(),
        1,
        "the GOAWAY connection is still in the pool"
    );

    // The stream open on the old connection ends there normally.
    peer.tell(0, Ctl::Finish).await;
    let rest = tokio::time::timeout(WAIT, open.into_body().collect())
        .await
        .expect("the old stream did not end");
    assert!(rest.is_ok(), "the old stream failed: {rest:?}");
}

/// A request given connections that turn out to be closing (GOAWAY read, nothing sent yet)
/// moves on to the next, up to READY_ATTEMPTS, and a new connection is the last.
#[tokio::test]
async fn a_request_moves_past_closing_connections_to_a_new_one() {
    let mut peer = Peer::start(2).await;
    let pool = peer.pool();
    let mut a1 = get(&pool, "/").await.unwrap();
    let a2 = get(&pool, "/").await.unwrap();
    let mut b1 = get(&pool, "/").await.unwrap();
    assert_eq!([&a1, &a2, &b1].map(conn_of), [0, 0, 1]);

    peer.tell(0, Ctl::GoAway).await;
    peer.tell(1, Ctl::GoAway).await;
    assert_eq!(next_data(&mut a1).await, "after goaway");
    assert_eq!(next_data(&mut b1).await, "after goaway");
    // Both connections have room now, and both are going away.
    drop(a2);

    let fresh = get(&pool, "/").await.unwrap();
    assert_eq!(conn_of(&fresh), 2);
    assert_eq!(peer.accepted(), 3);
    assert_eq!(pool.open_connections(), 1);
    assert_eq!(
        READY_ATTEMPTS, 3,
        "this test tries exactly READY_ATTEMPTS connections"
    );
}

/// REFUSED_STREAM: an error that says a retry is safe (the peer did not process it), and
/// the stream's slot is released: the next request fits on the same connection.
#[tokio::test]
async fn a_refused_stream_is_retry_safe_and_frees_its_slot() {
    let peer = Peer::start(1).await;
    let pool = peer.pool();
    let refused = get(&pool, "/refuse").await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Refused, "{refused}");
    assert!(refused.is_retry_safe());
    assert!(
        refused.to_string().contains("refused the stream"),
        "{refused}"
    );

    let next = get(&pool, "/").await.unwrap();
    assert_eq!(conn_of(&next), 0);
    assert_eq!(peer.accepted(), 1);
}
