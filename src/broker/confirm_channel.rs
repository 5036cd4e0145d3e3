//! A channel in confirm mode that heals itself, under the publisher.
//!
//! When the broker closes the channel (a channel error is not a connection error),
//! every publish then under way fails with the same error, whichever message caused
//! it. So a publish that failed that way waits for the channel to be opened again (the
//! topology declared again first, in case an exchange or queue went away), then is tried
//! once more alone, with no other publish on the channel: if it fails alone, for a
//! reason that is about a message (too large, a nack), it was this message, and the
//! caller hears [`PublishError::Refused`]; every other message goes through. While the
//! channel cannot be opened again the publishes wait, [`HealingChannel::available`] is
//! false (the worker takes no jobs), and only a lost connection or a stopping worker
//! ends the wait ([`PublishError::Unavailable`]).

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::{BasicProperties, Channel, Connection, ErrorKind};
use tokio::sync::{RwLock, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::topology::Topology;
use crate::metrics::{ChannelLabels, Metrics};

/// Why a message was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The broker refused this very message (too large for it, nacked): publishing it
    /// again as it is would be refused again. Another message may go through.
    #[error("the broker refused the message: {0}")]
    Refused(String),
    /// No channel to publish on: the connection is gone, or the worker is stopping.
    #[error("cannot publish: {0}")]
    Unavailable(String),
}

/// The channel in use, and how many times it has been opened again.
struct Slot {
    channel: Channel,
    generation: u64,
}

struct Shared {
    connection: Arc<Connection>,
    topology: Topology,
    /// Publishes share it; a publish tried again alone, and the reopening of the
    /// channel, hold it for themselves.
    slot: RwLock<Slot>,
    available: watch::Sender<bool>,
    /// Cancelled when waiting for a channel is no longer worth it: the worker's jobs are
    /// being handed back.
    stop: CancellationToken,
    metrics: Arc<Metrics>,
}

#[derive(Clone)]
pub struct HealingChannel {
    shared: Arc<Shared>,
}

/// How one try at publishing ended.
enum Attempt {
    Confirmed,
    Nacked,
    /// The channel broke under the publish: the error says why.
    Broken(lapin::Error),
}

impl HealingChannel {
    /// Opens a channel in confirm mode on `connection`. `stop`: see [`PublishError::Unavailable`].
    pub async fn open(
        connection: Arc<Connection>,
        topology: Topology,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let channel = confirm_channel(&connection).await?;
        metrics.publisher_available.set(1);
        let (available, _) = watch::channel(true);
        Ok(Self {
            shared: Arc::new(Shared {
                connection,
                topology,
                slot: RwLock::new(Slot {
                    channel,
                    generation: 0,
                }),
                available,
                stop,
                metrics,
            }),
        })
    }

    /// `true` while there is a channel; `false` while it is being opened again and that
    /// fails (the worker then takes no jobs).
    pub fn available(&self) -> watch::Receiver<bool> {
        self.shared.available.subscribe()
    }

    /// Closes the channel once nothing more will be published on it.
    pub async fn close(&self) {
        let slot = self.shared.slot.read().await;
        let _ = slot.channel.close(200, "worker stopping".into()).await;
    }

    /// Publishes and waits for the confirm; see the module's doc for what happens when
    /// the channel breaks.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let shared = &self.shared;
        let (generation, first) = {
            let slot = shared.slot.read().await;
            let attempt = attempt(
                &slot.channel,
                exchange,
                routing_key,
                body,
                properties.clone(),
            )
            .await;
            (slot.generation, attempt)
        };
        let cause = match first {
            Attempt::Confirmed => return Ok(()),
            Attempt::Nacked => return Err(nacked()),
            Attempt::Broken(cause) => cause,
        };
        // Alone from here on: no other message can break the channel under this one.
        let mut slot = shared.slot.write().await;
        if slot.generation == generation {
            shared.reopen(&mut slot, &cause).await?;
        }
        let mut delays = backoff();
        loop {
            let error = match attempt(
                &slot.channel,
                exchange,
                routing_key,
                body,
                properties.clone(),
            )
            .await
            {
                Attempt::Confirmed => {
                    shared.set_available(true);
                    return Ok(());
                }
                Attempt::Nacked => return Err(nacked()),
                Attempt::Broken(error) => error,
            };
            shared.reopen(&mut slot, &error).await?;
            if about_the_message(&error) {
                return Err(PublishError::Refused(describe(&error)));
            }
            // The channel broke for a reason of its own (a permission, say) that opening
            // it again did not mend: no jobs until it is, and no hammering meanwhile.
            shared.set_available(false);
            let delay = delays.next().unwrap_or(MAX_WAIT);
            error!(
                error = %describe(&error),
                retry_in_ms = delay.as_millis() as u64,
                "cannot publish: the broker refuses every message on the channel; taking no jobs until it takes one"
            );
            shared.wait(delay).await?;
        }
    }
}

