//! `pushwoosh-worker replay`: moves dead letters from the dead-letter queue back to the
//! jobs exchange, so that the worker processes them again (after a Pushwoosh outage, a
//! token fix, ...): all of them, or those matching `--kind`, `--reason` and age filters.
//!
//! Nothing is lost, whatever happens. Each dead letter is taken with `basic.get` without
//! auto-ack, published to the jobs exchange on a confirm-mode channel (mandatory, so an
//! unroutable publish counts as a failure), and acked only once the broker has
//! confirmed the copy. Dead letters that do not match the filters stay unacked while
//! the scan goes on and are handed back (`basic.nack`, requeue) at its end; the scan
//! stops after as many messages as the queue held when it started, so none is visited
//! twice and dead letters arriving meanwhile are left for the next run.
//!
//! Interrupted (Ctrl-C, SIGTERM), it finishes the message in hand, hands the skipped
//! ones back and prints its summary (a second Ctrl-C exits at once). Killed outright or
//! cut off from the broker, every dead letter it had not yet acked returns to the
//! dead-letter queue by itself: the broker requeues the unacked messages of a closed
//! connection. The one window is between the broker's confirm of the copy and the ack
//! of the dead letter: a kill there leaves the job in both queues (a duplicate, never a
//! loss; a `push` or `targeted` job keeps its `transactionId`, so Pushwoosh drops the
//! second send within its de-duplication window).
//!
//! On RabbitMQ 4.0 to 4.2, every requeue of a quorum-queue message counts toward the
//! queue's delivery limit (20 by default), and a dead-letter queue has no dead-letter
//! exchange of its own: a dead letter skipped by some twenty filtered runs would be
//! dropped. There, give the dead-letter queue a policy with `delivery-limit` -1.
//! RabbitMQ 3.x (no default limit) and 4.3+ (a `basic.nack` does not count) are safe.
//!
//! The replayed job is the dead letter's body and properties, its headers minus the
//! ones the dead-lettering added (`x-pushwoosh-dead-*`, `-last-error`, `-kind`,
//! `-job-id`, `-original-*`) and minus its spent retry budget (`x-pushwoosh-attempts`,
//! `-received-at`), plus `x-pushwoosh-replayed-at` and `x-pushwoosh-replay-count`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

use crate::broker::DeadReason;
use crate::broker::publisher::{header_int, header_str, headers};
use crate::broker::{self, Topology};
use crate::job::JobKind;
use crate::settings::Settings;

/// The dead-letter reasons the worker writes, plus `unknown` for a dead letter without
/// one (put there by the broker itself, e.g. a job over the jobs queue's delivery limit).
const REASONS: [&str; DeadReason::ALL.len() + 1] = {
    let mut all = ["unknown"; DeadReason::ALL.len() + 1];
    let mut i = 0;
    while i < DeadReason::ALL.len() {
        all[i] = DeadReason::ALL[i].as_str();
        i += 1;
    }
    all
};

/// Every job kind, plus `unknown` for a body that named none the worker knows.
const KINDS: [&str; JobKind::ALL.len() + 1] = {
    let mut all = ["unknown"; JobKind::ALL.len() + 1];
    let mut i = 0;
    while i < JobKind::ALL.len() {
        all[i] = JobKind::ALL[i].as_str();
        i += 1;
    }
    all
};

/// Routing key of a replayed job whose dead letter does not name its original one.
const FALLBACK_ROUTING_KEY: &str = "replay";

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Unparseable and too-large dead letters are skipped unless `--reason unparseable` or \
`--reason too_large` is given: replaying them as they are would only dead-letter them again. Reason `unknown` is a dead letter \
without the worker's headers (put there by the broker itself).

