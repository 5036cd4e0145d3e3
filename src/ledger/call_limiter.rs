//! The rate limiter a call waits on, either kind: this process's share (the ledger off)
//! or the account's budget shared through Redis.

use std::sync::Arc;
use std::time::Duration;

use super::{Account, Ledger, SharedLimiter};
use crate::metrics::Metrics;
use crate::pushwoosh::{Priority, RateLimiter};
use crate::settings::RateLimitSettings;

pub enum CallLimiter {
    /// Per process (`rate_limit.replicas` takes each one's share); the account is not read.
    Local(RateLimiter),
    /// Per account, shared by every replica through Redis.
    Shared(SharedLimiter),
}

impl CallLimiter {
    /// The shared limiter when there is a ledger, else the per-process one; either keeps
    /// `reserve` (the enabled lanes' shares) of each method's budget for urgent calls.
    pub fn new(
        settings: &RateLimitSettings,
        ledger: Option<&Ledger>,
        metrics: Arc<Metrics>,
        reserve: f64,
    ) -> Self {
        match ledger {
            Some(ledger) => Self::Shared(
                SharedLimiter::new(settings, ledger.clone(), metrics).with_reserve(reserve),
            ),
            None => Self::Local(RateLimiter::new(settings, metrics).with_reserve(reserve)),
        }
    }

    /// Waits for a slot for one call of `method` made with `account`'s token; never fails.
    /// An urgent call goes first and may take the reserve kept for urgent calls.
    pub async fn acquire(&self, account: &Account, method: &'static str, priority: Priority) {
        match self {
            Self::Local(limiter) => limiter.acquire(method, priority).await,
            Self::Shared(limiter) => drop(limiter.acquire(account, method, priority).await),
        }
    }

    /// Pushwoosh answered 429 to a call of `method` made with `account`'s token.
    pub async fn throttled(
        &self,
        account: &Account,
        method: &'static str,
        retry_after: Option<Duration>,
    ) {
        match self {
            Self::Local(limiter) => limiter.throttled(method, retry_after),
            Self::Shared(limiter) => limiter.throttled(account, method, retry_after).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send<T: Send>(_: &T) {}

    #[allow(dead_code)]
    async fn futures_are_send(limiter: &CallLimiter, ledger: &Ledger) {
        let account = Account::named("a");
        is_send(&limiter.acquire(&account, "createMessage", Priority::Bulk));
        is_send(&limiter.throttled(&account, "createMessage", None));
        is_send(&ledger.claim(&[]));
        is_send(&ledger.record(&[]));
        is_send(&ledger.release(&[]));
    }
}
