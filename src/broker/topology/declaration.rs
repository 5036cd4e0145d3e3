//! One exchange, queue or binding of the topology, and how it is declared.

use anyhow::Context;
use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ErrorKind, ExchangeKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeType {
    Topic,
    Fanout,
}

impl ExchangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Topic => "topic",
            ExchangeType::Fanout => "fanout",
        }
    }

    fn kind(self) -> ExchangeKind {
        match self {
            ExchangeType::Topic => ExchangeKind::Topic,
            ExchangeType::Fanout => ExchangeKind::Fanout,
        }
    }
}

/// One exchange, queue or binding of the topology. Exchanges and queues are durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Declaration {
    Exchange {
        name: String,
        kind: ExchangeType,
        arguments: FieldTable,
    },
    Queue {
        name: String,
        arguments: FieldTable,
    },
    Binding {
        queue: String,
        exchange: String,
        routing_key: String,
    },
    /// An exchange bound to another: `source`'s jobs go on to `destination`.
    ExchangeBinding {
        destination: String,
        source: String,
        routing_key: String,
    },
    /// A binding that must not be there (made by an earlier version, or of a lane that
    /// is off).
    Unbinding {
        queue: String,
        exchange: String,
        routing_key: String,
    },
}

impl Declaration {
    /// `exchange pushwoosh.jobs`, `queue pushwoosh.dead`, `binding pushwoosh.jobs -> pushwoosh.jobs.urgent (urgent.#)`.
    pub fn describe(&self) -> String {
        match self {
            Declaration::Exchange { name, .. } => format!("exchange {name}"),
            Declaration::Queue { name, .. } => format!("queue {name}"),
            Declaration::Binding {
                queue,
                exchange,
                routing_key,
            } => format!("binding {exchange} -> {queue} ({routing_key})"),
            Declaration::ExchangeBinding {
                destination,
                source,
                routing_key,
            } => format!("binding {source} -> exchange {destination} ({routing_key})"),
            Declaration::Unbinding {
                queue,
                exchange,
                routing_key,
            } => format!("no binding {exchange} -> {queue} ({routing_key})"),
        }
    }

    /// A binding, or one that must not be there: AMQP cannot see either.
    pub fn is_binding(&self) -> bool {
        matches!(
            self,
            Declaration::Binding { .. }
                | Declaration::ExchangeBinding { .. }
                | Declaration::Unbinding { .. }
        )
    }

    /// Removes a binding that must not be there, on a channel of its own (a queue that
    /// does not exist has no binding, but saying so closes the channel).
    pub async fn undo_on_own_channel(&self, conn: &Connection) -> anyhow::Result<()> {
        let Declaration::Unbinding {
            queue,
            exchange,
            routing_key,
        } = self
        else {
            return Ok(());
        };
        let channel = conn.create_channel().await.context("opening a channel")?;
        match channel
            .queue_unbind(
                queue.as_str().into(),
                exchange.as_str().into(),
                routing_key.as_str().into(),
                FieldTable::default(),
            )
            .await
        {
            Ok(()) => {
                let _ = channel.close(200, "unbound".into()).await;
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context(format!(
                "removing the binding {exchange} -> {queue} ({routing_key})"
            ))),
        }
    }

    pub async fn declare(&self, channel: &Channel) -> anyhow::Result<()> {
        match self {
            Declaration::Exchange {
                name,
                kind,
                arguments,
            } => channel
                .exchange_declare(
                    name.as_str().into(),
                    kind.kind(),
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    arguments.clone(),
                )
                .await
                .with_context(|| {
                    format!(
                        "declaring exchange {name} (if it exists with another type or \
                         durability, delete it or point amqp.* at other names)"
                    )
                }),
            Declaration::Queue { name, arguments } => channel
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions::durable(),
                    arguments.clone(),
                )
                .await
                .map(drop)
                .with_context(|| {
                    format!(
                        "declaring queue {name} (if it exists with other arguments, e.g. \
                         another queue type, delete it or point amqp.* at other names)"
                    )
                }),
            Declaration::Binding {
                queue,
                exchange,
                routing_key,
            } => channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .with_context(|| format!("binding {queue} to {exchange}")),
            Declaration::ExchangeBinding {
                destination,
                source,
                routing_key,
            } => channel
                .exchange_bind(
                    destination.as_str().into(),
                    source.as_str().into(),
                    routing_key.as_str().into(),
                    ExchangeBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .with_context(|| format!("binding exchange {destination} to {source}")),
            Declaration::Unbinding { .. } => Ok(()),
        }
    }
}

/// The broker said there is no such queue or exchange (404 NOT_FOUND).
pub fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ProtocolError(e) if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
    )
}