A replayed job gets a fresh retry budget. Each dead letter is acked only after the \
broker has confirmed its copy on the jobs exchange: on Ctrl-C the run stops after the \
message in hand (exit 130), and whatever was not moved stays in the dead-letter queue, \
even if the process is killed.")]
pub struct ReplayArgs {
    /// Only dead letters of this job kind (repeatable).
    #[arg(long = "kind", value_name = "KIND", value_parser = KINDS)]
    pub kinds: Vec<String>,
    /// Only dead letters dead-lettered for this reason (repeatable). `unparseable` ones
    /// are replayed only when asked for by name.
    #[arg(long = "reason", value_name = "REASON", value_parser = REASONS)]
    pub reasons: Vec<String>,
    /// Only dead letters dead-lettered at least this many seconds ago.
    #[arg(long, value_name = "SECS")]
    pub older_than: Option<u64>,
    /// Only dead letters dead-lettered at most this many seconds ago.
    #[arg(long, value_name = "SECS")]
    pub newer_than: Option<u64>,
    /// Move at most this many dead letters.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Print what would move, and move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Routing key of the replayed jobs (default: the job's original routing key, else
    /// "replay").
    #[arg(long, value_name = "KEY")]
    pub routing_key: Option<String>,
}

pub async fn run(settings: &Settings, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let filter = Filter::new(&args);
    let conn = broker::connect(
        &settings.amqp.url,
        "pushwoosh-worker replay",
        Duration::from_millis(settings.amqp.startup_timeout_ms),
    )
    .await?;
    Topology::new(settings).declare(&conn).await?;
    let setup = conn.create_channel().await?;
    let dead_queue = settings.amqp.dead_letter_queue.as_str();
    let held = setup
        .queue_declare(
            dead_queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("counting the messages in {dead_queue}"))?
        .message_count();
    // basic.get and its acks on one channel, the confirmed publishes on another.
    let getter = conn.create_channel().await?;
    let publisher = conn.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let stop = crate::startup::shutdown_on_signals();
    let second_signal = stop.clone();
    tokio::spawn(async move {
        second_signal.cancelled().await;
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("interrupted again: exiting; dead letters not yet moved stay where they were");
        std::process::exit(130);
    });

    let verb = if args.dry_run { "would move" } else { "moved" };
    let limit = args.limit.unwrap_or(u64::MAX);
    let (mut seen, mut moved, mut skipped) = (0u64, 0u64, 0u64);
    let mut hand_back = Vec::new();
    let mut failure = None;
    while seen < u64::from(held) && moved < limit && !stop.is_cancelled() {
        let message = match getter
            .basic_get(dead_queue.into(), BasicGetOptions { no_ack: false })
            .await
        {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(e) => {
                failure = Some(anyhow::Error::new(e).context(format!("basic.get on {dead_queue}")));
                break;
            }
        };
        seen += 1;
        let delivery = message.delivery;
        let now = now_ms();
        let letter = Letter::of(&delivery.properties);
        if !filter.matches(&letter, now) {
            skipped += 1;
            hand_back.push(delivery.acker);
            continue;
        }
        if args.dry_run {
            hand_back.push(delivery.acker);
        } else {
            let routing_key = args
                .routing_key
                .clone()
                .or_else(|| letter.original_routing_key.clone())
                .filter(|k| !k.is_empty())
                .unwrap_or_else(|| FALLBACK_ROUTING_KEY.to_owned());
            let copy = replay_properties(&delivery.properties, now);
            let published = publish(
                &publisher,
                &settings.amqp.jobs_exchange,
                &routing_key,
                &delivery.data,
                copy,
            )
            .await
            .with_context(|| format!("replaying {}", letter.describe(now)));
            if let Err(e) = published {
                hand_back.push(delivery.acker);
                failure = Some(e);
                break;
            }
            if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                // The copy is in the jobs queue; the dead letter returns to the dead
                // queue when the connection closes: a duplicate, not a loss.
                failure = Some(anyhow::Error::new(e).context(format!(
                    "acking the dead letter of {} after its copy was confirmed \
                     (it may now be both replayed and still dead)",
                    letter.describe(now)
                )));
                break;
            }
        }
        moved += 1;
        println!("{verb} {}", letter.describe(now));
    }

    for acker in hand_back {
        if let Err(e) = acker
            .nack(BasicNackOptions {
                multiple: false,
                requeue: true,
            })
            .await
        {
            // Not fatal: an unacked message goes back when the connection closes.
            tracing::warn!(error = %e, "could not hand a dead letter back; the broker will on close");
        }
    }
    let _ = conn.close(200, "replay done".into()).await;

    println!(
        "{verb} {moved} of {held} dead letter(s) ({skipped} skipped by filters){}",
        if stop.is_cancelled() {
            "; interrupted"
        } else {
            ""
        }
    );
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(if stop.is_cancelled() {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// Publishes one copy and waits for the broker's confirm; unroutable or refused is an error.
async fn publish(
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

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What a dead letter's headers say about it.
#[derive(Debug, Clone, PartialEq)]
struct Letter {
    job_id: Option<String>,
    kind: String,
    reason: String,
    dead_at_ms: Option<i64>,
    original_routing_key: Option<String>,
}

impl Letter {
    fn of(properties: &BasicProperties) -> Self {
        let job_id = header_str(properties, headers::JOB_ID).or_else(|| {
            properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str().to_owned())
        });
        Self {
            job_id,
            kind: header_str(properties, headers::KIND).unwrap_or_else(|| "unknown".into()),
            reason: header_str(properties, headers::DEAD_REASON)
                .unwrap_or_else(|| "unknown".into()),
            dead_at_ms: header_int(properties, headers::DEAD_AT),
            original_routing_key: header_str(properties, headers::ORIGINAL_ROUTING_KEY),
        }
    }

    /// `job 'ID' (kind, reason, dead Ns ago)`.
    fn describe(&self, now_ms: i64) -> String {
        let id = match &self.job_id {
            Some(id) => format!("'{id}'"),
            None => "<no id>".to_owned(),
        };
        let age = match self.dead_at_ms {
            Some(at) => format!("dead {}s ago", (now_ms - at).max(0) / 1000),
            None => "dead at an unknown time".to_owned(),
        };
        format!("job {id} ({}, {}, {age})", self.kind, self.reason)
    }
}

/// The filters of one run; every one given must match.
#[derive(Debug, Clone, Default)]
struct Filter {
    kinds: Vec<String>,
    reasons: Vec<String>,
    older_than_ms: Option<i64>,
    newer_than_ms: Option<i64>,
}

impl Filter {
    fn new(args: &ReplayArgs) -> Self {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self {
            kinds: args.kinds.clone(),
            reasons: args.reasons.clone(),
            older_than_ms: args.older_than.map(ms),
            newer_than_ms: args.newer_than.map(ms),
        }
    }

    fn matches(&self, letter: &Letter, now_ms: i64) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&letter.kind) {
            return false;
        }
        if self.reasons.is_empty() {
            // Replaying an unparseable or oversized body as it is would only
            // dead-letter it again.
            if DeadReason::parse(&letter.reason).is_some_and(|r| !r.replayable()) {
                return false;
            }
        } else if !self.reasons.contains(&letter.reason) {
            return false;
        }
        // A dead letter without a dead-at matches no age filter.
        let age = letter.dead_at_ms.map(|at| now_ms.saturating_sub(at));
        let old_enough = self
            .older_than_ms
            .is_none_or(|min| age.is_some_and(|age| age >= min));
        let new_enough = self
            .newer_than_ms
            .is_none_or(|max| age.is_some_and(|age| age <= max));
        old_enough && new_enough
    }
}

