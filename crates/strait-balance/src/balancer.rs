//! Picking one endpoint among the eligible ones, by the service's policy.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::state::EndpointState;
use strait_config::LoadBalancer;

/// Two latency estimates within this factor of each other are the same to P2C: at low load
/// the differences between comparable backends are noise, and taking them as decisive sends
/// every call to whichever answered a little faster last.
const COMPARABLE: f64 = 1.5;

/// Longest weighted schedule kept; larger weight sums are scaled down to fit.
const MAX_SCHEDULE: u64 = 4096;
/// Points on the hash ring per unit of weight.
const RING_POINTS: u32 = 100;

#[derive(Debug)]
pub(crate) enum Balancer {
    P2c,
    RoundRobin(AtomicUsize),
    Weighted {
        /// Endpoint indexes in smooth weighted round-robin order, computed at load time so a
        /// pick is one atomic increment.
        schedule: Box<[u32]>,
        next: AtomicUsize,
    },
    LeastRequest,
    Hash {
        /// (point, endpoint index), sorted by point.
        ring: Box<[(u64, u32)]>,
    },
}

// === impl Balancer ===

impl Balancer {
    pub(crate) fn new(policy: &LoadBalancer, weights: &[u32]) -> Balancer {
        match policy {
            LoadBalancer::P2c => Balancer::P2c,
            LoadBalancer::RoundRobin => Balancer::RoundRobin(AtomicUsize::new(0)),
            LoadBalancer::Weighted => Balancer::Weighted {
                schedule: smooth_schedule(weights),
                next: AtomicUsize::new(0),
            },
            LoadBalancer::LeastRequest => Balancer::LeastRequest,
            LoadBalancer::Hash(_) => Balancer::Hash {
                ring: ring(weights),
            },
        }
    }

    /// One of `eligible` (indexes into `candidates`, never empty). `key` is the request's
    /// hash key for `Hash`; without one, a hash balancer picks at random. `now` is in
    /// nanoseconds since the service's epoch.
    pub(crate) fn pick(
        &self,
        states: &[Arc<EndpointState>],
        weights: &[u32],
        eligible: &[u32],
        key: Option<u64>,
        now: u64,
    ) -> u32 {
        debug_assert!(!eligible.is_empty());
        let is_eligible = |i: u32| eligible.contains(&i);
        match self {
            Balancer::P2c => {
                if eligible.len() == 1 {
                    return eligible[0];
                }
                let a = eligible[fastrand::usize(..eligible.len())];
                let mut b = eligible[fastrand::usize(..eligible.len() - 1)];
                if b == a {
                    b = eligible[eligible.len() - 1];
                }
                p2c(states, weights, [a, b], now)
            }
            Balancer::RoundRobin(next) => {
                eligible[next.fetch_add(1, Ordering::Relaxed) % eligible.len()]
            }
            Balancer::Weighted { schedule, next } => {
                // Skip over ineligible endpoints' turns; bounded by one cycle.
                for _ in 0..schedule.len() {
                    let turn = next.fetch_add(1, Ordering::Relaxed) % schedule.len();
                    if is_eligible(schedule[turn]) {
                        return schedule[turn];
                    }
                }
                eligible[0]
            }
            Balancer::LeastRequest => {
                // Fewest in flight per unit of weight; ties broken at random so equal
                // endpoints share the load.
                let start = fastrand::usize(..eligible.len());
                let mut best = eligible[start];
                let score = |i: u32| {
                    let i = i as usize;
                    f64::from(states[i].active()) / f64::from(weights[i].max(1))
                };
                for offset in 1..eligible.len() {
                    let i = eligible[(start + offset) % eligible.len()];
                    if score(i) < score(best) {
                        best = i;
                    }
                }
                best
            }
            Balancer::Hash { ring } => {
                let Some(key) = key else {
                    return eligible[fastrand::usize(..eligible.len())];
                };
                let start = ring.partition_point(|(point, _)| *point < key);
                // Walk clockwise to the first eligible endpoint.
                for offset in 0..ring.len() {
                    let (_, i) = ring[(start + offset) % ring.len()];
                    if is_eligible(i) {
                        return i;
                    }
                }
                eligible[0]
            }
        }
    }
}

