//! The ceiling: the smallest loop that does what the worker must do with the broker for
//! every job, and nothing else: consume (same prefetch, one task per delivery), publish a
//! result of the worker's size to the results exchange with a confirm, then ack. No JSON
//! parsing, no HTTP. It runs as a child process of the bench (like the worker), so its
//! CPU and memory are its own.
//!
//! With a coalescing time (`--ceiling-ack-coalesce-ms`), it acks through the worker's own
//! [`Acks`], so that the two can be compared with the same ack traffic.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use pushwoosh_worker::bench_support::{Acks, Metrics, Settlement};

/// `bench __ceiling <amqp url> <queue> <results exchange> <prefetch> <ack coalesce ms> <hold µs>`
pub const SUBCOMMAND: &str = "__ceiling";

pub fn main(args: &[String]) -> ExitCode {
    let [url, queue, exchange, prefetch, coalesce, hold] = args else {
        eprintln!(
            "usage: bench {SUBCOMMAND} URL QUEUE RESULTS_EXCHANGE PREFETCH ACK_COALESCE_MS HOLD_US"
        );
        return ExitCode::from(2);
    };
    let (Ok(prefetch), Ok(coalesce), Ok(hold)) = (
        prefetch.parse::<u16>(),
        coalesce.parse::<u64>(),
        hold.parse::<u64>(),
    ) else {
        eprintln!("bad prefetch {prefetch:?}, ack coalescing {coalesce:?} or hold {hold:?}");
        return ExitCode::from(2);
    };
    let hold = Duration::from_micros(hold);
    // One runtime thread, as the worker runs by default (`runtime.worker_threads`): it is
    // the cheaper way for both, and the ceiling should be the best such loop.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(url, queue, exchange, prefetch, coalesce, hold)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ceiling: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(
    url: &str,
    queue: &str,
    exchange: &str,
    prefetch: u16,
    coalesce_ms: u64,
    hold: Duration,
) -> anyhow::Result<()> {
    let conn = super::broker::connect(url).await?;
    let publish = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let consume = conn.create_channel().await?;
    consume
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = consume
        .basic_consume(
            queue.into(),
            "bench-ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let acks = (coalesce_ms > 0).then(|| {
        Acks::start(
            consume.clone(),
            Duration::from_millis(coalesce_ms),
            Arc::new(Metrics::new()),
        )
    });
    let held = Arc::new(Held::default());
    println!("ready");
    let exchange: lapin::types::ShortString = exchange.into();
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let publish = publish.clone();
        let exchange = exchange.clone();
        let acks = acks.clone();
        let held = held.clone();
        tokio::spawn(async move {
            if !hold.is_zero() {
                let start = std::time::Instant::now();
                tokio::time::sleep(hold).await;
                held.record(start.elapsed());
            }
            if let Err(e) = settle(&publish, exchange, delivery, acks.as_ref()).await {
                eprintln!("ceiling: {e}");
            }
        });
    }
    Ok(())
}

async fn settle(
    channel: &Channel,
    exchange: lapin::types::ShortString,
    delivery: lapin::message::Delivery,
    acks: Option<&Acks>,
) -> lapin::Result<()> {
    let id = delivery
        .properties
        .message_id()
        .as_ref()
        .map_or("", |s| s.as_str());
    let body = result_body(id);
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_correlation_id(id.into())
        .with_timestamp(0)
        .with_type("push.ok".into());
    let confirm = channel
        .basic_publish(
            exchange,
            "push.ok".into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await?
        .await?;
    if confirm.is_ack() {
        match acks {
            Some(acks) => acks.settle(Settlement::Ack(delivery.delivery_tag)),
            None => {
                delivery.ack(BasicAckOptions::default()).await?;
            }
        }
    }
    Ok(())
}

/// A result event of the same shape and size as the worker's for a push job.
fn result_body(job_id: &str) -> Vec<u8> {
    format!(
        r#"{{"job_id":"{job_id}","kind":"push","outcome":"ok","status_code":200,"status_message":"OK","message_codes":["A3F9-E5ED0793-E6B257D7"],"response":{{"Messages":["A3F9-E5ED0793-E6B257D7"]}},"attempts":1,"application":"ABCDE-12345","received_at":"2026-11-22T23:45:20.966Z","completed_at":"2026-11-22T23:45:20.967Z","redelivered":false}}"#
    )
    .into_bytes()
}

/// How long the ceiling really held its jobs: tokio's timer rounds a sleep up to its
/// next millisecond tick. Written to the ceiling's log every 1,000 jobs.
#[derive(Default)]
struct Held {
    jobs: std::sync::atomic::AtomicU64,
    micros: std::sync::atomic::AtomicU64,
}

impl Held {
    fn record(&self, held: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let micros = self
            .micros
            .fetch_add(held.as_micros() as u64, Relaxed)
            .wrapping_add(held.as_micros() as u64);
        let jobs = self.jobs.fetch_add(1, Relaxed) + 1;
        if jobs.is_multiple_of(1_000) {
            eprintln!(
                "held {jobs} jobs, {:.2} ms each on average",
                micros as f64 / jobs as f64 / 1000.0
            );
        }
    }
}
