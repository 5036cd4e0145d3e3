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

    /// Declares everything; safe to call again and from every replica.
    pub async fn declare(&self, channel: &Channel) -> anyhow::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for exchange in [&self.jobs_exchange, &self.results_exchange] {
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Topic,
                    durable,
                    FieldTable::default(),
                )
                .await
                .with_context(|| format!("declaring exchange {exchange}"))?;
        }

        channel
            .queue_declare(
                self.dead_letter_queue.as_str().into(),
                QueueDeclareOptions::durable(),
                self.queue_type_args(),
            )
            .await
            .with_context(|| self.mismatch_hint(&self.dead_letter_queue))?;

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
            // earlier so that the job still gets its result (see worker::process).
            jobs_args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
            );
        }
        channel
            .queue_declare(
                self.jobs_queue.as_str().into(),
                QueueDeclareOptions::durable(),
                jobs_args,
            )
            .await
            .with_context(|| self.mismatch_hint(&self.jobs_queue))?;
        channel
            .queue_bind(
                self.jobs_queue.as_str().into(),
                self.jobs_exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("binding {} to {}", self.jobs_queue, self.jobs_exchange))?;

        // One delay queue per backoff tier: a parked retry expires back into the jobs
        // queue (through the default exchange, so only that queue gets it).
        for tier in &self.retry_tiers {
            let name = self.retry_queue(*tier);
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
            channel
                .queue_declare(name.as_str().into(), QueueDeclareOptions::durable(), args)
                .await
                .with_context(|| self.mismatch_hint(&name))?;
        }
        Ok(())
    }

    fn mismatch_hint(&self, queue: &str) -> String {
        format!(
            "declaring queue {queue} (if it exists with other arguments, e.g. another queue type, \
             delete it or point amqp.* at other names)"
        )
    }
}

pub fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

pub fn short(value: &str) -> ShortString {
    ShortString::from(value)
}
