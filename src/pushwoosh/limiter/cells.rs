//! A GCRA (the generic cell rate algorithm) on tokio's clock, so that paused test time
//! drives the limiter too. Written out rather than taken from `governor` because the
//! reserve needs to ask how many cells are free without taking one.

use std::time::Duration;

use tokio::time::Instant;

/// One cell every `period`; a caller allowed `burst` cells at once may take up to that
/// many after a quiet spell. With `burst` b, no span of length `w` holds more than
/// `ceil(w / period) + b - 1` cells taken: each cell moves `tat` on by one period, and a
/// cell is only taken while `tat` is at most `(b - 1) * period` ahead of the clock.
#[derive(Debug)]
pub(super) struct Cells {
    period: Duration,
    /// The theoretical arrival time: when the next cell would be due at the steady rate.
    tat: Instant,
}

impl Cells {
    /// Full: a quiet spell lies behind it.
    pub(super) fn new(period: Duration, now: Instant) -> Self {
        Self { period, tat: now }
    }

    /// How long until a caller allowed `burst` cells at once may take one (zero: now).
    pub(super) fn wait(&self, burst: u32, now: Instant) -> Duration {
        let tolerance = self.period.saturating_mul(burst.saturating_sub(1));
        now.checked_add(tolerance)
            .map_or(Duration::ZERO, |t| self.tat.saturating_duration_since(t))
    }

    /// Takes a cell; the caller has checked that `wait` is zero for its burst.
    pub(super) fn take(&mut self, now: Instant) {
        self.tat = self.tat.max(now) + self.period;
    }
}