/// Power of two choices between `pair`, two distinct endpoints drawn at random:
/// 1. one with stale knowledge (nothing sent or in flight for `PROBE_AFTER`) is probed;
/// 2. with latencies that differ by more than [`COMPARABLE`], the lower cost wins: latency ×
///    (requests in flight + 1) ÷ weight;
/// 3. with comparable latencies, the one with less in flight per unit of weight wins;
/// 4. a tie (both idle, as when calls come one at a time) goes to either, in proportion to
///    their weights, so sequential calls spread like weighted round robin.
fn p2c(states: &[Arc<EndpointState>], weights: &[u32], pair: [u32; 2], now: u64) -> u32 {
    let [a, b] = pair;
    let (sa, sb) = (&states[a as usize], &states[b as usize]);
    let (wa, wb) = (weights[a as usize].max(1), weights[b as usize].max(1));
    let coin = || {
        if fastrand::u64(..u64::from(wa) + u64::from(wb)) < u64::from(wa) {
            a
        } else {
            b
        }
    };
    match (sa.needs_probe(now), sb.needs_probe(now)) {
        (true, false) => return a,
        (false, true) => return b,
        (true, true) => return coin(),
        (false, false) => {}
    }
    // An endpoint not measured yet is taken to be like the other one.
    let (la, lb) = match (sa.latency(), sb.latency()) {
        (Some(la), Some(lb)) => (la, lb),
        (Some(l), None) | (None, Some(l)) => (l, l),
        (None, None) => (1.0, 1.0),
    };
    let (na, nb) = (sa.active(), sb.active());
    let comparable = la.max(lb) <= la.min(lb) * COMPARABLE;
    if comparable && na == nb {
        return coin();
    }
    let (la, lb) = if comparable { (1.0, 1.0) } else { (la, lb) };
    let cost_a = la * f64::from(na + 1) / f64::from(wa);
    let cost_b = lb * f64::from(nb + 1) / f64::from(wb);
    if cost_a < cost_b {
        a
    } else if cost_b < cost_a {
        b
    } else {
        coin()
    }
}

/// Hashes a request key (a header value or a client address) onto the ring. The same key
/// lands at the same point in every strait process.
pub(crate) fn hash_key(bytes: &[u8]) -> u64 {
    let mut hasher = FixedState.build_hasher();
    hasher.write(bytes);
    hasher.finish()
}

/// A hasher with fixed keys, so ring positions are stable across processes and reloads.
struct FixedState;

impl BuildHasher for FixedState {
    type Hasher = std::collections::hash_map::DefaultHasher;

    fn build_hasher(&self) -> Self::Hasher {
        std::collections::hash_map::DefaultHasher::new()
    }
}

