//! The client-side rate limiter, one per process and shared by every job: each Pushwoosh
//! method gets its calls per minute (a GCRA from `governor`, on tokio's clock: `clock`),
//! and a call waits for a slot instead of failing. A 429 pauses every caller of that
//! method and spaces its calls further apart; the spacing comes back step by step once
//! the 429s stop (`throttle`).

mod clock;
mod throttle;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::time::Instant;
use tracing::{info, warn};

use self::clock::Gcra;
use self::throttle::{Backoff, Throttle};
use crate::job::JobKind;
use crate::metrics::{MethodLabels, Metrics};
use crate::settings::RateLimitSettings;

/// Every call of the process waits here for its method's slot.
pub struct RateLimiter {
    enabled: bool,
    methods: Vec<MethodLimiter>,
    backoff: Backoff,
}

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

impl RateLimiter {
    pub fn new(settings: &RateLimitSettings, metrics: Arc<Metrics>) -> Self {
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
                    gcra: clock::gcra(settings, *kind),
                    line: tokio::sync::Semaphore::new(1),
                    throttle: Mutex::new(Throttle::new(now)),
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
            backoff: Backoff::new(settings),
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
                (throttle.paused(now), throttle.slowdown())
            };
            if let Some(until) = paused_until {
                tokio::time::sleep_until(until).await;
                continue;
            }
            let Some(gcra) = limiter.gcra.as_ref().filter(|_| taken < slowdown) else {
                limiter.throttle().granted();
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
        let mut throttle = limiter.throttle();
        self.recover(limiter, &mut throttle, now);
        let limited = limiter.gcra.is_some();
        let Some(pause) = throttle.throttled(&self.backoff, retry_after, limited, now) else {
            return;
        };
        let slowdown = throttle.slowdown();
        if limited {
            limiter.slowdown_gauge.set(i64::from(slowdown));
        }
        warn!(
            method,
            pause_ms = pause.as_millis() as u64,
            slowdown,
            "Pushwoosh answered 429: every {method} call of this process waits, then goes slower"
        );
    }

    /// How many times slower than configured `method` runs now (1 = the configured rate).
    pub fn slowdown(&self, method: &str) -> u32 {
        self.find(method).map_or(1, |limiter| {
            let mut throttle = limiter.throttle();
            self.recover(limiter, &mut throttle, Instant::now());
            throttle.slowdown()
        })
    }

    fn find(&self, method: &str) -> Option<&MethodLimiter> {
        self.methods.iter().find(|m| m.method == method)
    }

    /// Lets the slow-down recover, and shows it.
    fn recover(&self, limiter: &MethodLimiter, throttle: &mut Throttle, now: Instant) {
        if !throttle.recover(&self.backoff, now) {
            return;
        }
        limiter.slowdown_gauge.set(i64::from(throttle.slowdown()));
        if throttle.slowdown() == 1 {
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

#[cfg(test)]
mod tests;
