//! The client-side rate limiter, one per process and shared by every job: each Pushwoosh
//! method gets its calls per minute (a GCRA from `governor`, on tokio's clock), and a
//! call waits for a slot instead of failing. A 429 pauses every caller of that method
//! and spaces its calls further apart; the spacing comes back step by step once the 429s
//! stop.

use std::num::NonZeroU32;
use std::ops::Add;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::Quota;
use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::job::JobKind;
use crate::metrics::{MethodLabels, Metrics};
use crate::settings::RateLimitSettings;

/// Pushwoosh's limits count calls per minute.
const MINUTE: Duration = Duration::from_secs(60);

/// Every call of the process waits here for its method's slot.
pub struct RateLimiter {
    enabled: bool,
    methods: Vec<MethodLimiter>,
    backoff: Backoff,
}

/// What a 429 does, from `[rate_limit]`.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    default_pause: Duration,
    max_pause: Duration,
    max_slowdown: u32,
    recovery_interval: Duration,
}

type Gcra = governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Moment>>;

struct MethodLimiter {
    kind: JobKind,
    method: &'static str,
    /// `None`: no client-side limit for this method, only the pause after a 429.
    gcra: Option<Gcra>,
    /// The waiters of this method, first come first served (tokio's semaphore is fair):
    /// only the one at the head takes cells, so a job cannot be overtaken for ever by
    /// luckier ones. Its one permit is the turn at the head of the line, held while that
    /// caller waits for its slot and released when the slot is granted, before the call.
    /// It guards no data: waiting in this line is the rate-limit wait itself.
    line: tokio::sync::Semaphore,
    throttle: Mutex<Throttle>,
    wait: Histogram,
    throttled: Counter,
    slowdown_gauge: Gauge,
}

/// The state a 429 changes.
#[derive(Debug)]
struct Throttle {
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

impl RateLimiter {
    pub fn new(settings: &RateLimitSettings, metrics: Arc<Metrics>) -> Self {
        let backoff = Backoff {
            default_pause: Duration::from_millis(settings.default_pause_ms),
            max_pause: Duration::from_millis(settings.max_pause_ms),
            max_slowdown: settings.max_slowdown.max(1),
            recovery_interval: Duration::from_millis(settings.recovery_interval_ms.max(1)),
        };
        let now = Instant::now();
        let methods: Vec<MethodLimiter> = JobKind::ALL
            .iter()
            .map(|kind| {
                let method = kind.method();
                let labels = MethodLabels { method };
                let slowdown_gauge = metrics.rate_limit_slowdown.get_or_create(&labels).clone();
                slowdown_gauge.set(1);
                MethodLimiter {
                    kind: *kind,
                    method,
                    gcra: quota(settings, *kind)
                        .map(|q| governor::RateLimiter::direct_with_clock(q, TokioClock)),
                    line: tokio::sync::Semaphore::new(1),
                    throttle: Mutex::new(Throttle {
                        slowdown: 1,
                        paused_until: None,
                        calm_since: now,
                        granted_since_step: true,
                    }),
                    wait: metrics.rate_limit_wait.get_or_create(&labels).clone(),
                    throttled: metrics.rate_limit_throttled.get_or_create(&labels).clone(),
                    slowdown_gauge,
                }
            })
            .collect();
        if settings.enabled {
            let limits: Vec<String> = methods
                .iter()
                .map(|m| match m.gcra {
                    Some(_) => format!(
                        "{}={:.1}/min",
                        m.method,
                        f64::from(settings.per_minute(m.kind)) / f64::from(settings.replicas)
                    ),
                    None => format!("{}=unlimited", m.method),
                })
                .collect();
            info!(
                replicas = settings.replicas,
                burst = settings.burst,
                limits = limits.join(", "),
                "client-side rate limiter on (this process's share)"
            );
        } else {
            warn!("client-side rate limiter off: only Pushwoosh's 429s will slow the worker down");
        }
        Self {
            enabled: settings.enabled,
            methods,
            backoff,
        }
    }

