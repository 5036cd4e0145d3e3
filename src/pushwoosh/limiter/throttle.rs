//! What a 429 does to a method: every caller waits out a pause, then each call costs more
//! cells, and the cost comes back step by step once the 429s stop.

use std::time::Duration;

use tokio::time::Instant;

use crate::settings::RateLimitSettings;

/// What a 429 does, from `[rate_limit]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    default_pause: Duration,
    max_pause: Duration,
    max_slowdown: u32,
    recovery_interval: Duration,
}

impl Backoff {
    pub(super) fn new(settings: &RateLimitSettings) -> Self {
        Self {
            default_pause: Duration::from_millis(settings.default_pause_ms),
            max_pause: Duration::from_millis(settings.max_pause_ms),
            max_slowdown: settings.max_slowdown.max(1),
            recovery_interval: Duration::from_millis(settings.recovery_interval_ms.max(1)),
        }
    }
}

/// The state a 429 changes.
#[derive(Debug)]
pub(super) struct Throttle {
    /// Cells one call costs: 1 at the configured rate, doubled by each slow-down step.
    slowdown: u32,
    /// No call of this method is let through before then.
    paused_until: Option<Instant>,
    /// Recovery counts from here: the end of the last pause, or the last halving.
    calm_since: Instant,
    /// A call was let through since the last slow-down step. Without one, a 429 can only
    /// answer a call made before that step: it is the same congestion, not a new one.
    granted_since_step: bool,
}

impl Throttle {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            slowdown: 1,
            paused_until: None,
            calm_since: now,
            granted_since_step: true,
        }
    }

    pub(super) fn slowdown(&self) -> u32 {
        self.slowdown
    }

    /// The end of the pause, while one holds.
    pub(super) fn paused(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|until| *until > now)
    }

    /// A call was let through.
    pub(super) fn granted(&mut self) {
        self.granted_since_step = true;
    }

    /// A 429 at `now` (after `recover`): pauses every caller, and unless it answers a call
    /// made before the last step, doubles the cost of a call (when `limited`: an unlimited
    /// method has no cells to count). The pause when this is a new step, else `None`.
    pub(super) fn throttled(
        &mut self,
        backoff: &Backoff,
        retry_after: Option<Duration>,
        limited: bool,
        now: Instant,
    ) -> Option<Duration> {
        let pause = retry_after
            .unwrap_or(backoff.default_pause)
            .min(backoff.max_pause);
        let until = now + pause;
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
        self.calm_since = self.calm_since.max(until);
        if !self.granted_since_step {
            return None;
        }
        self.granted_since_step = false;
        if limited {
            self.slowdown = self.slowdown.saturating_mul(2).min(backoff.max_slowdown);
        }
        Some(pause)
    }

    /// Halves the slow-down for each full `recovery_interval` without a 429. True when
    /// that changed it.
    pub(super) fn recover(&mut self, backoff: &Backoff, now: Instant) -> bool {
        if self.slowdown <= 1 || now < self.calm_since {
            return false;
        }
        let interval = backoff.recovery_interval;
        let periods = now.duration_since(self.calm_since).as_nanos() / interval.as_nanos();
        if periods == 0 {
            return false;
        }
        let halvings = u32::try_from(periods).unwrap_or(u32::MAX).min(31);
        self.slowdown = (self.slowdown >> halvings).max(1);
        self.calm_since = if self.slowdown == 1 {
            now
        } else {
            self.calm_since + interval * halvings
        };
        true
    }
}
