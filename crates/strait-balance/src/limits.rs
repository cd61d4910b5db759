//! The request layer of the circuit breakers: requests in flight per service and per traffic
//! class, so overload in one class never rejects another's requests.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use http::HeaderMap;
use strait_config::ServiceLimits;
use strait_core::{ErrorKind, ProxyError, Side};

#[derive(Debug)]
pub(crate) struct RequestLimits {
    max_requests: Option<u32>,
    active: Arc<AtomicU32>,
    classes: Option<Classes>,
}

#[derive(Debug)]
struct Classes {
    header: http::HeaderName,
    default: usize,
    /// (name, limit, in flight), in config order.
    classes: Vec<(Arc<str>, u32, Arc<AtomicU32>)>,
}

/// Holds a request's place under its limits until dropped.
#[derive(Debug)]
pub struct Admission {
    counters: [Option<Arc<AtomicU32>>; 2],
    class: Option<Arc<str>>,
}

// === impl RequestLimits ===

impl RequestLimits {
    pub(crate) fn new(limits: &ServiceLimits) -> RequestLimits {
        let classes = limits.traffic_classes.as_ref().map(|tc| Classes {
            header: tc.header.clone(),
            default: tc.classes.get_index_of(&tc.default).unwrap_or(0),
            classes: tc
                .classes
                .iter()
                .map(|(name, &limit)| (Arc::from(name.as_str()), limit, Arc::default()))
                .collect(),
        });
        RequestLimits {
            max_requests: limits.max_requests,
            active: Arc::default(),
            classes,
        }
    }

    /// Admits a request of `class` (the router's) or the class its header names, or says
    /// which limit turned it away (and the metric's reason label).
    pub(crate) fn admit(
        &self,
        service: &str,
        router_class: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Admission, (ProxyError, &'static str)> {
        let mut admission = Admission {
            counters: [None, None],
            class: None,
        };
        if let Some(classes) = &self.classes {
            let named =
                router_class.or_else(|| headers.get(&classes.header).and_then(|v| v.to_str().ok()));
            let index = named
                .and_then(|name| classes.classes.iter().position(|(n, ..)| &**n == name))
                .unwrap_or(classes.default);
            let (name, limit, active) = &classes.classes[index];
            if !take(active, *limit) {
                return Err((
                    ProxyError::new(
                        ErrorKind::ClassLimit,
                        Side::Proxy,
                        format!(
                            "traffic class `{name}` of service `{service}` has its {limit} requests in flight; try later"
                        ),
                    ),
                    "class_limit",
                ));
            }
            admission.counters[0] = Some(active.clone());
            admission.class = Some(name.clone());
        }
        if let Some(max) = self.max_requests {
            if !take(&self.active, max) {
                return Err((
                    ProxyError::new(
                        ErrorKind::Overloaded,
                        Side::Proxy,
                        format!(
                            "service `{service}` has its max_requests ({max}) in flight; try later"
                        ),
                    ),
                    "max_requests",
                ));
            }
            admission.counters[1] = Some(self.active.clone());
        }
        Ok(admission)
    }
}

/// Takes one place under `limit`, or none.
fn take(active: &AtomicU32, limit: u32) -> bool {
    active
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

impl Admission {
    /// The traffic class the request was admitted under.
    pub fn class(&self) -> Option<&Arc<str>> {
        self.class.as_ref()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        for counter in self.counters.iter().flatten() {
            counter.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use indexmap::IndexMap;
    use strait_config::TrafficClasses;

    use super::*;

    fn limits() -> RequestLimits {
        let mut classes = IndexMap::new();
        classes.insert("premium".to_owned(), 2);
        classes.insert("best-effort".to_owned(), 1);
        RequestLimits::new(&ServiceLimits {
            max_requests: Some(10),
            traffic_classes: Some(TrafficClasses {
                header: http::HeaderName::from_static("x-traffic-class"),
                default: "best-effort".into(),
                classes,
            }),
            ..ServiceLimits::default()
        })
    }

    fn headers(class: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-traffic-class", class.parse().unwrap());
        h
    }

    #[test]
    fn a_full_class_never_rejects_another() {
        let limits = limits();
        let best = limits.admit("s", None, &HeaderMap::new()).unwrap();
        assert_eq!(best.class().map(|c| &**c), Some("best-effort"));
        let (err, reason) = limits
            .admit("s", None, &headers("best-effort"))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ClassLimit);
        assert_eq!(reason, "class_limit");
        assert!(err.to_string().contains("best-effort"), "{err}");
        let p1 = limits.admit("s", None, &headers("premium")).unwrap();
        let _p2 = limits
            .admit("s", Some("premium"), &HeaderMap::new())
            .unwrap();
        assert!(limits.admit("s", None, &headers("premium")).is_err());
        drop(p1);
        assert!(limits.admit("s", None, &headers("premium")).is_ok());
        drop(best);
        // Unknown class names fall into the default class.
        assert!(limits.admit("s", None, &headers("gold")).is_ok());
    }

    #[test]
    fn service_limit_counts_every_class() {
        let limits = RequestLimits::new(&ServiceLimits {
            max_requests: Some(2),
            ..ServiceLimits::default()
        });
        let a = limits.admit("s", None, &HeaderMap::new()).unwrap();
        let _b = limits.admit("s", None, &HeaderMap::new()).unwrap();
        let (err, reason) = limits.admit("s", None, &HeaderMap::new()).unwrap_err();
        assert_eq!(
            (err.kind(), reason),
            (ErrorKind::Overloaded, "max_requests")
        );
        drop(a);
        assert!(limits.admit("s", None, &HeaderMap::new()).is_ok());
    }
}
