//! A config snapshot at run time: the route table with each router's runtime, the services
//! with their endpoints, and the entrypoints' settings. Built once per config; a request
//! keeps the snapshot it started with until it ends.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::HeaderName;
use strait_balance::Service;
use strait_config::{Config, UpstreamScheme};
use strait_route::{Route, RouteTable};
use strait_telemetry::{AccessLog, EntrypointStreams, Metrics};
use strait_tls::UpstreamConnector;
use strait_upstream::Endpoint;

/// Everything a request needs from one config.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) routes: RouteTable<Route>,
    pub(crate) services: Vec<Arc<Service>>,
    /// FNV: looked up on every request, and the names come from the config.
    pub(crate) entrypoints: HashMap<Arc<str>, EntrypointRuntime, fnv::FnvBuildHasher>,
    pub(crate) access_log: AccessLog,
}

/// An entrypoint at run time.
#[derive(Debug)]
pub(crate) struct EntrypointRuntime {
    /// Its index in the route table.
    pub(crate) index: usize,
    /// The header that carries the client certificate's identity upstream, on mTLS.
    pub(crate) forward_client_cert: Option<HeaderName>,
    pub(crate) streams: EntrypointStreams,
}

impl Snapshot {
    /// A snapshot with no routes.
    pub(crate) fn empty() -> Snapshot {
        Snapshot {
            routes: RouteTable::empty(),
            services: Vec::new(),
            entrypoints: HashMap::default(),
            access_log: AccessLog::disabled(),
        }
    }

    pub(crate) fn new(
        config: &Config,
        access_log: AccessLog,
        metrics: &Metrics,
    ) -> Result<Snapshot, crate::StartError> {
        let mut services = Vec::with_capacity(config.services.len());
        for (name, service) in &config.services {
            let endpoints = endpoints(name, service, metrics)?;
            services.push(Arc::new(Service::new(name, service, endpoints, metrics)));
        }
        let by_name = |name: &str| {
            let index = config.services.get_index_of(name)?;
            services.get(index).cloned()
        };
        let routes = RouteTable::new(config, |name, router| {
            Route::new(name, router, by_name, metrics)
        });
        let entrypoints = config
            .entrypoints
            .iter()
            .enumerate()
            .map(|(index, (name, e))| {
                let forward_client_cert = e
                    .tls
                    .as_ref()
                    .and_then(|tls| tls.client_auth.as_ref())
                    .and_then(|auth| auth.forward_header.clone());
                let name = Arc::from(name.as_str());
                let streams = metrics.entrypoint_streams(&name);
                (
                    name,
                    EntrypointRuntime {
                        index,
                        forward_client_cert,
                        streams,
                    },
                )
            })
            .collect();
        Ok(Snapshot {
            routes,
            services,
            entrypoints,
            access_log,
        })
    }
}

/// A service's endpoints, in `servers` order, with the service's TLS connector for its
/// `https://` servers.
fn endpoints(
    name: &str,
    service: &strait_config::Service,
    metrics: &Metrics,
) -> Result<Vec<Arc<Endpoint>>, crate::StartError> {
    let https = service
        .servers
        .iter()
        .any(|s| s.url.scheme == UpstreamScheme::Https);
    let tls = if https {
        let connector = UpstreamConnector::new(name, service.tls.as_ref()).map_err(|source| {
            crate::StartError::Tls {
                what: format!("service `{name}`"),
                source,
            }
        })?;
        Some(connector)
    } else {
        None
    };
    Ok(service
        .servers
        .iter()
        .map(|server| {
            Arc::new(Endpoint::new(
                &server.url,
                tls.as_ref(),
                &service.http2,
                &service.lifecycle,
                &service.limits,
                service.connect_timeout,
                metrics,
            ))
        })
        .collect())
}
