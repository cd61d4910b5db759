use std::fmt;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::metrics::Metrics;
use crate::record::RequestRecord;

/// Lines that may wait for the writer before new ones are dropped.
pub const DEFAULT_CAPACITY: usize = 8192;

/// The access log: one JSON object a line for each finished request or stream.
///
/// [`AccessLog::log`] never blocks the request path. Lines go through a bounded queue to a
/// dedicated writer thread, which writes them through a buffer and flushes whenever the
/// queue is momentarily empty; when the queue is full the line is dropped and counted in
/// `strait_access_log_dropped_total`. Cheap to clone; the writer thread ends, after writing
/// everything queued, when the last clone is dropped.
#[derive(Clone)]
pub struct AccessLog {
    /// `None` when disabled.
    queue: Option<mpsc::Sender<Message>>,
    dropped: Option<Counter>,
}

enum Message {
    Line(Vec<u8>),
    /// Answered once everything queued before it is written and flushed.
    Flush(oneshot::Sender<()>),
}

// === impl AccessLog ===

impl AccessLog {
    /// An access log that writes nothing.
    pub fn disabled() -> AccessLog {
        AccessLog {
            queue: None,
            dropped: None,
        }
    }

    /// Writes to standard output. Fails only if the writer thread cannot be started.
    pub fn stdout(metrics: &Metrics) -> io::Result<AccessLog> {
        AccessLog::to_writer(io::stdout(), DEFAULT_CAPACITY, metrics)
    }

    /// Appends to the file at `path`, creating it if needed.
    pub fn file(path: impl AsRef<Path>, metrics: &Metrics) -> io::Result<AccessLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        AccessLog::to_writer(file, DEFAULT_CAPACITY, metrics)
    }

    /// Writes to `writer` from a new thread, with room for `capacity` waiting lines (at
    /// least one).
    pub fn to_writer<W>(writer: W, capacity: usize, metrics: &Metrics) -> io::Result<AccessLog>
    where
        W: Write + Send + 'static,
    {
        let (queue, lines) = mpsc::channel(capacity.max(1));
        let dropped = metrics.access_log_dropped();
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("strait-access-log".into())
            .spawn(move || write_lines(lines, writer, &counter))?;
        Ok(AccessLog {
            queue: Some(queue),
            dropped: Some(dropped),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues `record`'s line without waiting; drops and counts it when the queue is full.
    pub fn log(&self, record: &RequestRecord) {
        let Some(queue) = &self.queue else {
            return;
        };
        let line = record.to_json_line();
        if line.is_empty() {
            return;
        }
        if queue.try_send(Message::Line(line)).is_err() {
            if let Some(dropped) = &self.dropped {
                dropped.inc();
            }
        }
    }

    /// Resolves once every line queued before the call is written and flushed (at once
    /// when disabled). For shutdown: it waits for room in the queue rather than dropping.
    pub fn flush(&self) -> impl Future<Output = ()> + Send + 'static {
        let queue = self.queue.clone();
        async move {
            let Some(queue) = queue else {
                return;
            };
            let (done, flushed) = oneshot::channel();
            if queue.send(Message::Flush(done)).await.is_ok() {
                // An error means the writer thread is gone; nothing is left to wait for.
                let _ = flushed.await;
            }
        }
    }
}

impl fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLog")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

/// The writer thread: takes lines as they come, and flushes whenever the queue runs dry so a
/// quiet proxy's lines are not left sitting in the buffer.
fn write_lines<W: Write>(mut lines: mpsc::Receiver<Message>, writer: W, dropped: &Counter) {
    let mut out = BufWriter::with_capacity(64 * 1024, writer);
    let mut failing = false;
    let mut waiting = Vec::new();
    while let Some(first) = lines.blocking_recv() {
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Line(line) => {
                    let written = out.write_all(&line);
                    report(written, &mut failing, Some(dropped));
                }
                Message::Flush(done) => waiting.push(done),
            }
            next = lines.try_recv().ok();
        }
        let flushed = out.flush();
        // A failed flush keeps the unwritten bytes in the buffer for the next try.
        report(flushed, &mut failing, None);
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    let _ = out.flush();
}

/// Warns once when writing starts failing (a full disk, a closed pipe) and once when it
/// recovers, rather than a warning per line. A line that could not be written counts as
/// dropped.
fn report(result: io::Result<()>, failing: &mut bool, dropped: Option<&Counter>) {
    match result {
        Ok(()) => {
            if *failing {
                warn!("access log writable again");
                *failing = false;
            }
        }
        Err(err) => {
            if let Some(dropped) = dropped {
                dropped.inc();
            }
            if !*failing {
                warn!(error = %err, "cannot write the access log; dropping lines until it recovers");
                *failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests;