    /// Waits for a slot for one call of `method` (e.g. "createMessage"); never fails.
    /// Cancellation-safe: a caller dropped while waiting loses nothing but its place in
    /// line (and the cells it already took, which only makes the limiter stricter).
    pub async fn acquire(&self, method: &'static str) {
        if !self.enabled {
            return;
        }
        let Some(limiter) = self.find(method) else {
            return;
        };
        let _timer = WaitTimer {
            histogram: &limiter.wait,
            started: Instant::now(),
        };
        // Never closed, so never an error.
        let _turn = limiter.line.acquire().await;
        let mut taken = 0u32;
        loop {
            let now = Instant::now();
            let (paused_until, slowdown) = {
                let mut throttle = limiter.throttle();
                self.recover(limiter, &mut throttle, now);
                (
                    throttle.paused_until.filter(|until| *until > now),
                    throttle.slowdown,
                )
            };
            if let Some(until) = paused_until {
                tokio::time::sleep_until(until).await;
                continue;
            }
            let Some(gcra) = limiter.gcra.as_ref().filter(|_| taken < slowdown) else {
                limiter.throttle().granted_since_step = true;
                return;
            };
            match gcra.check() {
                Ok(()) => taken += 1,
                Err(not_until) => tokio::time::sleep_until(not_until.earliest_possible().0).await,
            }
        }
    }

    /// A 429 (Too Many Requests) was seen for `method`: every caller of it waits for
    /// `retry_after` (or `rate_limit.default_pause_ms`), and unless this 429 answers a
    /// call made before the last slow-down step, its calls are spaced twice as far apart.
    /// ("Made before" is judged by whether any call was let through since that step: a
    /// call slower than the pause whose 429 lands after a newer call was let through
    /// counts as one more step, which errs on the slow side.)
    pub fn throttled(&self, method: &'static str, retry_after: Option<Duration>) {
        let Some(limiter) = self.find(method) else {
            return;
        };
        limiter.throttled.inc();
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let pause = retry_after
            .unwrap_or(self.backoff.default_pause)
            .min(self.backoff.max_pause);
        let until = now + pause;
        let mut throttle = limiter.throttle();
        self.recover(limiter, &mut throttle, now);
        throttle.paused_until = Some(throttle.paused_until.map_or(until, |p| p.max(until)));
        throttle.calm_since = throttle.calm_since.max(until);
        if !throttle.granted_since_step {
            return;
        }
        throttle.granted_since_step = false;
        if limiter.gcra.is_some() {
            throttle.slowdown = throttle
                .slowdown
                .saturating_mul(2)
                .min(self.backoff.max_slowdown);
            limiter.slowdown_gauge.set(i64::from(throttle.slowdown));
        }
        warn!(
            method,
            pause_ms = pause.as_millis() as u64,
            slowdown = throttle.slowdown,
            "Pushwoosh answered 429: every {method} call of this process waits, then goes slower"
        );
    }

    /// How many times slower than configured `method` runs now (1 = the configured rate).
    pub fn slowdown(&self, method: &str) -> u32 {
        self.find(method).map_or(1, |limiter| {
            let mut throttle = limiter.throttle();
            self.recover(limiter, &mut throttle, Instant::now());
            throttle.slowdown
        })
    }

    fn find(&self, method: &str) -> Option<&MethodLimiter> {
        self.methods.iter().find(|m| m.method == method)
    }

    /// Halves the slow-down for each full `recovery_interval` without a 429.
    fn recover(&self, limiter: &MethodLimiter, throttle: &mut Throttle, now: Instant) {
        if throttle.slowdown <= 1 || now < throttle.calm_since {
            return;
        }
        let interval = self.backoff.recovery_interval;
        let periods = now.duration_since(throttle.calm_since).as_nanos() / interval.as_nanos();
        if periods == 0 {
            return;
        }
        let halvings = u32::try_from(periods).unwrap_or(u32::MAX).min(31);
        throttle.slowdown = (throttle.slowdown >> halvings).max(1);
        throttle.calm_since = if throttle.slowdown == 1 {
            now
        } else {
            throttle.calm_since + interval * halvings
        };
        limiter.slowdown_gauge.set(i64::from(throttle.slowdown));
        if throttle.slowdown == 1 {
            info!(
                method = limiter.method,
                "no 429 for a while: back to the configured rate"
            );
        }
    }
}

impl MethodLimiter {
    fn throttle(&self) -> MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }
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

/// Records how long a caller waited, also when it was cancelled while waiting.
pub(crate) struct WaitTimer<'a> {
    pub(crate) histogram: &'a Histogram,
    pub(crate) started: Instant,
}

impl Drop for WaitTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

/// governor on tokio's clock, so that paused test time drives the limiter too.
#[derive(Debug, Clone, Copy)]
struct TokioClock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Moment(Instant);

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

#[cfg(test)]
mod tests;
