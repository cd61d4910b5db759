//! The admin API's view of a running strait.

use std::future::Future;
use std::pin::Pin;

use serde_json::{json, Value};
use strait_admin::AdminApi;
use strait_config::{HostMatch, Match, ValueMatch};

use crate::Running;

/// Answers the admin endpoints from the live config and services.
#[derive(Debug)]
pub(crate) struct AdminHandle {
    pub(crate) running: Running,
}

impl AdminApi for AdminHandle {
    fn config(&self) -> Value {
        let live = self.running.live();
        json!({
            "generation": live.generation,
            "source": live.source.as_ref().map(|p| p.display().to_string()),
            // The effective config holds no secrets: the admin token lives in its own file.
            "config": live.config.to_yaml(),
        })
    }

    fn routers(&self) -> Value {
        let live = self.running.live();
        let routers: Vec<Value> = live
            .config
            .routers
            .iter()
            .map(|(name, router)| {
                json!({
                    "name": name,
                    "entrypoints": router.entrypoints,
                    "match": describe(&router.matcher),
                    "service": router.service,
                    "priority": router.priority,
                    "timeout": router.timeout.map(|t| format!("{}ms", t.as_millis())),
                })
            })
            .collect();
        json!({ "generation": live.generation, "routers": routers })
    }

    fn services(&self) -> Value {
        let live = self.running.live();
        let services: Vec<Value> = self
            .running
            .proxy()
            .services()
            .iter()
            .map(|service| {
                let weights = live
                    .config
                    .services
                    .get(service.name().as_ref())
                    .map(|s| {
                        s.servers
                            .iter()
                            .map(|server| server.weight)
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                let endpoints: Vec<Value> = service
                    .endpoints()
                    .iter()
                    .zip(service.endpoint_states())
                    .zip(weights.iter().copied().chain(std::iter::repeat(1)))
                    .enumerate()
                    .map(|(i, ((endpoint, state), weight))| {
                        json!({
                            "endpoint": endpoint.label().as_ref(),
                            "weight": weight,
                            "open_connections": endpoint.open_connections(),
                            "active_requests": state.active(),
                            "pending_requests": endpoint.pending_requests(),
                            "healthy": state.is_healthy(),
                            "ejected": service.is_ejected(i),
                        })
                    })
                    .collect();
                json!({ "name": service.name().as_ref(), "endpoints": endpoints })
            })
            .collect();
        json!({ "generation": live.generation, "services": services })
    }

    fn metrics(&self) -> String {
        self.running.metrics().encode()
    }

    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send>> {
        let running = self.running.clone();
        Box::pin(async move {
            running.reload_from_source().await.map_err(|e| {
                crate::log_reload_error(&e);
                e.to_string()
            })
        })
    }
}

fn describe(m: &Match) -> Value {
    let values = |pairs: Vec<(String, &ValueMatch)>| -> Value {
        pairs
            .into_iter()
            .map(|(name, value)| {
                let value = match value {
                    ValueMatch::Exact(v) => json!({ "exact": v }),
                    ValueMatch::Regex(re) => json!({ "regex": re.as_str() }),
                    ValueMatch::Present => json!({ "present": true }),
                };
                (name, value)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let mut out = serde_json::Map::new();
    if let Some(host) = &m.host {
        let host = match host {
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Wildcard(suffix) => format!("*{suffix}"),
        };
        out.insert("host".into(), host.into());
    }
    for (key, value) in [
        ("path", &m.path),
        ("path_prefix", &m.path_prefix),
        ("grpc_service", &m.grpc_service),
        ("grpc_method", &m.grpc_method),
        ("client_cert_san", &m.client_cert_san),
    ] {
        if let Some(value) = value {
            out.insert(key.into(), value.clone().into());
        }
    }
    if !m.methods.is_empty() {
        out.insert(
            "method".into(),
            m.methods
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .into(),
        );
    }
    if !m.headers.is_empty() {
        let headers = m
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v))
            .collect();
        out.insert("headers".into(), values(headers));
    }
    if !m.query.is_empty() {
        out.insert(
            "query".into(),
            values(m.query.iter().map(|(n, v)| (n.clone(), v)).collect()),
        );
    }
    out.into()
}
