use std::path::Path;
use std::sync::{Arc, Mutex};

use strait_config::{CertificateFiles, ServerTls, TlsFaultAbort, TlsVersion, UpstreamTls};

use super::*;
use crate::{HandshakeError, TlsListener, UpstreamConnector};

fn fault(abort: Option<f64>, delay: Option<f64>) -> HandshakeFault {
    HandshakeFault::upstream(&TlsFault {
        abort: abort.map(|percent| TlsFaultAbort { percent }),
        delay: delay.map(|percent| FaultDelay {
            duration: Duration::from_millis(150),
            percent,
        }),
    })
}

#[test]
fn each_fault_rolls_for_its_own_percentage() {
    let f = fault(Some(25.0), Some(50.0));
    let low = f.decide_with(|| 0.1);
    assert_eq!(low.delay, Some(Duration::from_millis(150)));
    assert!(low.abort);
    // 0.3: under the delay's 50%, over the abort's 25%.
    let mid = f.decide_with(|| 0.3);
    assert_eq!(mid.delay, Some(Duration::from_millis(150)));
    assert!(!mid.abort);
    let mut rolls = [0.9, 0.1].into_iter();
    let abort_only = f.decide_with(|| rolls.next().unwrap());
    assert_eq!(
        abort_only,
        Injected {
            delay: None,
            abort: true
        }
    );
    assert_eq!(f.decide_with(|| 0.99), Injected::default());
}

#[test]
fn zero_never_hits_and_a_hundred_always_does() {
    let never = fault(Some(0.0), Some(0.0));
    let always = fault(Some(100.0), Some(100.0));
    for roll in [0.0, 0.5, 0.999_999] {
        assert_eq!(never.decide_with(|| roll), Injected::default());
        let hit = always.decide_with(|| roll);
        assert!(hit.abort && hit.delay.is_some(), "{roll}");
    }
    assert_eq!(fault(None, None).decide(), Injected::default());
}

/// Over many handshakes the share hit is the percentage: a seeded generator makes the count
/// the same on every run, and the bound is wide enough for any fair one.
#[test]
fn a_share_of_handshakes_is_faulted() {
    let f = fault(Some(10.0), Some(2.5));
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let (mut aborted, mut delayed) = (0, 0);
    for _ in 0..20_000 {
        let injected = f.decide_with(|| rng.f64());
        aborted += usize::from(injected.abort);
        delayed += usize::from(injected.delay.is_some());
    }
    assert!(
        (1_800..2_200).contains(&aborted),
        "{aborted} of 20000 at 10%"
    );
    assert!((400..600).contains(&delayed), "{delayed} of 20000 at 2.5%");
}

#[test]
fn entrypoint_faults_only_delay() {
    let f = HandshakeFault::downstream(&FaultDelay {
        duration: Duration::from_secs(2),
        percent: 100.0,
    });
    assert_eq!(
        f.decide(),
        Injected {
            delay: Some(Duration::from_secs(2)),
            abort: false
        }
    );
    assert_eq!(f.describe(), "delay 100% of handshakes by 2s");
    assert_eq!(
        fault(Some(10.0), Some(20.5)).describe(),
        "abort 10% of handshakes, delay 20.5% of handshakes by 150ms"
    );
}

// === loading: the warning, and the runtime types ===

/// Log lines written while `f` runs, at WARN and above.
fn warnings<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let value = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    (value, text)
}

fn upstream_tls(fault: Option<TlsFault>) -> UpstreamTls {
    UpstreamTls {
        alpn: vec![strait_config::AlpnProtocol::H2],
        ca_file: None,
        server_name: None,
        client_cert: None,
        insecure_skip_verify: false,
        fault,
    }
}

