use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use http::{Request, Response};
use strait_balance::Service;
use strait_config::{AccessLogTarget, Config};
use strait_core::Body;
use strait_http::{ConnInfo, Handler};
use strait_telemetry::{AccessLog, Metrics};

use crate::snapshot::Snapshot;

/// The request handler: each request goes through the pipeline (`pipeline.rs`) over the
/// config snapshot that was live when it arrived.
#[derive(Clone, Debug)]
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    /// The access log of the live config and where it writes, reused by a reload that keeps
    /// the same target.
    access_log: Arc<Mutex<(Option<AccessLogTarget>, AccessLog)>>,
}

// === impl Proxy ===

impl Proxy {
    /// The live services (for tests and the admin API).
    pub fn services(&self) -> Vec<Arc<Service>> {
        self.snapshot.load().services.clone()
    }

    /// A proxy with no routes; `install` gives it some.
    pub(crate) fn empty(metrics: Metrics) -> Proxy {
        Proxy {
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::empty())),
            metrics,
            access_log: Arc::new(Mutex::new((None, AccessLog::disabled()))),
        }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Builds the snapshot for `config` without installing it.
    pub(crate) fn prepare(&self, config: &Config) -> Result<Arc<Snapshot>, crate::StartError> {
        let access_log = self.access_log_for(config.access_log.as_ref())?;
        Ok(Arc::new(Snapshot::new(config, access_log, &self.metrics)?))
    }

    /// The access log writing to `target`: the current one if the target is unchanged.
    fn access_log_for(
        &self,
        target: Option<&AccessLogTarget>,
    ) -> Result<AccessLog, crate::StartError> {
        let mut current = self
            .access_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if current.0.as_ref() == target {
            return Ok(current.1.clone());
        }
        let log = match target {
            None => Ok(AccessLog::disabled()),
            Some(AccessLogTarget::Stdout) => AccessLog::stdout(&self.metrics),
            Some(AccessLogTarget::File(path)) => AccessLog::file(path, &self.metrics),
        }
        .map_err(|source| crate::StartError::AccessLog { source })?;
        *current = (target.cloned(), log.clone());
        Ok(log)
    }

    /// New requests use `snapshot` from now on; requests in flight keep theirs.
    pub(crate) fn install(&self, snapshot: Arc<Snapshot>) {
        self.snapshot.store(snapshot);
    }
}

impl Handler for Proxy {
    fn handle(
        &self,
        request: Request<Body>,
        conn: &Arc<ConnInfo>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let snapshot = self.snapshot.load_full();
        let conn = conn.clone();
        let metrics = self.metrics.clone();
        async move { crate::pipeline::serve(snapshot, request, conn, metrics).await }
    }
}
