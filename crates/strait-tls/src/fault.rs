//! TLS fault injection for rehearsals (`tls.fault`): a share of handshakes waits first, and
//! on upstreams a share fails, so a team can see what chaos tools that break TLS would do.

use std::fmt::Write;
use std::time::Duration;

use strait_config::{format_duration, FaultDelay, TlsFault};

/// A `tls.fault`, ready to roll the dice per handshake.
#[derive(Clone, Debug)]
pub(crate) struct HandshakeFault {
    /// Percent of handshakes that fail.
    abort: Option<f64>,
    delay: Option<FaultDelay>,
}

/// What to do to one handshake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    /// Wait this long before the handshake starts.
    pub delay: Option<Duration>,
    /// Fail the handshake (after any delay) as a real failure would.
    pub abort: bool,
}

// === impl HandshakeFault ===

impl HandshakeFault {
    pub(crate) fn upstream(fault: &TlsFault) -> HandshakeFault {
        HandshakeFault {
            abort: fault.abort.as_ref().map(|abort| abort.percent),
            delay: fault.delay.clone(),
        }
    }

    pub(crate) fn downstream(delay: &FaultDelay) -> HandshakeFault {
        HandshakeFault {
            abort: None,
            delay: Some(delay.clone()),
        }
    }

    /// The faults for one handshake, each by its own percentage.
    pub(crate) fn decide(&self) -> Injected {
        self.decide_with(fastrand::f64)
    }

    /// `roll` gives numbers in [0, 1): a fault at `p` percent hits when `roll() * 100 < p`,
    /// so 0 never hits and 100 always does.
    fn decide_with(&self, mut roll: impl FnMut() -> f64) -> Injected {
        let mut hit = |percent: f64| roll() * 100.0 < percent;
        Injected {
            delay: self
                .delay
                .as_ref()
                .filter(|delay| hit(delay.percent))
                .map(|delay| delay.duration),
            abort: self.abort.is_some_and(&mut hit),
        }
    }

    /// For the start-up warning: `abort 10% of handshakes, delay 20% by 2s`.
    pub(crate) fn describe(&self) -> String {
        let mut text = String::new();
        if let Some(percent) = self.abort {
            let _ = write!(text, "abort {percent}% of handshakes");
        }
        if let Some(delay) = &self.delay {
            if !text.is_empty() {
                text.push_str(", ");
            }
            let _ = write!(
                text,
                "delay {}% of handshakes by {}",
                delay.percent,
                format_duration(delay.duration)
            );
        }
        text
    }
}

#[cfg(test)]
mod tests;
