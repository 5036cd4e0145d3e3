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
    /// The shared limiter when there is a ledger, else today's per-process one.
    pub fn new(
        settings: &RateLimitSettings,
        ledger: Option<&Ledger>,
        metrics: Arc<Metrics>,
    ) -> Self {
        match ledger {
            Some(ledger) => Self::Shared(SharedLimiter::new(settings, ledger.clone(), metrics)),
            None => Self::Local(RateLimiter::new(settings, metrics)),
        }
    }

    /// Waits for a slot for one call of `method` made with `account`'s token; never fails.
    /// `priority` orders the per-process limiter's lines; the shared limiter has no
    /// urgent lane, so there it changes nothing.
    pub async fn acquire(&self, account: &Account, method: &'static str, priority: Priority) {
        match self {
            Self::Local(limiter) => limiter.acquire(method, priority).await,
            Self::Shared(limiter) => drop(limiter.acquire(account, method).await),
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
