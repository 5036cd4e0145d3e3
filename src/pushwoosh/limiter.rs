//! The client-side rate limiter, one per process and shared by every job: each Pushwoosh
//! method gets its calls per minute (a GCRA on tokio's clock, `cells`), and a call waits
//! for a slot instead of failing. Urgent calls (one-time codes) never wait behind bulk
//! ones: they are first in line for the method's next slot (`lanes`), and may be given a
//! reserve of the budget that bulk calls cannot use up (`budget`). A 429 pauses every
//! caller of that method and spaces its calls further apart; the spacing comes back step
//! by step once the 429s stop (`throttle`).

mod budget;
mod cells;
mod lanes;
mod throttle;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::time::Instant;
use tracing::{info, warn};

pub(crate) use self::budget::reserve_periods;
use self::budget::{Budget, Quota};
use self::lanes::Lanes;
use self::throttle::{Backoff, Throttle};
use crate::job::JobKind;
use crate::metrics::{MethodLabels, Metrics};
use crate::settings::RateLimitSettings;

/// Which line a call waits in for its method's slot. Urgent calls come first without
/// limit, so urgent traffic beyond a method's budget leaves bulk calls nothing: it is for
/// what must not wait (one-time codes), not for whatever is in a hurry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// First in line: takes the method's next free slot whatever bulk calls wait, and may
    /// take the reserve's last cell.
    Urgent,
    /// Takes no slot while an urgent call waits for one.
    Bulk,
}

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
    quota: Option<Quota>,
    lanes: Lanes,
    state: Mutex<State>,
    wait: Histogram,
    throttled: Counter,
    slowdown_gauge: Gauge,
}