/// A consistent-hash ring: `RING_POINTS` points per unit of weight for each endpoint, placed
/// by hashing the endpoint's index and point number.
fn ring(weights: &[u32]) -> Box<[(u64, u32)]> {
    let weights = scaled(weights);
    let mut ring = Vec::new();
    for (i, &weight) in weights.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        for point in 0..weight.saturating_mul(RING_POINTS).min(100_000) {
            let mut key = [0u8; 8];
            key[..4].copy_from_slice(&index.to_le_bytes());
            key[4..].copy_from_slice(&point.to_le_bytes());
            ring.push((hash_key(&key), index));
        }
    }
    ring.sort_unstable();
    ring.into_boxed_slice()
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
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::state::PROBE_AFTER;

    /// `PROBE_AFTER` in the nanoseconds `pick` takes.
    const PROBE_AFTER_NANOS: u64 = PROBE_AFTER.as_nanos() as u64;

    fn counts(schedule: &[u32], n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &i in schedule {
            counts[i as usize] += 1;
        }
        counts
    }

    fn states(n: usize) -> Vec<Arc<EndpointState>> {
        (0..n)
            .map(|_| Arc::new(EndpointState::new(Instant::now())))
            .collect()
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
    fn weighted_skips_ineligible_turns() {
        let s = states(3);
        let w: &[u32] = &[2, 1, 1];
        let balancer = Balancer::new(&LoadBalancer::Weighted, &[2, 1, 1]);
        let picks: Vec<u32> = (0..8)
            .map(|_| balancer.pick(&s, w, &[1, 2], None, 0))
            .collect();
        assert!(picks.iter().all(|&i| i != 0), "{picks:?}");
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 4);
    }

    /// Endpoints that were each sent a request at the epoch and answered in `rtts`.
    fn measured(rtts: &[Duration]) -> Vec<Arc<EndpointState>> {
        let epoch = Instant::now();
        rtts.iter()
            .map(|rtt| {
                let state = Arc::new(EndpointState::new(epoch));
                drop(state.started(0));
                state.observe(*rtt, epoch);
                state
            })
            .collect()
    }

    fn p2c_counts(s: &[Arc<EndpointState>], w: &[u32], picks: usize, now: u64) -> Vec<usize> {
        let balancer = Balancer::new(&LoadBalancer::P2c, w);
        let eligible: Vec<u32> = (0..s.len() as u32).collect();
        let picked: Vec<u32> = (0..picks)
            .map(|_| balancer.pick(s, w, &eligible, None, now))
            .collect();
        counts(&picked, s.len())
    }

    #[test]
    fn p2c_prefers_the_faster_endpoint() {
        let now = 0;
        let s = measured(&[Duration::from_millis(1), Duration::from_millis(50)]);
        let w: &[u32] = &[1, 1];
        let balancer = Balancer::new(&LoadBalancer::P2c, &[1, 1]);
        let fast = (0..100)
            .filter(|_| balancer.pick(&s, w, &[0, 1], None, now) == 0)
            .count();
        assert_eq!(fast, 100);
        // Load counts too: 60 requests in flight on the fast one make it the costlier.
        let _busy: Vec<_> = (0..60).map(|_| s[0].started(now)).collect();
        assert_eq!(balancer.pick(&s, w, &[0, 1], None, now), 1);
    }

    /// Calls one at a time to comparable endpoints: nothing is in flight, and latencies that
    /// differ by noise are not taken as decisive, so the calls spread over all of them.
    #[test]
    fn p2c_spreads_sequential_calls_over_comparable_endpoints() {
        fastrand::seed(7);
        let rtts = [300, 330, 390].map(Duration::from_micros);
        let spread = p2c_counts(&measured(&rtts[..2]), &[1, 1], 1000, 0);
        assert!(spread.iter().all(|&n| n > 400), "{spread:?}");
        let spread = p2c_counts(&measured(&rtts), &[1, 1, 1], 900, 0);
        assert!(spread.iter().all(|&n| n > 240), "{spread:?}");
        // Weights still count when calls come one at a time: 2:1 gets about 2/3.
        let spread = p2c_counts(&measured(&rtts[..2]), &[2, 1], 900, 0);
        assert!((540..660).contains(&spread[0]), "{spread:?}");
    }

    /// Among comparable endpoints, the one with less in flight wins.
    #[test]
    fn p2c_prefers_the_less_loaded_of_comparable_endpoints() {
        let s = measured(&[Duration::from_micros(300), Duration::from_micros(320)]);
        let _busy = [s[1].started(0), s[1].started(0)];
        let _one = s[0].started(0);
        assert_eq!(p2c_counts(&s, &[1, 1], 50, 0), [50, 0]);
    }

    /// An endpoint that lost every comparison gets the next call once its knowledge is
    /// stale, and what that call measures replaces its old, slow figure.
    #[test]
    fn p2c_probes_an_endpoint_it_has_not_used_lately() {
        let s = measured(&[Duration::from_micros(300), Duration::from_millis(40)]);
        assert_eq!(p2c_counts(&s, &[1, 1], 20, 0), [20, 0]);
        // The fast one keeps being used; the slow one has had nothing for PROBE_AFTER.
        let later = PROBE_AFTER_NANOS;
        drop(s[0].started(later));
        assert_eq!(p2c_counts(&s, &[1, 1], 1, later), [0, 1]);
        drop(s[1].started(later));
        s[1].observe(Duration::from_micros(310), Instant::now() + PROBE_AFTER);
        let spread = p2c_counts(&s, &[1, 1], 200, later);
        assert!(spread.iter().all(|&n| n > 60), "{spread:?}");
    }

    /// Never-used endpoints (a fresh proxy, or one back from an ejection) are tried first:
    /// with three endpoints every pair holds one of the two never sent to.
    #[test]
    fn p2c_tries_an_endpoint_never_sent_to() {
        let s = states(3);
        drop(s[0].started(0));
        s[0].observe(Duration::from_micros(200), Instant::now());
        let spread = p2c_counts(&s, &[1, 1, 1], 60, 0);
        assert_eq!(spread[0], 0, "{spread:?}");
        assert!(spread[1] > 0 && spread[2] > 0, "{spread:?}");
    }

    #[test]
    fn least_request_picks_the_idlest() {
        let s = states(3);
        let _busy = [s[0].started(0), s[0].started(0), s[2].started(0)];
        let w: &[u32] = &[1, 1, 1];
        let balancer = Balancer::new(&LoadBalancer::LeastRequest, &[1, 1, 1]);
        for _ in 0..20 {
            assert_eq!(balancer.pick(&s, w, &[0, 1, 2], None, 0), 1);
        }
    }

    #[test]
    fn hash_is_sticky_and_moves_only_the_lost_keys() {
        let s = states(3);
        let w: &[u32] = &[1, 1, 1];
        let on = strait_config::HashOn::ClientIp;
        let balancer = Balancer::new(&LoadBalancer::Hash(on), &[1, 1, 1]);
        let now = 0;
        let keys: Vec<u64> = (0..300u32).map(|k| hash_key(&k.to_le_bytes())).collect();
        let before: Vec<u32> = keys
            .iter()
            .map(|&k| balancer.pick(&s, w, &[0, 1, 2], Some(k), now))
            .collect();
        let again: Vec<u32> = keys
            .iter()
            .map(|&k| balancer.pick(&s, w, &[0, 1, 2], Some(k), now))
            .collect();
        assert_eq!(before, again);
        let spread = counts(&before, 3);
        assert!(spread.iter().all(|&n| n > 50), "{spread:?}");
        // Endpoint 2 leaves: only its keys move.
        let after: Vec<u32> = keys
            .iter()
            .map(|&k| balancer.pick(&s, w, &[0, 1], Some(k), now))
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != 2 {
                assert_eq!(b, a);
            } else {
                assert_ne!(*a, 2);
            }
        }
    }

    #[test]
    fn round_robin_cycles_the_eligible() {
        let s = states(3);
        let w: &[u32] = &[1, 1, 1];
        let balancer = Balancer::new(&LoadBalancer::RoundRobin, &[1, 1, 1]);
        let picks: Vec<u32> = (0..4)
            .map(|_| balancer.pick(&s, w, &[0, 2], None, 0))
            .collect();
        assert_eq!(picks, [0, 2, 0, 2]);
    }

    /// Property: whatever the weights and eligible set, every policy picks an eligible
    /// endpoint (a deterministic sweep instead of a proptest dependency).
    #[test]
    fn every_policy_picks_only_eligible_endpoints() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..300 {
            let n = rng.usize(1..8);
            let weights: Vec<u32> = (0..n).map(|_| rng.u32(1..20)).collect();
            let s = states(n);
            for st in &s {
                st.observe(Duration::from_micros(rng.u64(1..10_000)), Instant::now());
            }
            let w: &[u32] = &weights;
            let mut eligible: Vec<u32> = (0..n as u32).filter(|_| rng.bool()).collect();
            if eligible.is_empty() {
                eligible.push(rng.u32(0..n as u32));
            }
            let policies = [
                LoadBalancer::P2c,
                LoadBalancer::RoundRobin,
                LoadBalancer::Weighted,
                LoadBalancer::LeastRequest,
                LoadBalancer::Hash(strait_config::HashOn::ClientIp),
            ];
            for policy in &policies {
                let balancer = Balancer::new(policy, &weights);
                for _ in 0..10 {
                    let picked = balancer.pick(&s, w, &eligible, Some(rng.u64(..)), 0);
                    assert!(
                        eligible.contains(&picked),
                        "{policy:?} {eligible:?} {picked}"
                    );
                }
            }
        }
    }
}
