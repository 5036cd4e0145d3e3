//! The exchanges and queues the contract names, declared idempotently at start.
//!
//! Jobs are routed by lane. The jobs exchange (topic, as producers know it) is bound with
//! `#` to a lanes exchange (`<jobs exchange>.lanes`, topic), whose alternate exchange is
//! `<jobs exchange>.bulk` (fanout), which feeds the jobs queue. A job whose routing key
//! matches a lane's pattern (`urgent.#`) goes to that lane's queue and only there; every
//! other job is unroutable on the lanes exchange and goes to the jobs queue through the
//! alternate exchange. So any routing key still reaches a queue, and no job reaches two.
//!
//! A deployment made before lanes has the jobs queue bound to the jobs exchange with `#`.
//! Declaring moves it over without losing or doubling a job, in this order: the jobs
//! queue bound to the bulk exchange, the jobs exchange bound to the lanes exchange (for a
//! moment a job has two paths to the jobs queue, and RabbitMQ gives a queue one copy
//! whatever the number of paths), the old `#` binding removed, and only then the lanes'
//! bindings. Every step is idempotent, so every start (and every reopened publish
//! channel) makes sure of it.

mod declaration;
mod migrate;

use std::time::Duration;

use anyhow::Context;
use lapin::Connection;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::retry::RetryPolicy;
use crate::settings::{AmqpSettings, QueueType, Settings};

pub use declaration::{Declaration, ExchangeType, is_not_found};

/// The names the worker uses, derived from the settings.
#[derive(Debug, Clone)]
pub struct Topology {
    pub jobs_exchange: String,
    /// Bound to the jobs exchange with `#`: routes each job to its lane.
    pub lanes_exchange: String,
    /// The lanes exchange's alternate exchange: every job no lane takes.
    pub bulk_exchange: String,
    pub jobs_queue: String,
    pub queue_type: QueueType,
    pub results_exchange: String,
    pub dead_letter_queue: String,
    pub retry_queue_prefix: String,
    pub retry_tiers: Vec<Duration>,
    pub delivery_limit: u32,
    /// The lanes that are on, by name.
    pub lanes: Vec<LaneQueue>,
    /// The lanes configured but off: their bindings are removed, so that their jobs go to
    /// the jobs queue.
    pub lanes_off: Vec<LaneQueue>,
}

/// A lane's queue and the routing pattern that fills it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneQueue {
    pub name: String,
    pub queue: String,
    pub pattern: String,
}

impl Topology {
    pub fn new(settings: &Settings) -> Self {
        Self::of(
            &settings.amqp,
            &RetryPolicy::new(&settings.retry),
            &settings.lanes,
        )
    }

    pub fn of(
        amqp: &AmqpSettings,
        retry: &RetryPolicy,
        lanes: &crate::settings::LanesSettings,
    ) -> Self {
        Self {
            jobs_exchange: amqp.jobs_exchange.clone(),
            lanes_exchange: format!("{}.lanes", amqp.jobs_exchange),
            bulk_exchange: format!("{}.bulk", amqp.jobs_exchange),
            jobs_queue: amqp.jobs_queue.clone(),
            queue_type: amqp.queue_type,
            results_exchange: amqp.results_exchange.clone(),
            dead_letter_queue: amqp.dead_letter_queue.clone(),
            retry_queue_prefix: amqp.retry_queue_prefix.clone(),
            retry_tiers: retry.tiers(),
            delivery_limit: amqp.delivery_limit,
            lanes: lane_queues(amqp, lanes, true),
            lanes_off: lane_queues(amqp, lanes, false),
        }
    }

    /// The queue a lane's jobs come from (`None`: the jobs queue).
    pub fn lane_queue(&self, lane: Option<&str>) -> &str {
        lane.and_then(|name| self.lanes.iter().find(|l| l.name == name))
            .map_or(self.jobs_queue.as_str(), |l| l.queue.as_str())
    }

    /// `pushwoosh.retry.4000ms.held` (`pushwoosh.retry.urgent.4000ms.held` for the urgent
    /// lane): the queue holding retries delayed by up to that tier until a worker gives
    /// them back to their lane's queue.
    pub fn retry_queue(&self, lane: Option<&str>, tier: Duration) -> String {
        format!("{}.held", self.earlier_retry_queue(lane, tier))
    }

