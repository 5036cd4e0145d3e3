//! The account-wide rate limiter: one GCRA per account and method in Redis, on Redis's
//! clock, so that any number of processes together use an account's budget and never
//! more. The 429 slow-down is shared the same way: a 429 seen by one process pauses the
//! method for all of them and spaces everyone's calls further apart, recovering step by
//! step (the rules of `[rate_limit]`, as in the per-process limiter).
//!
//! In each process the callers of one account and method wait in one line per priority;
//! only the heads ask Redis, so a slot costs each process at most one round trip a line.
//! Urgent calls have a reserve of each method's budget that bulk calls cannot use up, as
//! in the per-process limiter (`with_reserve`), kept in Redis for every replica at once.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use redis::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::round_trip::{Invocation, LuaScript};
use super::{Account, Ledger, LedgerError};
use crate::job::JobKind;
use crate::metrics::{MethodLabels, Metrics};
use crate::pushwoosh::limiter::{WaitTimer, reserve_periods};
use crate::pushwoosh::{Priority, RateLimiter};
use crate::settings::{OnUnavailable, RateLimitSettings};

const ACQUIRE: &str = concat!(
    include_str!("lua/limiter_state.lua"),
    include_str!("lua/limiter_acquire.lua")
);
const THROTTLE: &str = concat!(
    include_str!("lua/limiter_state.lua"),
    include_str!("lua/limiter_throttle.lua")
);
const PEEK: &str = concat!(
    include_str!("lua/limiter_state.lua"),
    include_str!("lua/limiter_peek.lua")
);

pub(super) const SCRIPTS: [&str; 3] = [ACQUIRE, THROTTLE, PEEK];

static ACQUIRE_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(ACQUIRE));
static THROTTLE_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(THROTTLE));
static PEEK_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(PEEK));

/// Pushwoosh's limits count calls per minute.
const MINUTE: Duration = Duration::from_secs(60);
/// The longest a caller waits before asking an unavailable Redis again (`hold`).
const MAX_RETRY: Duration = Duration::from_secs(1);

/// How a call got its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granted {
    /// From the account's budget in Redis, at this time of Redis's clock (µs).
    Shared { at_us: i64 },
    /// From this process's share, Redis being unavailable (`on_unavailable = send`).
    Local,
    /// No limit applies (limiter off, or no figure for the method).
    Unlimited,
}

