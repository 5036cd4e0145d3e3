//! Moving one dead letter back to the jobs exchange: the routing key of its copy, the
//! copy's properties (the dead-lettering's headers and the spent retry budget removed),
//! and the confirmed publish that must succeed before the dead letter is acked.

use anyhow::bail;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

use super::selection::Letter;
use crate::broker::publisher::{header_int, headers};

/// Routing key of a replayed job whose dead letter does not name its original one.
const FALLBACK_ROUTING_KEY: &str = "replay";

/// The routing key of a letter's copy: the one asked for, else the letter's original one,
/// else [`FALLBACK_ROUTING_KEY`].
pub(super) fn routing_key(asked: Option<&str>, letter: &Letter) -> String {
    asked
        .map(str::to_owned)
        .or_else(|| letter.original_routing_key.clone())
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| FALLBACK_ROUTING_KEY.to_owned())
}

/// Publishes one copy and waits for the broker's confirm; unroutable or refused is an error.
pub(super) async fn publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> anyhow::Result<()> {
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            properties,
        )
        .await?
        .await?;
    if !confirmation.is_ack() {
        bail!("the broker refused the copy (nack): the dead letter stays");
    }
    if confirmation.take_message().is_some() {
        bail!(
            "no queue is bound to exchange {exchange} for routing key {routing_key:?}: \
             the dead letter stays"
        );
    }
    Ok(())
}

/// The dead letter's properties for its replayed copy: the dead-lettering's headers and
/// the spent retry budget removed, the replay stamped.
pub(super) fn replay_properties(original: &BasicProperties, now_ms: i64) -> BasicProperties {
    let count = header_int(original, headers::REPLAY_COUNT).unwrap_or(0);
    let mut table = FieldTable::default();
    if let Some(old) = original.headers() {
        for (key, value) in old.inner() {
            if !is_dead_letter_header(key.as_str()) {
                table.insert(key.clone(), value.clone());
            }
        }
    }
    table.insert(headers::REPLAYED_AT.into(), AMQPValue::LongLongInt(now_ms));
    table.insert(
        headers::REPLAY_COUNT.into(),
        AMQPValue::LongLongInt(count.saturating_add(1)),
    );
    original.clone().with_headers(table).with_delivery_mode(2)
}

/// Headers written by dead-lettering or counting the retry budget, dropped on replay.
fn is_dead_letter_header(key: &str) -> bool {
    key.starts_with("x-pushwoosh-dead-")
        || [
            headers::LAST_ERROR,
            headers::KIND,
            headers::JOB_ID,
            headers::ORIGINAL_EXCHANGE,
            headers::ORIGINAL_ROUTING_KEY,
            headers::ATTEMPTS,
            headers::RECEIVED_AT,
            headers::REPLAYED_AT,
            headers::REPLAY_COUNT,
        ]
        .contains(&key)
}
