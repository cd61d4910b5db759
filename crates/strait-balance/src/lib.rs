//! Endpoint sets and load balancing. Every request (HTTP/2 stream) is balanced on its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use strait_telemetry::Metrics;
use strait_tls::UpstreamConnector;
use strait_upstream::Endpoint;

/// Longest weighted schedule kept; larger weight sums are scaled down to fit.
const MAX_SCHEDULE: u64 = 4096;

/// A service's endpoints and the weighted round robin across them.
#[derive(Debug)]
pub struct Service {
    name: Arc<str>,
    endpoints: Vec<Arc<Endpoint>>,
    /// Endpoint indexes in smooth weighted round-robin order, computed at load time so a pick
    /// is one atomic increment.
    schedule: Box<[u32]>,
    next: AtomicUsize,
}

// === impl Service ===

impl Service {
    /// `tls` is the service's connector for its `https://` servers.
    pub fn new(
        name: &str,
        config: &strait_config::Service,
        tls: Option<&UpstreamConnector>,
        metrics: &Metrics,
    ) -> Service {
        let endpoints: Vec<_> = config
            .servers
            .iter()
            .map(|server| {
                Arc::new(Endpoint::new(
                    &server.url,
                    tls,
                    &config.http2,
                    &config.lifecycle,
                    metrics,
                ))
            })
            .collect();
        let weights: Vec<u32> = config.servers.iter().map(|s| s.weight).collect();
        Service {
            name: Arc::from(name),
            endpoints,
            schedule: smooth_schedule(&weights),
            next: AtomicUsize::new(0),
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// The next endpoint in weighted round-robin order; `None` when there are none.
    pub fn pick(&self) -> Option<&Arc<Endpoint>> {
        if self.schedule.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
        self.endpoints.get(self.schedule[turn] as usize)
    }
}

/// nginx's smooth weighted round robin, unrolled into one cycle: weights 5,1,1 give
/// a a b a c a a rather than a a a a a b c.
fn smooth_schedule(weights: &[u32]) -> Box<[u32]> {
    let weights = scaled(weights);
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            current[i] += i64::from(w);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        schedule.push(u32::try_from(best).unwrap_or(0));
    }
    schedule.into_boxed_slice()
}

/// Divides weights by their common divisor, then scales them down (never below 1) until the
/// cycle fits in MAX_SCHEDULE.
fn scaled(weights: &[u32]) -> Vec<u32> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let reduced: Vec<u64> = weights.iter().map(|&w| u64::from(w / divisor)).collect();
    let total: u64 = reduced.iter().sum();
    if total <= MAX_SCHEDULE {
        return reduced.iter().map(|&w| w as u32).collect();
    }
    reduced
        .iter()
        .map(|&w| ((w * MAX_SCHEDULE / total).max(1)) as u32)
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(schedule: &[u32], n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &i in schedule {
            counts[i as usize] += 1;
        }
        counts
    }

    #[test]
    fn equal_weights_alternate() {
        assert_eq!(&*smooth_schedule(&[1, 1, 1]), &[0, 1, 2]);
    }

    #[test]
    fn weights_are_honoured_and_spread() {
        let schedule = smooth_schedule(&[5, 1, 1]);
        assert_eq!(&*schedule, &[0, 0, 1, 0, 2, 0, 0]);
        let schedule = smooth_schedule(&[2, 4]);
        assert_eq!(&*schedule, &[1, 0, 1]);
    }

    #[test]
    fn huge_weights_fit_and_keep_every_endpoint() {
        let schedule = smooth_schedule(&[u32::MAX, 1, 7]);
        assert!(schedule.len() as u64 <= MAX_SCHEDULE + 2);
        let c = counts(&schedule, 3);
        assert!(c.iter().all(|&n| n >= 1), "{c:?}");
        assert!(c[0] > 100 * c[1]);
    }

    #[test]
    fn service_picks_in_schedule_order() {
        let config = strait_config::Service {
            servers: vec![
                strait_config::Server {
                    url: strait_config::UpstreamUrl {
                        scheme: strait_config::UpstreamScheme::H2c,
                        host: "127.0.0.1".into(),
                        port: 1,
                    },
                    weight: 1,
                },
                strait_config::Server {
                    url: strait_config::UpstreamUrl {
                        scheme: strait_config::UpstreamScheme::Http,
                        host: "127.0.0.1".into(),
                        port: 2,
                    },
                    weight: 2,
                },
            ],
            tls: None,
            http2: Default::default(),
            lifecycle: Default::default(),
        };
        let service = Service::new("orders", &config, None, &strait_telemetry::Metrics::new());
        let picked: Vec<_> = (0..6)
            .map(|_| service.pick().unwrap().label().to_string())
            .collect();
        assert_eq!(
            picked,
            [
                "http://127.0.0.1:2",
                "h2c://127.0.0.1:1",
                "http://127.0.0.1:2",
                "http://127.0.0.1:2",
                "h2c://127.0.0.1:1",
                "http://127.0.0.1:2"
            ]
        );
    }
}
