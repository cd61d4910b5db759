//! Requests and failures over a sliding window, in ten buckets.

use std::time::Duration;

use tokio::time::Instant;

const BUCKETS: usize = 10;

#[derive(Debug)]
pub(crate) struct Window {
    width: Duration,
    /// (start of the bucket, requests, failures)
    buckets: [(Option<Instant>, u32, u32); BUCKETS],
    start: Instant,
}

impl Window {
    pub(crate) fn new(length: Duration, now: Instant) -> Window {
        Window {
            width: (length / BUCKETS as u32).max(Duration::from_millis(1)),
            buckets: [(None, 0, 0); BUCKETS],
            start: now,
        }
    }

    pub(crate) fn record(&mut self, failed: bool, now: Instant) {
        let slot = self.slot(now);
        let bucket = &mut self.buckets[slot.0];
        if bucket.0 != Some(slot.1) {
            *bucket = (Some(slot.1), 0, 0);
        }
        bucket.1 = bucket.1.saturating_add(1);
        bucket.2 = bucket.2.saturating_add(u32::from(failed));
    }

    /// (requests, failures) within the window ending at `now`.
    pub(crate) fn totals(&self, now: Instant) -> (u32, u32) {
        let oldest = now.checked_sub(self.width * BUCKETS as u32);
        self.buckets
            .iter()
            .filter(|(at, ..)| at.is_some_and(|at| oldest.is_none_or(|oldest| at > oldest)))
            .fold((0, 0), |(r, f), (_, requests, failures)| {
                (r + requests, f + failures)
            })
    }

    pub(crate) fn clear(&mut self) {
        self.buckets = [(None, 0, 0); BUCKETS];
    }

    /// The bucket index for `now` and the instant its bucket began.
    fn slot(&self, now: Instant) -> (usize, Instant) {
        let since = now.saturating_duration_since(self.start);
        let n = since.as_nanos() / self.width.as_nanos().max(1);
        let began = self.start + self.width * u32::try_from(n).unwrap_or(u32::MAX);
        (usize::try_from(n % BUCKETS as u128).unwrap_or(0), began)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_fall_out_of_the_window() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(10), t0);
        for i in 0..10 {
            w.record(i % 2 == 0, t0 + Duration::from_secs(i));
        }
        assert_eq!(w.totals(t0 + Duration::from_secs(9)), (10, 5));
        // 5 seconds later the first five seconds are gone.
        assert_eq!(w.totals(t0 + Duration::from_millis(14_500)), (5, 2));
        assert_eq!(w.totals(t0 + Duration::from_secs(30)), (0, 0));
        w.record(true, t0 + Duration::from_secs(30));
        assert_eq!(w.totals(t0 + Duration::from_secs(30)), (1, 1));
        w.clear();
        assert_eq!(w.totals(t0 + Duration::from_secs(30)), (0, 0));
    }
}