/// The longest wait between two tries at opening the channel or publishing again.
const MAX_WAIT: Duration = Duration::from_secs(5);

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(MAX_WAIT)
        .with_jitter()
        .without_max_times()
        .build()
}

impl Shared {
    /// Opens the channel again after `cause` broke it, declaring the topology first,
    /// retried with backoff for as long as the connection lasts and the worker wants it.
    async fn reopen(&self, slot: &mut Slot, cause: &lapin::Error) -> Result<(), PublishError> {
        warn!(error = %describe(cause), "the broker closed the publish channel: opening it again");
        let mut delays = backoff();
        loop {
            if !self.connection.status().connected() {
                self.set_available(false);
                return Err(PublishError::Unavailable(
                    "the connection to the broker is lost".into(),
                ));
            }
            match self.open_declared().await {
                Ok(channel) => {
                    let _ = slot.channel.close(200, "replaced".into()).await;
                    slot.channel = channel;
                    slot.generation += 1;
                    self.metrics
                        .channel_reopens
                        .get_or_create(&ChannelLabels { channel: "publish" })
                        .inc();
                    if !*self.available.borrow() {
                        info!("the publish channel is open again");
                    }
                    self.set_available(true);
                    return Ok(());
                }
                Err(e) => {
                    let delay = delays.next().unwrap_or(MAX_WAIT);
                    error!(
                        error = format!("{e:#}"),
                        retry_in_ms = delay.as_millis() as u64,
                        "cannot publish: the publish channel could not be opened again; taking no jobs until it is"
                    );
                    self.set_available(false);
                    self.wait(delay).await?;
                }
            }
        }
    }

    /// Waits `delay`, unless the worker stops meanwhile.
    async fn wait(&self, delay: Duration) -> Result<(), PublishError> {
        tokio::select! {
            () = self.stop.cancelled() => Err(PublishError::Unavailable("the worker is stopping".into())),
            () = tokio::time::sleep(delay) => Ok(()),
        }
    }

    async fn open_declared(&self) -> anyhow::Result<Channel> {
        self.topology.declare(&self.connection).await?;
        confirm_channel(&self.connection).await
    }

    fn set_available(&self, available: bool) {
        self.metrics.publisher_available.set(i64::from(available));
        self.available.send_if_modified(|now| {
            let changed = *now != available;
            *now = available;
            changed
        });
    }
}

async fn confirm_channel(connection: &Connection) -> anyhow::Result<Channel> {
    use anyhow::Context;
    let channel = connection
        .create_channel()
        .await
        .context("opening a channel")?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("enabling publisher confirms")?;
    Ok(channel)
}

async fn attempt(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Attempt {
    let published = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await;
    let confirm = match published {
        Ok(confirm) => confirm.await,
        Err(e) => Err(e),
    };
    match confirm {
        Ok(confirmation) if confirmation.is_nack() => Attempt::Nacked,
        Ok(_) => Attempt::Confirmed,
        Err(e) => Attempt::Broken(e),
    }
}

fn nacked() -> PublishError {
    PublishError::Refused("the broker refused the message (nack)".into())
}

/// Whether the broker closed the channel over the message itself rather than over the
/// channel's state: a message over its `max_message_size` (406), content too large
/// (311). (A frame it cannot parse closes the whole connection instead.)
fn about_the_message(error: &lapin::Error) -> bool {
    match error.kind() {
        ErrorKind::ProtocolError(e) => matches!(
            e.kind(),
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED | AMQPSoftError::CONTENTTOOLARGE)
        ),
        _ => false,
    }
}

/// The broker's own words where it gave some.
fn describe(error: &lapin::Error) -> String {
    match error.kind() {
        ErrorKind::ProtocolError(e) => e.get_message().to_string(),
        _ => error.to_string(),
    }
}
