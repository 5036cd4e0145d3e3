//! Moving a deployment's classic retry queues (declared with `amqp.queue_type =
//! "classic"`) over to quorum ones. RabbitMQ cannot change a queue's type, so the classic
//! queue's parked jobs go back to the queue they were parked for (their retry comes
//! early, once), it is deleted, and it is declared again as a quorum queue. Every step is
//! confirmed, so no parked job is lost; an empty classic queue is simply replaced.

use anyhow::Context;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions,
};
use lapin::{Channel, Connection};
use tracing::{info, warn};

use super::{Declaration, RetryReturn};

/// Declares a retry queue as the configuration has it (quorum) on a channel of its own;
/// a classic one is moved over first.
pub(super) async fn declare_retry_queue(
    conn: &Connection,
    declaration: &Declaration,
    retry: &RetryReturn,
) -> anyhow::Result<()> {
    let RetryReturn {
        queue: name,
        back_to,
    } = retry;
    let channel = conn.create_channel().await.context("opening a channel")?;
    let first = declaration.declare(&channel).await;
    let Err(error) = first else {
        let _ = channel.close(200, "declared".into()).await;
        return Ok(());
    };
    // RabbitMQ names the first argument that differs (x-overflow before x-queue-type):
    // any retry queue declared otherwise holds nothing but parked jobs, so it is moved
    // over the same way.
    if !format!("{error:#}").contains("inequivalent arg") {
        return Err(error);
    }
    warn!(
        queue = name.as_str(),
        "a retry queue declared otherwise (classic): moving its parked jobs back to {back_to} and declaring it again"
    );
    let channel = conn.create_channel().await.context("opening a channel")?;
    let moved = drain(&channel, name, back_to).await?;
    channel
        .queue_delete(
            name.as_str().into(),
            QueueDeleteOptions {
                if_empty: true,
                ..QueueDeleteOptions::default()
            },
        )
        .await
        .with_context(|| format!("deleting the classic retry queue {name} (something parked a job meanwhile: run it again)"))?;
    declaration.declare(&channel).await?;
    let _ = channel.close(200, "declared".into()).await;
    info!(
        queue = name.as_str(),
        moved,
        "the retry queue is declared as configured now; its parked jobs are retried early, once"
    );
    Ok(())
}

/// Republishes every message of `queue` to `back_to` (confirmed), acking each after.
async fn drain(channel: &Channel, queue: &str, back_to: &str) -> anyhow::Result<u64> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut moved = 0;
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .with_context(|| format!("reading {queue}"))?
    {
        let delivery = message.delivery;
        let confirmation = channel
            .basic_publish(
                "".into(),
                back_to.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &delivery.data,
                crate::broker::publisher::without_expiration(&delivery.properties),
            )
            .await?
            .await?;
        anyhow::ensure!(
            confirmation.is_ack() && confirmation.take_message().is_none(),
            "{back_to} did not take a job parked in {queue}: it stays there"
        );
        delivery.ack(BasicAckOptions::default()).await?;
        moved += 1;
    }
    Ok(moved)
}
