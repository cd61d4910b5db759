//! Enforcing an entrypoint's `limits` (strait-config): who may connect, and what happens
//! when a client goes over a limit — a metric, and a log line that says what to change.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use strait_config::Limits;
use strait_telemetry::Metrics;
use tokio::time::Instant;
use tracing::warn;

use crate::plaintext::Refusal;

/// A limit a client went over; the name is the `limit` label of
/// `strait_limit_exceeded_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limit {
    HeaderReadTimeout,
    MaxConnections,
    MaxConnectionsPerIp,
    RequestBody,
    HeaderSize,
    HeaderListSize,
    ContinuationFrames,
    RapidReset,
    SettingsFlood,
    PingFlood,
    WindowUpdateFlood,
    PriorityFlood,
    EmptyDataFlood,
    Http1Framing,
}

/// One per listener, shared by its connections across reloads: open connection counts and
/// the log throttle.
#[derive(Debug)]
pub(crate) struct Enforcer {
    entrypoint: Arc<str>,
    metrics: Metrics,
    open: AtomicU32,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// Log lines are throttled to one per limit per second, so an attack cannot flood the
    /// log; the next line says how many were left out.
    epoch: Instant,
    next_log_ms: [AtomicU64; LIMITS],
    suppressed: [AtomicU64; LIMITS],
}

/// A connection counted against the limits until dropped.
#[derive(Debug)]
pub(crate) struct Admitted {
    enforcer: Arc<Enforcer>,
    ip: IpAddr,
}

const LIMITS: usize = 14;

// === impl Limit ===

impl Limit {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Limit::HeaderReadTimeout => "header_read_timeout",
            Limit::MaxConnections => "max_connections",
            Limit::MaxConnectionsPerIp => "max_connections_per_ip",
            Limit::RequestBody => "max_request_body",
            Limit::HeaderSize => "max_header_size",
            Limit::HeaderListSize => "max_header_list_size",
            Limit::ContinuationFrames => "max_continuation_frames",
            Limit::RapidReset => "rapid_reset",
            Limit::SettingsFlood => "settings_flood",
            Limit::PingFlood => "ping_flood",
            Limit::WindowUpdateFlood => "window_update_flood",
            Limit::PriorityFlood => "priority_flood",
            Limit::EmptyDataFlood => "empty_data_flood",
            Limit::Http1Framing => "http1_framing",
        }
    }

    /// The setting to raise if the client was legitimate.
    fn setting(self) -> &'static str {
        match self {
            Limit::HeaderReadTimeout => "limits.header_read_timeout",
            Limit::MaxConnections => "limits.max_connections",
            Limit::MaxConnectionsPerIp => "limits.max_connections_per_ip",
            Limit::RequestBody => "limits.max_request_body (gRPC: limits.max_grpc_request_body)",
            Limit::HeaderSize => "limits.max_header_size",
            Limit::HeaderListSize => "http2.max_header_list_size",
            Limit::ContinuationFrames => {
                "limits.max_continuation_frames (and http2.max_header_list_size)"
            }
            Limit::RapidReset => "limits.http2_frames_per_second.rst_stream",
            Limit::SettingsFlood => "limits.http2_frames_per_second.settings",
            Limit::PingFlood => "limits.http2_frames_per_second.ping",
            Limit::WindowUpdateFlood => "limits.http2_frames_per_second.window_update",
            Limit::PriorityFlood => "limits.http2_frames_per_second.priority",
            Limit::EmptyDataFlood => "limits.http2_frames_per_second.empty_data",
            Limit::Http1Framing => "nothing: the request was malformed or ambiguous",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

// === impl Enforcer ===

impl Enforcer {
    pub(crate) fn new(entrypoint: Arc<str>, metrics: Metrics) -> Enforcer {
        Enforcer {
            entrypoint,
            metrics,
            open: AtomicU32::new(0),
            per_ip: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            next_log_ms: Default::default(),
            suppressed: Default::default(),
        }
    }

    /// Counts a new connection from `ip`, or says which limit it would go over.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Result<Admitted, Limit> {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        // Counted first and given back on refusal, so that two racing accepts cannot both
        // take the last place.
        let admitted = Admitted {
            enforcer: self.clone(),
            ip,
        };
        {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let count = per_ip.entry(ip).or_insert(0);
            *count += 1;
            if limits
                .max_connections_per_ip
                .is_some_and(|max| *count > max)
            {
                drop(per_ip);
                return Err(Limit::MaxConnectionsPerIp);
            }
        }
        if limits.max_connections.is_some_and(|max| open > max) {
            return Err(Limit::MaxConnections);
        }
        Ok(admitted)
    }

    /// A client at `client` went over `limit`: counted, and logged (throttled).
    pub(crate) fn fired(&self, limit: Limit, client: SocketAddr) {
        self.metrics.limit_exceeded(&self.entrypoint, limit.name());
        let i = limit.index();
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_log_ms[i].load(Ordering::Relaxed);
        let claimed = now >= next
            && self.next_log_ms[i]
                .compare_exchange(next, now + 1000, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
        if !claimed {
            self.suppressed[i].fetch_add(1, Ordering::Relaxed);
            return;
        }
        let more = self.suppressed[i].swap(0, Ordering::Relaxed);
        warn!(
            entrypoint = %self.entrypoint,
            client = %client,
            limit = limit.name(),
            suppressed = more,
            "client went over a limit and was stopped; if it was legitimate, raise `{}` on this entrypoint",
            limit.setting(),
        );
    }

    /// A client spoke a protocol the entrypoint's `protocols` leave out: counted.
    pub(crate) fn protocol_refused(&self, refusal: Refusal) {
        self.metrics
            .protocol_refused(&self.entrypoint, refusal.reason());
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.enforcer.open.fetch_sub(1, Ordering::AcqRel);
        let mut per_ip = self
            .enforcer
            .per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_ip_and_given_back() {
        let enforcer = Arc::new(Enforcer::new(Arc::from("web"), Metrics::new()));
        let limits = Limits {
            max_connections: Some(3),
            max_connections_per_ip: Some(2),
            ..Limits::default()
        };
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = enforcer.admit(a, &limits).unwrap();
        let _second = enforcer.admit(a, &limits).unwrap();
        assert_eq!(
            enforcer.admit(a, &limits).unwrap_err(),
            Limit::MaxConnectionsPerIp
        );
        let _third = enforcer.admit(b, &limits).unwrap();
        assert_eq!(
            enforcer.admit(b, &limits).unwrap_err(),
            Limit::MaxConnections
        );
        drop(first);
        let _again = enforcer.admit(a, &limits).unwrap();
        assert_eq!(enforcer.open.load(Ordering::Acquire), 3);
    }

    #[test]
    fn every_limit_has_its_own_log_slot() {
        assert_eq!(Limit::Http1Framing.index(), LIMITS - 1);
    }
}
