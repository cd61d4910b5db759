use strait_config::Config;
use strait_core::RequestHead;
use strait_tls::ClientIdentity;

use crate::matcher::Matcher;

/// The routers of one config snapshot, in match order, per entrypoint, each with its
/// runtime `R` (a [`crate::Route`] in the proxy). Built once at load; lookups take no lock
/// and allocate nothing, and hand back the runtime itself.
#[derive(Debug)]
pub struct RouteTable<R> {
    /// Per entrypoint (in config order), indexes into `routes` in match order.
    by_entrypoint: Vec<Vec<usize>>,
    routes: Vec<(Matcher, R)>,
}

// === impl RouteTable ===

impl<R> RouteTable<R> {
    /// Orders routers by explicit `priority` (higher first, 0 when absent), then by
    /// specificity, then by their order in the file. `build` makes each router's runtime
    /// from its name and config; a router it returns `None` for is left out.
    pub fn new(
        config: &Config,
        mut build: impl FnMut(&str, &strait_config::Router) -> Option<R>,
    ) -> RouteTable<R> {
        let mut routes = Vec::with_capacity(config.routers.len());
        let mut ranked = Vec::with_capacity(config.routers.len());
        for (position, (name, router)) in config.routers.iter().enumerate() {
            let Some(runtime) = build(name, router) else {
                continue;
            };
            let matcher = Matcher::new(router.matcher.clone());
            let specificity = matcher.specificity();
            ranked.push((
                router.priority.unwrap_or(0),
                specificity,
                position,
                routes.len(),
                router.entrypoints.as_slice(),
            ));
            routes.push((matcher, runtime));
        }
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));

        let by_entrypoint = config
            .entrypoints
            .keys()
            .map(|entrypoint| {
                ranked
                    .iter()
                    .filter(|(.., entrypoints)| entrypoints.iter().any(|e| e == entrypoint))
                    .map(|&(_, _, _, index, _)| index)
                    .collect()
            })
            .collect();
        RouteTable {
            by_entrypoint,
            routes,
        }
    }

    /// A table with no routers.
    pub fn empty() -> RouteTable<R> {
        RouteTable {
            by_entrypoint: Vec::new(),
            routes: Vec::new(),
        }
    }

    /// The runtime of the first router on `entrypoint` (its index in the config) whose
    /// conditions all hold. `client` is the verified client certificate, on mTLS entrypoints.
    pub fn route(
        &self,
        entrypoint: usize,
        head: &RequestHead,
        client: Option<&ClientIdentity>,
    ) -> Option<&R> {
        self.by_entrypoint
            .get(entrypoint)?
            .iter()
            .filter_map(|&index| self.routes.get(index))
            .find(|(matcher, _)| matcher.matches(head, client))
            .map(|(_, runtime)| runtime)
    }

    /// Every router's runtime, in config order.
    pub fn routes(&self) -> impl Iterator<Item = &R> {
        self.routes.iter().map(|(_, runtime)| runtime)
    }
}
