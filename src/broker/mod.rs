//! RabbitMQ: connecting (with bounded retries), declaring the topology, publishing with
//! publisher confirms, and reading the management API (`topology --check`).

pub mod confirm_channel;
pub mod connect;
pub mod dead_reason;
pub mod management;
pub mod publisher;
pub mod topology;

pub use connect::{Connected, DEFAULT_FRAME_MAX, connect, connect_after};
pub use dead_reason::DeadReason;
pub use publisher::Publisher;
pub use topology::Topology;

use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};

/// Watches every result: an exclusive, auto-deleted queue bound to the results exchange
/// with `#`, consumed without acks (for `publish --wait` and tests).
pub async fn watch_results(channel: &Channel, results_exchange: &str) -> lapin::Result<Consumer> {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            results_exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .basic_consume(
            queue.name().clone(),
            "results-watch".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
}
