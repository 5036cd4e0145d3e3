//! The ledger: the worker's one memory shared by every replica, in Redis. It remembers
//! which job ids reached Pushwoosh and what Pushwoosh answered ([`Claim`], [`Record`]),
//! and holds each account's rate-limit budget ([`SharedLimiter`]).
//!
//! A job's life in it: `claim` before the call (one round trip per batch), then `record`
//! as soon as Pushwoosh answers, or `release` when the call cannot have reached
//! Pushwoosh. See `docs/design.md` ("The ledger in Redis") for the keys, values and scripts.

mod account;
mod call_limiter;
mod claims;
mod connection;
mod encoding;
mod endpoint;
mod error;
mod limiter;
mod round_trip;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::ExposeSecret;

pub use account::Account;
pub use call_limiter::CallLimiter;
pub use claims::{Claim, ClaimOutcome, Record};
pub use encoding::Recorded;
pub use endpoint::{Endpoint, SentinelEndpoint};
pub use error::LedgerError;
pub use limiter::{Granted, SharedLimiter};

use crate::metrics::{LedgerMetrics, Metrics};
use crate::settings::{LedgerSettings, OnUnavailable};
use connection::{Connection, Routed};

/// A handle on the ledger; clones share one connection.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    /// What logs may say about where Redis is (no password).
    endpoint: String,
    key_prefix: String,
    window_ms: u64,
    timeout: Duration,
    on_unavailable: OnUnavailable,
    available: AtomicBool,
    /// Claims go as `SET NX GET` until Redis refuses it (before 7.0).
    native_claims: AtomicBool,
    metrics: LedgerMetrics,
}

impl Ledger {
    /// Builds the ledger from `[ledger]`. Fails only on a bad URL: a Redis that does not
    /// answer yet makes a ledger that is not [available](Self::is_available), which
    /// connects by itself once Redis answers.
    pub async fn connect(settings: &LedgerSettings, metrics: &Metrics) -> anyhow::Result<Self> {
        let endpoint = Endpoint::parse(settings.url.expose_secret())?;
        let connection = Connection::new(&endpoint, settings.timeout())?;
        let ledger = Self {
            inner: Arc::new(Inner {
                connection,
                endpoint: endpoint.describe(),
                key_prefix: settings.key_prefix.clone(),
                window_ms: settings.window_ms,
                timeout: settings.timeout(),
                on_unavailable: settings.on_unavailable,
                available: AtomicBool::new(false),
                native_claims: AtomicBool::new(true),
                metrics: metrics.ledger.clone(),
            }),
        };
        ledger.set_available(false);
        match ledger.load_scripts().await {
            Ok(()) => tracing::info!(redis = %ledger.inner.endpoint, "ledger connected to Redis"),
            Err(e) => tracing::warn!(
                redis = %ledger.inner.endpoint,
                error = %e,
                "Redis does not answer yet: the ledger connects when it does"
            ),
        }
        Ok(ledger)
    }

    /// Whether Redis answered the last round trip (or probe).
    pub fn is_available(&self) -> bool {
        self.inner.available.load(Ordering::Relaxed)
    }

    /// Asks Redis now (`PING`): for `/readyz` and for probing while Redis is away.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        let ping = Routed::keyless(redis::cmd("PING"));
        self.round_trip("ping", &[ping]).await.map(drop)
    }

    /// Returns once Redis answers, asking every `every`.
    pub async fn wait_available(&self, every: Duration) {
        while self.ping().await.is_err() {
            tokio::time::sleep(every).await;
        }
    }

    pub fn on_unavailable(&self) -> OnUnavailable {
        self.inner.on_unavailable
    }

    pub fn window(&self) -> Duration {
        Duration::from_millis(self.inner.window_ms)
    }

    pub fn metrics(&self) -> &LedgerMetrics {
        &self.inner.metrics
    }

    /// The Redis key that remembers `job_id` (for operators' tools and tests).
    pub fn key_of(&self, job_id: &str) -> Vec<u8> {
        encoding::job_key(&self.inner.key_prefix, job_id)
    }

    /// Claims as with a Redis before 7.0, through the Lua script (for tests: this Redis
    /// has `SET NX GET`). Clones made before share it.
    #[doc(hidden)]
    pub fn claim_with_script(self) -> Self {
        self.inner.native_claims.store(false, Ordering::Relaxed);
        self
    }

    pub(crate) fn key_prefix(&self) -> &str {
        &self.inner.key_prefix
    }

    /// Caches every script in Redis up front, so that the first batch takes one round
    /// trip too (a cluster caches them on every primary).
    async fn load_scripts(&self) -> Result<(), LedgerError> {
        let loads: Vec<Routed> = claims::SCRIPTS
            .iter()
            .chain(limiter::SCRIPTS.iter())
            .map(|source| {
                let mut load = redis::cmd("SCRIPT");
                load.arg("LOAD").arg(*source);
                Routed::keyless(load)
            })
            .collect();
        self.round_trip("ping", &loads).await.map(drop)
    }
}