#[test]
fn an_upstream_fault_is_logged_as_active_at_load() {
    let tls = upstream_tls(Some(TlsFault {
        abort: Some(TlsFaultAbort { percent: 10.0 }),
        delay: Some(FaultDelay {
            duration: Duration::from_secs(2),
            percent: 20.0,
        }),
    }));
    let (connector, logged) = warnings(|| UpstreamConnector::new("orders", Some(&tls)));
    let connector = connector.unwrap();
    assert_eq!(logged.lines().count(), 1, "{logged}");
    assert!(logged.contains("WARN"), "{logged}");
    assert!(
        logged.contains(
            "TLS fault injection is active for service `orders`: abort 10% of handshakes, \
             delay 20% of handshakes by 2s to its https:// servers"
        ),
        "{logged}"
    );
    assert_eq!(&**connector.service(), "orders");

    let (quiet, logged) = warnings(|| UpstreamConnector::new("orders", Some(&upstream_tls(None))));
    assert!(logged.is_empty(), "{logged}");
    assert_eq!(quiet.unwrap().injected_fault(), Injected::default());
}

#[test]
fn an_upstream_abort_at_100_percent_aborts_every_handshake() {
    let tls = upstream_tls(Some(TlsFault {
        abort: Some(TlsFaultAbort { percent: 100.0 }),
        delay: None,
    }));
    let connector = UpstreamConnector::new("orders", Some(&tls)).unwrap();
    for _ in 0..100 {
        assert_eq!(
            connector.injected_fault(),
            Injected {
                delay: None,
                abort: true
            }
        );
    }
}

fn write_cert(dir: &Path) -> CertificateFiles {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let files = CertificateFiles {
        cert_file: dir.join("cert.pem"),
        key_file: dir.join("key.pem"),
        default: false,
    };
    std::fs::write(&files.cert_file, cert.pem()).unwrap();
    std::fs::write(&files.key_file, key.serialize_pem()).unwrap();
    files
}

fn server_tls(dir: &Path, fault: Option<FaultDelay>, handshake_timeout: Duration) -> ServerTls {
    ServerTls {
        certificates: vec![write_cert(dir)],
        alpn: vec![strait_config::AlpnProtocol::H2],
        sni_strict: false,
        min_version: TlsVersion::Tls12,
        cipher_suites: Vec::new(),
        handshake_timeout,
        client_auth: None,
        fault,
    }
}

#[test]
fn an_entrypoint_fault_is_logged_as_active_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let delay = FaultDelay {
        duration: Duration::from_millis(1500),
        percent: 0.5,
    };
    let tls = server_tls(dir.path(), Some(delay), Duration::from_secs(10));
    let (listener, logged) = warnings(|| TlsListener::new("websecure", &tls));
    listener.unwrap();
    assert_eq!(logged.lines().count(), 1, "{logged}");
    assert!(
        logged.contains(
            "TLS fault injection is active for entrypoint `websecure`: delay 0.5% of \
             handshakes by 1s500ms from clients"
        ),
        "{logged}"
    );
    let tls = server_tls(dir.path(), None, Duration::from_secs(10));
    let (listener, logged) = warnings(|| TlsListener::new("websecure", &tls));
    assert!(logged.is_empty(), "{logged}");
    assert_eq!(listener.unwrap().injected_delay(), None);
}

/// The injected wait counts against `handshake_timeout`: a delay longer than it ends the
/// handshake as a timeout. The clock is paused, so this takes no real time.
#[tokio::test(start_paused = true)]
async fn an_injected_delay_is_bounded_by_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let delay = FaultDelay {
        duration: Duration::from_secs(30),
        percent: 100.0,
    };
    let listener = TlsListener::new(
        "websecure",
        &server_tls(dir.path(), Some(delay), Duration::from_secs(10)),
    )
    .unwrap();
    let injected = listener.injected_delay();
    assert_eq!(injected, Some(Duration::from_secs(30)));

    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(socket.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = socket.accept().await.unwrap();
    let started = tokio::time::Instant::now();
    let result = listener.accept(server, injected).await;
    assert!(
        matches!(result, Err(HandshakeError::Timeout(t)) if t == Duration::from_secs(10)),
        "{result:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    drop(client);
}