/// The dead letter's properties for its replayed copy: the dead-lettering's headers and
/// the spent retry budget removed, the replay stamped.
fn replay_properties(original: &BasicProperties, now_ms: i64) -> BasicProperties {
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

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::LongString;

    fn letter(kind: &str, reason: &str, dead_at_ms: Option<i64>) -> Letter {
        Letter {
            job_id: Some("j".into()),
            kind: kind.into(),
            reason: reason.into(),
            dead_at_ms,
            original_routing_key: None,
        }
    }

    fn args(f: impl FnOnce(&mut ReplayArgs)) -> Filter {
        let mut a = ReplayArgs {
            kinds: vec![],
            reasons: vec![],
            older_than: None,
            newer_than: None,
            limit: None,
            dry_run: false,
            routing_key: None,
        };
        f(&mut a);
        Filter::new(&a)
    }

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn no_filter_takes_everything_but_unparseable() {
        let all = args(|_| {});
        assert!(all.matches(&letter("push", "retries_exhausted", Some(NOW)), NOW));
        assert!(all.matches(&letter("sms", "unknown", None), NOW));
        assert!(!all.matches(&letter("unknown", "unparseable", Some(NOW)), NOW));
        let asked = args(|a| a.reasons = vec!["unparseable".into()]);
        assert!(asked.matches(&letter("unknown", "unparseable", Some(NOW)), NOW));
        assert!(!asked.matches(&letter("push", "failed", Some(NOW)), NOW));
    }

    #[test]
    fn kinds_and_reasons_are_alternatives_and_both_must_match() {
        let f = args(|a| {
            a.kinds = vec!["push".into(), "sms".into()];
            a.reasons = vec!["failed".into()];
        });
        assert!(f.matches(&letter("push", "failed", None), NOW));
        assert!(f.matches(&letter("sms", "failed", None), NOW));
        assert!(!f.matches(&letter("whatsapp", "failed", None), NOW));
        assert!(!f.matches(&letter("push", "retries_exhausted", None), NOW));
    }

    #[test]
    fn ages_bound_from_both_sides_and_need_a_dead_at() {
        let f = args(|a| {
            a.older_than = Some(60);
            a.newer_than = Some(3600);
        });
        assert!(f.matches(&letter("push", "failed", Some(NOW - 60_000)), NOW));
        assert!(f.matches(&letter("push", "failed", Some(NOW - 3_600_000)), NOW));
        assert!(!f.matches(&letter("push", "failed", Some(NOW - 59_999)), NOW));
        assert!(!f.matches(&letter("push", "failed", Some(NOW - 3_600_001)), NOW));
        assert!(!f.matches(&letter("push", "failed", None), NOW));
    }

    #[test]
    fn a_replayed_copy_keeps_the_job_and_gets_a_fresh_budget() {
        let mut h = FieldTable::default();
        let s = |v: &str| AMQPValue::LongString(LongString::from(v));
        h.insert("x-trace".into(), s("abc"));
        h.insert(headers::DEAD_REASON.into(), s("retries_exhausted"));
        h.insert(headers::DEAD_AT.into(), AMQPValue::LongLongInt(NOW - 5_000));
        h.insert(headers::LAST_ERROR.into(), s("HTTP 503"));
        h.insert(headers::KIND.into(), s("push"));
        h.insert(headers::JOB_ID.into(), s("j-1"));
        h.insert(headers::ORIGINAL_EXCHANGE.into(), s("pushwoosh.jobs"));
        h.insert(headers::ORIGINAL_ROUTING_KEY.into(), s("orders.shipped"));
        h.insert(headers::ATTEMPTS.into(), AMQPValue::LongLongInt(5));
        h.insert(
            headers::RECEIVED_AT.into(),
            AMQPValue::LongLongInt(NOW - 9_000),
        );
        h.insert(headers::REPLAY_COUNT.into(), AMQPValue::LongInt(2));
        let original = BasicProperties::default()
            .with_headers(h)
            .with_message_id("m-1".into())
            .with_correlation_id("c-1".into())
            .with_reply_to("answers".into())
            .with_content_type("application/json".into());

        let letter = Letter::of(&original);
        assert_eq!(letter.job_id.as_deref(), Some("j-1"));
        assert_eq!(
            letter.describe(NOW),
            "job 'j-1' (push, retries_exhausted, dead 5s ago)"
        );
        assert_eq!(
            letter.original_routing_key.as_deref(),
            Some("orders.shipped")
        );

        let copy = replay_properties(&original, NOW);
        assert_eq!(copy.message_id().as_ref().unwrap().as_str(), "m-1");
        assert_eq!(copy.correlation_id().as_ref().unwrap().as_str(), "c-1");
        assert_eq!(copy.reply_to().as_ref().unwrap().as_str(), "answers");
        assert_eq!(
            copy.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        let mut keys: Vec<_> = copy
            .headers()
            .as_ref()
            .unwrap()
            .inner()
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "x-pushwoosh-replay-count",
                "x-pushwoosh-replayed-at",
                "x-trace"
            ]
        );
        assert_eq!(header_int(&copy, headers::REPLAY_COUNT), Some(3));
        assert_eq!(header_int(&copy, headers::REPLAYED_AT), Some(NOW));
    }

    #[test]
    fn a_letter_without_headers_is_described_plainly() {
        let bare = Letter::of(&BasicProperties::default());
        assert_eq!(
            bare.describe(NOW),
            "job <no id> (unknown, unknown, dead at an unknown time)"
        );
        let copy = replay_properties(&BasicProperties::default(), NOW);
        assert_eq!(header_int(&copy, headers::REPLAY_COUNT), Some(1));
    }
}
