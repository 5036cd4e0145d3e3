//! Consuming the jobs queue for as long as the worker runs: one session a connection
//! (see [`super::session`]), the channels opened again on the same connection when the
//! broker closes one, and a reconnect with backoff when the broker goes away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::Connection;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::batcher::Batcher;
use super::breaker::CircuitBreaker;
use super::context::Readiness;
use super::session::session;
use crate::broker::{self, Topology};
use crate::ledger::CallLimiter;
use crate::metrics::{ChannelLabels, Metrics};
use crate::pushwoosh::PushwooshClient;
use crate::retry::RetryPolicy;
use crate::settings::Settings;

/// Everything needed to (re)build a session with the broker.
pub struct ConsumerSetup {
    pub settings: Arc<Settings>,
    pub client: PushwooshClient,
    pub topology: Topology,
    pub retry: RetryPolicy,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub breaker: Arc<CircuitBreaker>,
    /// Outlives reconnections: a new session must not forget the calls just made.
    pub limiter: Arc<CallLimiter>,
    pub batcher: Arc<Batcher>,
    /// Which job ids went out, shared by every replica (Redis), when `ledger.enabled`.
    pub ledger: Option<crate::ledger::Ledger>,
    /// The queues consumed, each on a channel of its own: the lanes, then the jobs queue.
    pub lanes: Vec<super::lane::Lane>,
}

/// How a session with the broker ended.
pub(super) enum SessionEnd {
    /// Asked to stop; in-flight jobs were finished or handed back.
    Stopped,
    /// The connection or a channel broke: start again, on the same connection if it is
    /// still up.
    Lost(anyhow::Error),
}

/// A session that lasted this long was not part of a crash loop: the backoff starts over.
const STABLE_SESSION: Duration = Duration::from_secs(30);

/// Runs until `shutdown` is cancelled. `first` is the connection made at start (so a
/// bad broker fails the start); later connections are retried without a time limit.
pub async fn run_consumer(
    setup: ConsumerSetup,
    first: Connection,
    first_index: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The endpoint connected to: a reconnection tries it last (a lost node).
    let mut endpoint = first_index;
    let mut connection = Some(Arc::new(first));
    let mut backoff = reconnect_backoff();
    let mut quick_losses = 0u32;
    loop {
        let conn = match connection.take() {
            Some(conn) => conn,
            None => {
                let name = connection_name();
                let connect = broker::connect_after(
                    &setup.settings.amqp,
                    &name,
                    Duration::MAX,
                    Some(endpoint),
                );
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    conn = connect => {
                        let conn = conn?;
                        setup.readiness.set_broker(&conn.endpoint);
                        endpoint = conn.index;
                        Arc::new(conn.connection)
                    }
                }
            }
        };
        setup.metrics.broker_connected.set(1);
        let started = Instant::now();
        let end = session(&setup, &conn, &shutdown).await;
        setup.readiness.set_consuming(false);
        setup.metrics.consuming.set(0);
        if started.elapsed() >= STABLE_SESSION {
            backoff = reconnect_backoff();
            quick_losses = 0;
        }
        if let Ok(SessionEnd::Lost(e)) | Err(e) = &end
            && conn.status().connected()
            && !shutdown.is_cancelled()
        {
            // A channel error, not a connection error: the broker closed a channel (an
            // ack it did not know, a queue deleted under the consumer). The same
            // connection serves again, at once the first time.
            setup
                .metrics
                .channel_reopens
                .get_or_create(&ChannelLabels { channel: "consume" })
                .inc();
            let delay = if quick_losses == 0 {
                Duration::ZERO
            } else {
                backoff.next().unwrap_or(Duration::from_secs(10))
            };
            quick_losses += 1;
            warn!(
                error = format!("{e:#}"),
                retry_in_ms = delay.as_millis() as u64,
                "the broker closed a channel: opening the channels again on the same connection"
            );
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(delay) => {}
            }
            connection = Some(conn);
            continue;
        }
        setup.metrics.broker_connected.set(0);
        match end {
            Ok(SessionEnd::Stopped) => {
                // Everything is settled; a broker that does not answer the close does
                // not keep the worker from exiting.
                let close = conn.close(200, "worker stopping".into());
                if tokio::time::timeout(BROKER_WAIT, close).await.is_err() {
                    warn!("the broker did not answer the connection close in time");
                }
                return Ok(());
            }
            Ok(SessionEnd::Lost(e)) | Err(e) => {
                let delay = backoff.next().unwrap_or(Duration::from_secs(10));
                error!(
                    error = format!("{e:#}"),
                    retry_in_ms = delay.as_millis() as u64,
                    "lost the broker: reconnecting"
                );
                let _ =
                    tokio::time::timeout(BROKER_WAIT, conn.close(320, "reconnecting".into())).await;
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// How long a stopping or reconnecting worker waits on the broker (a connection's close,
/// the last acks, a consumer's cancel) before it goes on without the answer.
pub(super) const BROKER_WAIT: Duration = Duration::from_secs(5);

fn reconnect_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build()
}

pub fn connection_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!("pushwoosh-worker@{host}#{}", std::process::id())
}

impl ConsumerSetup {
    pub(super) fn client_timeout(&self) -> Duration {
        self.settings.pushwoosh.timeout()
    }
}
