//! `governor`'s GCRA on tokio's clock, so that paused test time drives the limiter too.

use std::num::NonZeroU32;
use std::ops::Add;
use std::time::Duration;

use governor::Quota;
use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use tokio::time::Instant;

use crate::job::JobKind;
use crate::settings::RateLimitSettings;

/// Pushwoosh's limits count calls per minute.
const MINUTE: Duration = Duration::from_secs(60);

pub(super) type Gcra =
    governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Moment>>;

/// The cells of `kind`'s method, or `None` for no client-side limit.
pub(super) fn gcra(settings: &RateLimitSettings, kind: JobKind) -> Option<Gcra> {
    quota(settings, kind).map(|q| governor::RateLimiter::direct_with_clock(q, TokioClock))
}

/// The method's share of the account's limit in this process, or `None` for no limit.
/// Calls are spaced `(60 s + window_slack) * replicas / per_minute` apart.
fn quota(settings: &RateLimitSettings, kind: JobKind) -> Option<Quota> {
    let per_minute = settings.per_minute(kind);
    if per_minute == 0 {
        return None;
    }
    let minute = MINUTE + Duration::from_millis(settings.window_slack_ms);
    let period = minute.checked_mul(settings.replicas.max(1))? / per_minute;
    let burst = NonZeroU32::new(settings.burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).map(|q| q.allow_burst(burst))
}

#[derive(Debug, Clone, Copy)]
pub(super) struct TokioClock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Moment(pub(super) Instant);

impl Add<Nanos> for Moment {
    type Output = Self;

    fn add(self, other: Nanos) -> Self {
        Self(self.0 + Duration::from(other))
    }
}

impl Reference for Moment {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

impl Clock for TokioClock {
    type Instant = Moment;

    fn now(&self) -> Moment {
        Moment(Instant::now())
    }
}