    /// The name the same tier's queue had when retries expired back by themselves (a TTL
    /// and dead-lettering): `pushwoosh.retry.4000ms`. Such a queue, left by an earlier
    /// version, still gives its parked jobs back on its own; nothing parks there now.
    pub fn earlier_retry_queue(&self, lane: Option<&str>, tier: Duration) -> String {
        match lane {
            None => format!("{}.{}ms", self.retry_queue_prefix, tier.as_millis()),
            Some(lane) => format!("{}.{lane}.{}ms", self.retry_queue_prefix, tier.as_millis()),
        }
    }

    /// Every tier's queue of an earlier version (see [`Topology::earlier_retry_queue`]).
    pub fn earlier_retry_queues(&self) -> Vec<String> {
        self.lanes_and_tiers()
            .map(|(lane, tier)| self.earlier_retry_queue(lane, tier))
            .collect()
    }

    /// Every retry queue, of every lane.
    pub fn retry_queues(&self) -> Vec<String> {
        self.retry_returns().into_iter().map(|r| r.queue).collect()
    }

    /// Every retry queue with the queue its retries go back to.
    pub fn retry_returns(&self) -> Vec<RetryReturn> {
        self.lanes_and_tiers()
            .map(|(lane, tier)| RetryReturn {
                queue: self.retry_queue(lane, tier),
                back_to: self.lane_queue(lane).to_owned(),
            })
            .collect()
    }

    /// Every lane (`None`: the jobs queue) with every retry tier: one retry queue each.
    fn lanes_and_tiers(&self) -> impl Iterator<Item = (Option<&str>, Duration)> {
        self.lane_names()
            .flat_map(|lane| self.retry_tiers.iter().map(move |t| (lane, *t)))
    }

    /// `None` for the jobs queue, then every lane's name.
    fn lane_names(&self) -> impl Iterator<Item = Option<&str>> {
        std::iter::once(None).chain(self.lanes.iter().map(|l| Some(l.name.as_str())))
    }

    /// Every queue the topology holds.
    pub fn queues(&self) -> Vec<String> {
        let mut out = vec![self.dead_letter_queue.clone(), self.jobs_queue.clone()];
        out.extend(self.lanes.iter().map(|l| l.queue.clone()));
        out.extend(self.retry_queues());
        out
    }

    /// Every exchange the topology holds.
    pub fn exchanges(&self) -> Vec<String> {
        vec![
            self.jobs_exchange.clone(),
            self.lanes_exchange.clone(),
            self.bulk_exchange.clone(),
            self.results_exchange.clone(),
        ]
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

    /// A queue jobs are consumed from (the jobs queue, a lane's queue).
    fn jobs_queue_args(&self) -> FieldTable {
        // Jobs the broker itself gives up on (rejected without requeue, over a delivery
        // limit) land in the dead-letter queue rather than vanishing.
        let mut args = self.queue_type_args();
        args.insert("x-dead-letter-exchange".into(), long_string(""));
        args.insert(
            "x-dead-letter-routing-key".into(),
            long_string(&self.dead_letter_queue),
        );
        if self.queue_type == QueueType::Quorum {
            // The broker's last resort against poison jobs; the worker acts one delivery
            // earlier so that the job still gets its result (see worker::admit).
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
            );
        }
        args
    }

