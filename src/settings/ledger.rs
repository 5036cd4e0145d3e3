//! `[ledger]`: the memory of job ids in Redis, shared by every replica.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// What the worker does while Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Stop taking jobs (like the open circuit breaker) until Redis answers again: nothing
    /// is sent that the ledger did not see, and the account's budget is never exceeded.
    #[default]
    Hold,
    /// Go on without the ledger, loudly: jobs are sent unrecorded and the rate limiter
    /// falls back to this process's share (`rate_limit.replicas`).
    Send,
}

/// The ledger: which job ids went out, and the account-wide rate limits, in Redis, shared
/// by every replica.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerSettings {
    /// Off: no Redis, no memory of job ids, and each process keeps its share of the rate
    /// limits (`rate_limit.replicas`).
    pub enabled: bool,
    /// Redis URL; `REDIS_URL` overrides it. `redis://` or `rediss://` (TLS) for one node,
    /// `redis+cluster://host1:port,host2:port` for a cluster, and
    /// `redis+sentinel://host1:26379,host2:26379/master_name` for Sentinel (`rediss+…`
    /// with TLS). It may hold a password, so it never prints.
    pub url: SecretString,
    /// How long a job id that reached Pushwoosh is remembered: a job published again
    /// within this window is not sent again.
    pub window_ms: u64,
    /// Every key the worker writes starts with this. Keep it short: up to 10 characters,
    /// a remembered job costs ~150 bytes; each character more costs up to 16 bytes a job.
    pub key_prefix: String,
    /// `hold` or `send`: see [`OnUnavailable`].
    pub on_unavailable: OnUnavailable,
    /// The longest one Redis round trip may take before Redis counts as unavailable.
    pub timeout_ms: u64,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            url: SecretString::from("redis://127.0.0.1:6379"),
            window_ms: 86_400_000,
            key_prefix: "pushwoosh:".into(),
            on_unavailable: OnUnavailable::Hold,
            timeout_ms: 1_000,
        }
    }
}

impl LedgerSettings {
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}
