use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::record::Protocol;

fn record(i: u32) -> RequestRecord {
    let mut record = RequestRecord::new(Arc::from("web"), Protocol::H2c);
    record.router = Some(Arc::from("orders"));
    record.http_status = Some(200);
    record.retries = i;
    record
}

fn dropped(metrics: &Metrics) -> String {
    metrics
        .encode()
        .lines()
        .find_map(|l| {
            l.strip_prefix("strait_access_log_dropped_total ")
                .map(str::to_owned)
        })
        .unwrap()
}

#[tokio::test]
async fn file_gets_one_json_object_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let metrics = Metrics::new();
    let log = AccessLog::file(&path, &metrics).unwrap();
    assert!(log.is_enabled());
    for i in 0..100 {
        log.log(&record(i));
    }
    log.flush().await;

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 100);
    for (i, line) in lines.iter().enumerate() {
        let json: Value = serde_json::from_str(line).unwrap();
        assert_eq!(json["retries"], i, "lines keep their order");
        assert_eq!(json["entrypoint"], "web");
        assert_eq!(json["router"], "orders");
        assert_eq!(json["http_status"], 200);
        assert_eq!(json["protocol"], "h2c");
        assert!(json["time"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(dropped(&metrics), "0");
}

#[tokio::test]
async fn file_is_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    std::fs::write(&path, "earlier line\n").unwrap();
    let metrics = Metrics::new();
    let log = AccessLog::file(&path, &metrics).unwrap();
    log.log(&record(0));
    log.flush().await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(text.starts_with("earlier line\n"));
}

#[test]
fn file_in_a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = AccessLog::file(dir.path().join("no/such/dir/access.log"), &Metrics::new());
    assert!(err.is_err());
}

#[tokio::test]
async fn disabled_writes_nothing_and_flushes_at_once() {
    let log = AccessLog::disabled();
    assert!(!log.is_enabled());
    log.log(&record(0));
    log.flush().await;
}

/// A writer that blocks its first write until released, so the queue behind it fills.
struct Stalled {
    entered: Option<std_mpsc::Sender<()>>,
    release: std_mpsc::Receiver<()>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl Write for Stalled {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(entered) = self.entered.take() {
            entered.send(()).unwrap();
            self.release.recv().unwrap();
        }
        self.written.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn full_queue_drops_and_counts_without_blocking() {
    let (entered_tx, entered) = std_mpsc::channel();
    let (release, release_rx) = std_mpsc::channel();
    let written = Arc::new(Mutex::new(Vec::new()));
    let writer = Stalled {
        entered: Some(entered_tx),
        release: release_rx,
        written: written.clone(),
    };
    let metrics = Metrics::new();
    let log = AccessLog::to_writer(writer, 4, &metrics).unwrap();

    // The first line is taken off the queue; the writer then stalls flushing it.
    log.log(&record(0));
    entered.recv_timeout(Duration::from_secs(10)).unwrap();

    // Four fit in the queue; the next three are dropped, and none of this waits.
    for i in 1..=7 {
        log.log(&record(i));
    }
    assert_eq!(dropped(&metrics), "3");

    release.send(()).unwrap();
    log.flush().await;
    let written = written.lock().unwrap();
    let retries: Vec<u64> = std::str::from_utf8(&written)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["retries"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(retries, [0, 1, 2, 3, 4]);
}

/// A writer that always fails.
struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("disk full"))
    }

    fn flush(&mut self) -> io::Result<()> {
        Err(io::Error::other("disk full"))
    }
}

#[tokio::test]
async fn lines_that_cannot_be_written_count_as_dropped() {
    let metrics = Metrics::new();
    let log = AccessLog::to_writer(Broken, 16, &metrics).unwrap();
    log.log(&record(0));
    log.flush().await;
    // BufWriter takes the line into its 64 KiB buffer; only the flush reaches the writer,
    // and a failed flush keeps the bytes, so nothing is counted lost yet.
    assert_eq!(dropped(&metrics), "0");
    // Lines that do not fit in the buffer go to the writer and are lost.
    let mut big = record(1);
    big.error = Some("x".repeat(70 * 1024));
    log.log(&big);
    log.flush().await;
    assert_eq!(dropped(&metrics), "1");
}