    /// The lanes exchange's arguments: its alternate exchange.
    pub fn lanes_exchange_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert(
            "alternate-exchange".into(),
            long_string(&self.bulk_exchange),
        );
        args
    }

    /// Every exchange, queue and binding the configuration implies, in the order they
    /// are declared (an exchange or queue before its bindings, the dead-letter queue
    /// before the queues that dead-letter into it, the alternate exchange's queue bound
    /// before any lane takes jobs away from it).
    pub fn declarations(&self) -> Vec<Declaration> {
        let topic = |name: &str| Declaration::Exchange {
            name: name.to_owned(),
            kind: ExchangeType::Topic,
            arguments: FieldTable::default(),
        };
        let mut out = vec![
            topic(&self.jobs_exchange),
            Declaration::Exchange {
                name: self.bulk_exchange.clone(),
                kind: ExchangeType::Fanout,
                arguments: FieldTable::default(),
            },
            Declaration::Exchange {
                name: self.lanes_exchange.clone(),
                kind: ExchangeType::Topic,
                arguments: self.lanes_exchange_args(),
            },
            topic(&self.results_exchange),
            Declaration::Queue {
                name: self.dead_letter_queue.clone(),
                arguments: self.queue_type_args(),
            },
            Declaration::Queue {
                name: self.jobs_queue.clone(),
                arguments: self.jobs_queue_args(),
            },
            Declaration::Binding {
                queue: self.jobs_queue.clone(),
                exchange: self.bulk_exchange.clone(),
                routing_key: String::new(),
            },
            Declaration::ExchangeBinding {
                destination: self.lanes_exchange.clone(),
                source: self.jobs_exchange.clone(),
                routing_key: "#".to_owned(),
            },
            // How a deployment before lanes routed every job; gone once the lanes
            // exchange routes them, before any lane takes jobs away from the jobs queue.
            Declaration::Unbinding {
                queue: self.jobs_queue.clone(),
                exchange: self.jobs_exchange.clone(),
                routing_key: "#".to_owned(),
            },
        ];
        out.extend(self.lanes_off.iter().map(|lane| Declaration::Unbinding {
            queue: lane.queue.clone(),
            exchange: self.lanes_exchange.clone(),
            routing_key: lane.pattern.clone(),
        }));
        for lane in &self.lanes {
            out.push(Declaration::Queue {
                name: lane.queue.clone(),
                arguments: self.jobs_queue_args(),
            });
            out.push(Declaration::Binding {
                queue: lane.queue.clone(),
                exchange: self.lanes_exchange.clone(),
                routing_key: lane.pattern.clone(),
            });
        }

        // One queue per backoff tier and lane, holding parked retries until a worker
        // gives each back to its lane's queue when it is due (see worker::returns). Of the
        // configured queue type: a quorum retry queue survives the loss of a node. No TTL
        // and no dead-lettering: RabbitMQ 3.10's at-least-once dead-letter worker could
        // hold expired retries for minutes after losing the node that led both a retry
        // queue and its target (docs/operations.md); the worker's own publish is confirmed
        // and follows the worker's connection wherever it goes. New names, since a quorum
        // queue's arguments cannot change: the earlier TTL queues drain by themselves.
        // Dead-lettering into the lane's queue only for what the broker itself gives up
        // on: nothing on 3.10, but RabbitMQ 4 gives quorum queues a delivery limit of 20
        // by default, and a retry given back to its retry queue that often (its holders
        // lost) then goes back to its lane early instead of being dropped.
        for retry in self.retry_returns() {
            let mut args = self.queue_type_args();
            args.insert("x-dead-letter-exchange".into(), long_string(""));
            args.insert(
                "x-dead-letter-routing-key".into(),
                long_string(&retry.back_to),
            );
            out.push(Declaration::Queue {
                name: retry.queue,
                arguments: args,
            });
        }
        out
    }

    /// Declares everything, in order; safe to call again and from every replica. A
    /// classic retry queue is moved over to a quorum one when quorum is configured
    /// (`migrate`).
    pub async fn declare(&self, conn: &Connection) -> anyhow::Result<()> {
        let channel = conn.create_channel().await.context("opening a channel")?;
        let returns = self.retry_returns();
        for declaration in self.declarations() {
            let retry = match &declaration {
                Declaration::Queue { name, .. } => returns.iter().find(|r| r.queue == *name),
                _ => None,
            };
            match (&declaration, retry) {
                // Removing what is not there is no error, but a queue that is not there
                // (a lane never turned on) closes the channel: one of its own.
                (Declaration::Unbinding { .. }, _) => {
                    declaration.undo_on_own_channel(conn).await?;
                }
                // A classic retry queue refuses the quorum declaration and closes the
                // channel: one of its own.
                (_, Some(retry)) if self.queue_type == QueueType::Quorum => {
                    migrate::declare_retry_queue(conn, &declaration, retry).await?;
                }
                _ => declaration.declare(&channel).await?,
            }
        }
        let _ = channel.close(200, "declared".into()).await;
        Ok(())
    }
}

/// A retry queue and the queue (a lane's, or the jobs queue) its retries go back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryReturn {
    pub queue: String,
    pub back_to: String,
}

/// The lanes configured on (`on`) or off, with their queue and pattern.
fn lane_queues(
    amqp: &AmqpSettings,
    lanes: &crate::settings::LanesSettings,
    on: bool,
) -> Vec<LaneQueue> {
    lanes
        .iter()
        .filter(|(_, lane)| lane.enabled == on)
        .map(|(name, lane)| LaneQueue {
            name: name.clone(),
            queue: if lane.queue.is_empty() {
                format!("{}.{name}", amqp.jobs_queue)
            } else {
                lane.queue.clone()
            },
            pattern: if lane.pattern.is_empty() {
                format!("{name}.#")
            } else {
                lane.pattern.clone()
            },
        })
        .collect()
}

pub fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

pub fn short(value: &str) -> ShortString {
    ShortString::from(value)
}

#[cfg(test)]
mod tests;
