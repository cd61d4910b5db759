use std::sync::Arc;
use std::time::Duration;

use http::Request;
use strait_config::Config;
use strait_tls::ClientIdentity;

use crate::matcher::Matcher;

/// The routers of one config snapshot, in match order, per entrypoint. Built once at load;
/// lookups take no lock and allocate nothing.
#[derive(Debug)]
pub struct RouteTable {
    by_entrypoint: Vec<Vec<Arc<Route>>>,
}

/// One router, compiled.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    /// The router's position in the config's `routers`.
    pub index: usize,
    /// Index of the router's service in the config's `services`.
    pub service: usize,
    pub timeout: Option<Duration>,
    matcher: Matcher,
}

// === impl RouteTable ===

impl RouteTable {
    /// Orders routers by explicit `priority` (higher first, 0 when absent), then by
    /// specificity, then by their order in the file.
    pub fn new(config: &Config) -> RouteTable {
        let mut ranked: Vec<(i64, _, usize, Arc<Route>, &[String])> = config
            .routers
            .iter()
            .enumerate()
            .filter_map(|(position, (name, router))| {
                let service = config.services.get_index_of(&router.service)?;
                let matcher = Matcher::new(router.matcher.clone());
                let specificity = matcher.specificity();
                let route = Arc::new(Route {
                    name: Arc::from(name.as_str()),
                    index: position,
                    service,
                    timeout: router.timeout,
                    matcher,
                });
                Some((
                    router.priority.unwrap_or(0),
                    specificity,
                    position,
                    route,
                    router.entrypoints.as_slice(),
                ))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));

        let by_entrypoint = config
            .entrypoints
            .keys()
            .map(|entrypoint| {
                ranked
                    .iter()
                    .filter(|(.., entrypoints)| entrypoints.iter().any(|e| e == entrypoint))
                    .map(|(_, _, _, route, _)| route.clone())
                    .collect()
            })
            .collect();
        RouteTable { by_entrypoint }
    }

    /// The first router on `entrypoint` (its index in the config) whose conditions all hold.
    /// `client` is the verified client certificate, on mTLS entrypoints.
    pub fn route<B>(
        &self,
        entrypoint: usize,
        request: &Request<B>,
        client: Option<&ClientIdentity>,
    ) -> Option<&Arc<Route>> {
        self.by_entrypoint
            .get(entrypoint)?
            .iter()
            .find(|route| route.matcher.matches(request, client))
    }
}
