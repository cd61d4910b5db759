//! Active health checks: a task per endpoint probes it (gRPC health, HTTP, or TCP) and moves
//! it out of and back into the rotation after enough failures or passes in a row.

use std::sync::Arc;

use strait_config::HealthCheck;
use strait_telemetry::Metrics;
use strait_upstream::Endpoint;

use crate::state::EndpointState;

/// The running checks of one service; dropping it stops them.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Checks {
    pub(crate) fn start(
        _service: &Arc<str>,
        _config: Option<&HealthCheck>,
        _endpoints: &[Arc<Endpoint>],
        _states: &[Arc<EndpointState>],
        _metrics: &Metrics,
    ) -> Checks {
        Checks { tasks: Vec::new() }
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