struct State {
    throttle: Throttle,
    /// `Some` exactly when `quota` is.
    budget: Option<Budget>,
    /// Cells taken towards the call at the head of a line: after a 429 a call costs
    /// `slowdown` of them. They belong to the method, not to the caller, so that a head
    /// that gives up or yields to an urgent caller leaves them to the next one.
    banked: u32,
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
                let quota = Quota::of(settings, *kind);
                MethodLimiter {
                    kind: *kind,
                    method,
                    quota,
                    lanes: Lanes::new(),
                    state: Mutex::new(State {
                        throttle: Throttle::new(now),
                        budget: quota.map(|q| Budget::new(&q, 0.0, now)),
                        banked: 0,
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
                .map(|m| match m.quota {
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

    /// Keeps `share` (clamped to [0, 0.9]; NaN counts as 0) of each limited method's
    /// calls a minute for urgent calls, so that an urgent call usually finds a slot at
    /// once instead of within one slot interval. Bulk calls cannot use the reserve up:
    /// they take a reserve cell only when the reserve holds two. They still get whatever
    /// urgent calls leave of it, so without urgent traffic bulk calls lose less than one
    /// call a minute; both together never exceed the limit of `new`. A method whose
    /// limit cannot spare one whole call a minute (and one for bulk) gets no reserve. Meant
    /// for a limiter just built: it starts each method's budget afresh.
    pub fn with_reserve(mut self, share: f64) -> Self {
        let share = budget::clamp_share(share);
        let now = Instant::now();
        for limiter in &mut self.methods {
            let Some(quota) = limiter.quota else {
                continue;
            };
            let state = limiter
                .state
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner);
            state.budget = Some(Budget::new(&quota, share, now));
            state.banked = 0;
        }
        if self.enabled && share > 0.0 {
            let reserves: Vec<String> = self
                .methods
                .iter()
                .filter(|m| m.quota.is_some())
                .map(|m| format!("{}={}/min", m.method, self.urgent_reserve(m.method)))
                .collect();
            info!(
                share,
                reserves = reserves.join(", "),
                "urgent calls have a reserve of each method's budget"
            );
        }
        self
    }

    /// Waits for a slot for one call of `method` (e.g. "createMessage"); never fails.
    ///
    /// An urgent call never waits behind bulk calls: from the moment it is inside, the
    /// bulk head takes no cell, so the method's next free cell is the urgent call's.
    /// Without a reserve that cell is at most one slot interval away (the method's period,
    /// times the slow-down after 429s, which is how many cells a call then takes): the
    /// bulk call that took the last one cannot have taken the next as well. With a
    /// reserve (`with_reserve`) an urgent call usually does not wait at all: bulk calls
    /// never take the reserve's last cell, so one is there unless urgent calls took it in
    /// the last reserve period (a minute over the reserve's calls a minute); then the wait
    /// is at most the shorter of the main and reserve periods, times the slow-down. Add
    /// the urgent calls ahead of it in its own line, and a 429's pause, which holds both.
    ///
    /// Cancellation-safe: a caller dropped while waiting loses its place in line; cells
    /// it already took (a call takes several after a 429) go to the next head.
    pub async fn acquire(&self, method: &'static str, priority: Priority) {
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
        let _inside = limiter.lanes.enter(priority);
        let _turn = limiter.lanes.turn(priority).await;
        loop {
            if priority == Priority::Bulk
                && let Some(urgent_gone) = limiter.lanes.urgent_ahead()
            {
                urgent_gone.await;
                continue;
            }
            let now = Instant::now();
            let until = {
                let mut state = limiter.state();
                self.recover(limiter, &mut state.throttle, now);
                match state.throttle.paused(now) {
                    Some(until) => until,
                    None => match state.take(priority, now) {
                        Ok(true) => {
                            state.throttle.granted();
                            return;
                        }
                        Ok(false) => continue,
                        Err(wait) => now + wait,
                    },
                }
            };
            tokio::time::sleep_until(until).await;
        }
    }

    /// A 429 (Too Many Requests) was seen for `method`: every caller of it waits for
    /// `retry_after` (or `rate_limit.default_pause_ms`), and unless this 429 answers a
    /// call made before the last slow-down step, its calls are spaced twice as far apart.
    /// ("Made before" is judged by whether any call was let through since that step: a
    /// call slower than the pause whose 429 lands after a newer call was let through
    /// counts as one more step, which errs on the slow side.) Urgent calls wait out the
    /// pause too: the 429 is about the account, not about who calls.
    pub fn throttled(&self, method: &'static str, retry_after: Option<Duration>) {
        let Some(limiter) = self.find(method) else {
            return;
        };
        limiter.throttled.inc();
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let mut state = limiter.state();
        self.recover(limiter, &mut state.throttle, now);
        let limited = limiter.quota.is_some();
        let Some(pause) = state
            .throttle
            .throttled(&self.backoff, retry_after, limited, now)
        else {
            return;
        };
        let slowdown = state.throttle.slowdown();
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
            let mut state = limiter.state();
            self.recover(limiter, &mut state.throttle, Instant::now());
            state.throttle.slowdown()
        })
    }

    /// Calls a minute of `method` that only urgent calls can count on (0: no reserve).
    pub fn urgent_reserve(&self, method: &str) -> u32 {
        self.find(method).map_or(0, |limiter| {
            limiter.state().budget.as_ref().map_or(0, Budget::reserved)
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
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Takes a cell for the head of `priority`'s line: `Ok(true)` when that was the last
    /// cell its call needs, `Ok(false)` when it needs more, else how long until the next.
    /// A call is granted only as it takes a cell, so no span holds more calls than cells.
    fn take(&mut self, priority: Priority, now: Instant) -> Result<bool, Duration> {
        let Some(budget) = self.budget.as_mut() else {
            return Ok(true);
        };
        budget.take(priority, now)?;
        self.banked += 1;
        if self.banked < self.throttle.slowdown() {
            return Ok(false);
        }
        self.banked = 0;
        Ok(true)
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
#[cfg(test)]
mod tests_priority;
