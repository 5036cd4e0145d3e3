//! The exchanges and queues the contract names, declared idempotently at start.

use std::time::Duration;

use anyhow::Context;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::retry::RetryPolicy;
use crate::settings::{AmqpSettings, QueueType};

/// The names the worker uses, derived from the settings.
#[derive(Debug, Clone)]
pub struct Topology {
    pub jobs_exchange: String,
    pub jobs_queue: String,
    pub queue_type: QueueType,
    pub results_exchange: String,
    pub dead_letter_queue: String,
    pub retry_queue_prefix: String,
    pub retry_tiers: Vec<Duration>,
    pub delivery_limit: u32,
}

impl Topology {
    pub fn new(amqp: &AmqpSettings, retry: &RetryPolicy) -> Self {
        Self {
            jobs_exchange: amqp.jobs_exchange.clone(),
            jobs_queue: amqp.jobs_queue.clone(),
            queue_type: amqp.queue_type,
            results_exchange: amqp.results_exchange.clone(),
            dead_letter_queue: amqp.dead_letter_queue.clone(),
            retry_queue_prefix: amqp.retry_queue_prefix.clone(),
            retry_tiers: retry.tiers(),
            delivery_limit: amqp.delivery_limit,
        }
    }

    /// `pushwoosh.retry.4000ms`: the queue holding retries delayed by up to that tier.
    pub fn retry_queue(&self, tier: Duration) -> String {
        format!("{}.{}ms", self.retry_queue_prefix, tier.as_millis())
    }

    pub fn retry_queues(&self) -> Vec<String> {
        self.retry_tiers
            .iter()
            .map(|t| self.retry_queue(*t))
            .collect()
    }

    fn queue_type_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        let kind = match self.queue_type {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        };
        args.insert("x-queue-type".into(), long_string(kind));
        args
    }

    /// Every exchange, queue and binding the configuration implies, in the order they
    /// are declared (a queue before its binding, the dead-letter queue before the queues
    /// that dead-letter into it).
    pub fn declarations(&self) -> Vec<Declaration> {
        let mut out = vec![
            Declaration::Exchange {
                name: self.jobs_exchange.clone(),
            },
            Declaration::Exchange {
                name: self.results_exchange.clone(),
            },
            Declaration::Queue {
                name: self.dead_letter_queue.clone(),
                arguments: self.queue_type_args(),
            },
        ];

        // Jobs the broker itself gives up on (rejected without requeue, over a delivery
        // limit) land in the dead-letter queue rather than vanishing.
        let mut jobs_args = self.queue_type_args();
        jobs_args.insert("x-dead-letter-exchange".into(), long_string(""));
        jobs_args.insert(
            "x-dead-letter-routing-key".into(),
            long_string(&self.dead_letter_queue),
        );
        if self.queue_type == QueueType::Quorum {
            // The broker's last resort against poison jobs; the worker acts one delivery
            // earlier so that the job still gets its result (see worker::admit).
            jobs_args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
            );
        }
        out.push(Declaration::Queue {
            name: self.jobs_queue.clone(),
            arguments: jobs_args,
        });
        out.push(Declaration::Binding {
            queue: self.jobs_queue.clone(),
            exchange: self.jobs_exchange.clone(),
            routing_key: "#".to_owned(),
        });

        // One delay queue per backoff tier: a parked retry expires back into the jobs
        // queue (through the default exchange, so only that queue gets it).
        for tier in &self.retry_tiers {
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), long_string("classic"));
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(i64::try_from(tier.as_millis()).unwrap_or(i64::MAX)),
            );
            args.insert("x-dead-letter-exchange".into(), long_string(""));
            args.insert(
                "x-dead-letter-routing-key".into(),
                long_string(&self.jobs_queue),
            );
            out.push(Declaration::Queue {
                name: self.retry_queue(*tier),
                arguments: args,
            });
        }
        out
    }

    /// Declares everything; safe to call again and from every replica.
    pub async fn declare(&self, channel: &Channel) -> anyhow::Result<()> {
        for declaration in self.declarations() {
            declaration.declare(channel).await?;
        }
        Ok(())
    }
}

/// One exchange, queue or binding of the topology. Exchanges are durable topic
/// exchanges without arguments; queues are durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Declaration {
    Exchange {
        name: String,
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
}

impl Declaration {
    /// `exchange pushwoosh.jobs`, `queue pushwoosh.dead`, `binding pushwoosh.jobs -> pushwoosh.jobs (#)`.
    pub fn describe(&self) -> String {
        match self {
            Declaration::Exchange { name } => format!("exchange {name}"),
            Declaration::Queue { name, .. } => format!("queue {name}"),
            Declaration::Binding {
                queue,
                exchange,
                routing_key,
            } => format!("binding {exchange} -> {queue} ({routing_key})"),
        }
    }

    pub async fn declare(&self, channel: &Channel) -> anyhow::Result<()> {
        match self {
            Declaration::Exchange { name } => channel
                .exchange_declare(
                    name.as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
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
        }
    }
}

pub fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

pub fn short(value: &str) -> ShortString {
    ShortString::from(value)
}
