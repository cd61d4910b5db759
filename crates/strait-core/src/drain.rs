use tokio::sync::watch;

/// Tells listeners and connections to stop: listeners stop accepting, connections finish what
/// they have in flight. Every listener and connection holds a [`DrainWatch`], so the `Drain`
/// also knows when they are all done.
#[derive(Debug)]
pub struct Drain {
    tx: watch::Sender<bool>,
}

/// The receiving side of [`Drain`]; cheap to clone, one per listener or connection.
#[derive(Clone, Debug)]
pub struct DrainWatch {
    rx: watch::Receiver<bool>,
}

// === impl Drain ===

impl Drain {
    pub fn new() -> (Drain, DrainWatch) {
        let (tx, rx) = watch::channel(false);
        (Drain { tx }, DrainWatch { rx })
    }

    pub fn watch(&self) -> DrainWatch {
        DrainWatch {
            rx: self.tx.subscribe(),
        }
    }

    pub fn start(&self) {
        self.tx.send_replace(true);
    }

    /// Resolves once every [`DrainWatch`] is gone: each listener and connection holds one
    /// until it has finished.
    pub async fn drained(&self) {
        self.tx.closed().await;
    }
}

// === impl DrainWatch ===

impl DrainWatch {
    /// Resolves once draining has started (at once if it already has). A dropped `Drain`
    /// counts as a start: nobody is left to keep the listener alive.
    pub async fn signaled(&mut self) {
        let _ = self.rx.wait_for(|draining| *draining).await;
    }

    pub fn is_draining(&self) -> bool {
        *self.rx.borrow()
    }
}
