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

use anyhow::Context;
use lapin::Acker;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;

use crate::broker::{self, Topology};
use crate::settings::Settings;

mod cli;
mod republish;
mod selection;
#[cfg(test)]
mod tests;

pub use cli::ReplayArgs;
use republish::{publish, replay_properties};
use selection::{Filter, Letter};

pub async fn run(settings: &Settings, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let filter = Filter::new(&args);
    let conn = broker::connect(
        &settings.amqp,
        "pushwoosh-worker replay",
        Duration::from_millis(settings.amqp.startup_timeout_ms),
    )
    .await?
    .connection;
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

    let verb = cli::verb(args.dry_run);
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
            let routing_key = republish::routing_key(args.routing_key.as_deref(), &letter);
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

    hand_back_all(hand_back).await;
    let _ = conn.close(200, "replay done".into()).await;

    println!(
        "{}",
        cli::summary(verb, moved, held, skipped, stop.is_cancelled())
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

/// Hands the dead letters left in hand back to the dead-letter queue (`basic.nack`, requeue).
async fn hand_back_all(ackers: Vec<Acker>) {
    for acker in ackers {
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
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