/// One line of callers: an account, a method, a priority.
type LineKey = (Account, &'static str, Priority);

pub struct SharedLimiter {
    ledger: Ledger,
    enabled: bool,
    burst: u32,
    default_pause: Duration,
    max_pause: Duration,
    max_slowdown: u32,
    recovery_us: u64,
    ttl_ms: u64,
    methods: Vec<MethodState>,
    /// One line per account, method and priority (see the module's doc).
    lines: Mutex<HashMap<LineKey, Arc<Semaphore>>>,
    /// This process's share, used while Redis does not answer and `on_unavailable = send`.
    fallback: RateLimiter,
}

struct MethodState {
    method: &'static str,
    /// Microseconds between calls at the configured rate; 0: no client-side limit. With
    /// a reserve, the main stream's spacing.
    spacing_us: u64,
    /// Microseconds between the urgent reserve's calls; 0: no reserve.
    reserve_us: u64,
    wait: Histogram,
    throttled: Counter,
    slowdown: Gauge,
}

enum Answer {
    Go { at_us: i64, slowdown: i64 },
    Wait { wait: Duration, slowdown: i64 },
}

impl SharedLimiter {
    pub fn new(settings: &RateLimitSettings, ledger: Ledger, metrics: Arc<Metrics>) -> Self {
        let minute = MINUTE + Duration::from_millis(settings.window_slack_ms);
        let methods = JobKind::ALL
            .iter()
            .map(|kind| {
                let method = kind.method();
                let labels = MethodLabels { method };
                let per_minute = u128::from(settings.per_minute(*kind));
                MethodState {
                    method,
                    spacing_us: match per_minute {
                        0 => 0,
                        n => u64::try_from(minute.as_micros().div_ceil(n)).unwrap_or(u64::MAX),
                    },
                    reserve_us: 0,
                    wait: metrics.rate_limit_wait.get_or_create(&labels).clone(),
                    throttled: metrics.rate_limit_throttled.get_or_create(&labels).clone(),
                    slowdown: metrics.rate_limit_slowdown.get_or_create(&labels).clone(),
                }
            })
            .collect::<Vec<_>>();
        let max_slowdown = settings.max_slowdown.max(1);
        let recovery = Duration::from_millis(settings.recovery_interval_ms.max(1));
        let slowest = methods.iter().map(|m| m.spacing_us).max().unwrap_or(0);
        // The state outlives the longest pause, every recovery step and the GCRA's
        // lead; a key that expired meant a quiet account: its fresh state is the same.
        let ttl = Duration::from_millis(settings.max_pause_ms)
            + recovery * (max_slowdown.ilog2() + 2)
            + Duration::from_micros(
                slowest.saturating_mul(u64::from(max_slowdown) * u64::from(settings.burst.max(1))),
            )
            + MINUTE;
        if settings.enabled {
            tracing::info!(
                burst = settings.burst,
                "account-wide rate limits in Redis, shared by every replica (while Redis does not answer and ledger.on_unavailable = send, each process falls back to its share)"
            );
        }
        Self {
            fallback: RateLimiter::new(settings, metrics),
            ledger,
            enabled: settings.enabled,
            burst: settings.burst.max(1),
            default_pause: Duration::from_millis(settings.default_pause_ms),
            max_pause: Duration::from_millis(settings.max_pause_ms),
            max_slowdown,
            recovery_us: u64::try_from(recovery.as_micros()).unwrap_or(u64::MAX),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            methods,
            lines: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps `share` of each limited method's budget for urgent calls, across every
    /// replica: the streams are split as the per-process limiter splits them (see
    /// `RateLimiter::with_reserve`; every replica must be given the same share, which
    /// the lanes' configuration does). Meant for a limiter just built.
    pub fn with_reserve(mut self, share: f64) -> Self {
        for state in &mut self.methods {
            if state.spacing_us == 0 {
                continue;
            }
            if let Some((main, reserve)) =
                reserve_periods(Duration::from_micros(state.spacing_us), share)
            {
                state.spacing_us = micros(main);
                state.reserve_us = micros(reserve);
            }
        }
        self.fallback = self.fallback.with_reserve(share);
        self
    }

    /// Waits for a slot for one call of `method` on `account`'s budget; never fails.
    /// An urgent call waits in its own line and may take the reserve's last cell.
    /// While Redis does not answer it keeps asking (`hold`), or takes a slot of this
    /// process's share (`send`). Cancellation-safe: a caller dropped while waiting loses
    /// its place in line, and a slot it was granted and did not use only makes the
    /// limiter stricter.
    pub async fn acquire(
        &self,
        account: &Account,
        method: &'static str,
        priority: Priority,
    ) -> Granted {
        let Some(state) = self.find(method).filter(|_| self.enabled) else {
            return Granted::Unlimited;
        };
        let started = Instant::now();
        let _timer = WaitTimer {
            histogram: &state.wait,
            started,
        };
        let line = self.line(account, method, priority);
        // Never closed, so never an error.
        let _turn = line.acquire().await;
        let key = self.key(account, method);
        let mut retry = Duration::from_millis(50);
        loop {
            match self.ask(&key, state, priority).await {
                Ok(Answer::Go { at_us, slowdown }) => {
                    state.slowdown.set(slowdown);
                    return Granted::Shared { at_us };
                }
                Ok(Answer::Wait { wait, slowdown }) => {
                    state.slowdown.set(slowdown);
                    tokio::time::sleep(wait).await;
                }
                Err(_) if self.ledger.on_unavailable() == OnUnavailable::Send => {
                    self.fallback.acquire(method, priority).await;
                    return Granted::Local;
                }
                Err(_) => {
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// Pushwoosh answered 429 for `method` on `account`: every process's callers wait
    /// for `retry_after` (or `rate_limit.default_pause_ms`, at most `max_pause_ms`), and
    /// unless this 429 answers a call made before the last slow-down step, calls are
    /// spaced twice as far apart, up to `rate_limit.max_slowdown` times.
    pub async fn throttled(
        &self,
        account: &Account,
        method: &'static str,
        retry_after: Option<Duration>,
    ) {
        let Some(state) = self.find(method) else {
            return;
        };
        if !self.enabled {
            state.throttled.inc();
            return;
        }
        let pause = retry_after
            .unwrap_or(self.default_pause)
            .min(self.max_pause);
        let args = [
            state.spacing_us,
            micros(pause),
            u64::from(self.max_slowdown),
            self.recovery_us,
            self.ttl_ms,
        ];
        match self.eval(&THROTTLE_SCRIPT, account, method, &args).await {
            Ok([slowdown, fresh, _]) => {
                state.throttled.inc();
                state.slowdown.set(slowdown);
                if fresh == 1 {
                    tracing::warn!(
                        method,
                        account = account.as_str(),
                        pause_ms = pause.as_millis() as u64,
                        slowdown,
                        "Pushwoosh answered 429: every replica's {method} calls for this account wait, then go slower"
                    );
                }
            }
            // Redis did not hear it: this process at least slows down.
            Err(_) => self.fallback.throttled(method, retry_after),
        }
    }

    /// How many times slower than configured `method` runs now for `account`, and how
    /// long its pause still lasts, as Redis has it.
    pub async fn slowdown(
        &self,
        account: &Account,
        method: &'static str,
    ) -> Result<(u32, Duration), LedgerError> {
        let [slowdown, pause_us] = self
            .eval(&PEEK_SCRIPT, account, method, &[self.recovery_us])
            .await?;
        Ok((
            u32::try_from(slowdown).unwrap_or(u32::MAX),
            Duration::from_micros(u64::try_from(pause_us).unwrap_or(0)),
        ))
    }

    async fn ask(
        &self,
        key: &[u8],
        state: &MethodState,
        priority: Priority,
    ) -> Result<Answer, LedgerError> {
        let args = [
            state.spacing_us,
            u64::from(self.burst),
            self.recovery_us,
            self.ttl_ms,
            state.reserve_us,
            u64::from(priority == Priority::Urgent),
        ];
        let [wait_us, slowdown, now_us] = self.eval_key(&ACQUIRE_SCRIPT, key, &args).await?;
        Ok(if wait_us <= 0 {
            Answer::Go {
                at_us: now_us,
                slowdown,
            }
        } else {
            Answer::Wait {
                wait: Duration::from_micros(wait_us as u64),
                slowdown,
            }
        })
    }

    async fn eval<const N: usize>(
        &self,
        script: &LuaScript,
        account: &Account,
        method: &'static str,
        args: &[u64],
    ) -> Result<[i64; N], LedgerError> {
        self.eval_key(script, &self.key(account, method), args)
            .await
    }

    async fn eval_key<const N: usize>(
        &self,
        script: &LuaScript,
        key: &[u8],
        args: &[u64],
    ) -> Result<[i64; N], LedgerError> {
        let call = Invocation {
            key: key.to_vec(),
            args: args.iter().map(|a| a.to_string().into_bytes()).collect(),
        };
        let reply = self
            .ledger
            .eval_each("rate_limit", script, std::slice::from_ref(&call))
            .await?
            .pop();
        let numbers: Option<Vec<i64>> = match reply {
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::Int(n) => Some(n),
                    _ => None,
                })
                .collect(),
            _ => None,
        };
        numbers.and_then(|n| n.try_into().ok()).ok_or_else(|| {
            LedgerError::Unexpected("the rate limiter's script answered oddly".into())
        })
    }

    /// `<key_prefix>rate:<account>:<method>`.
    fn key(&self, account: &Account, method: &str) -> Vec<u8> {
        format!(
            "{}rate:{}:{method}",
            self.ledger.key_prefix(),
            account.as_str()
        )
        .into_bytes()
    }

    fn line(&self, account: &Account, method: &'static str, priority: Priority) -> Arc<Semaphore> {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines
            .entry((account.clone(), method, priority))
            .or_insert_with(|| Arc::new(Semaphore::new(1)))
            .clone()
    }

    fn find(&self, method: &str) -> Option<&MethodState> {
        self.methods.iter().find(|m| m.method == method)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
