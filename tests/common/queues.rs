//! A test's exchanges and queues on the broker: declared, published to, looked into,
//! read and deleted, without a worker in between.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use pushwoosh_worker::settings::Settings;
use serde_json::Value;

use super::broker::uuid_like;

/// One result event as received from the results exchange.
#[derive(Debug)]
pub struct Received {
    pub body: Value,
    pub routing_key: String,
    pub properties: BasicProperties,
}

/// Deletes a test's queues and exchanges (best effort, also after a failed test).
pub fn cleanup(settings: &Settings) {
    let s = settings.clone();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let Ok(conn) = Connection::connect(&s.amqp.url, ConnectionProperties::default()).await
            else {
                return;
            };
            let Ok(ch) = conn.create_channel().await else {
                return;
            };
            let topology = pushwoosh_worker::broker::Topology::new(&s);
            for q in topology.queues() {
                let _ = ch
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
            for e in &topology.exchanges() {
                let _ = ch
                    .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
                    .await;
            }
            let _ = conn.close(200, "cleanup".into()).await;
        });
    })
    .join();
}

/// Declares a test's topology before any worker runs (to seed its queues).
pub async fn declare_topology(settings: &Settings) {
    declare_topology_on(&settings.amqp.url, settings).await;
}

/// [`declare_topology`] through the broker at `url` (a cluster's node: its quorum
/// queues are then led there).
pub async fn declare_topology_on(url: &str, settings: &Settings) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    pushwoosh_worker::broker::Topology::new(settings)
        .declare(&conn)
        .await
        .unwrap();
    let _ = conn.close(200, "declared".into()).await;
}

/// The retry queues (one a delay tier) of a test's topology.
pub fn retry_queues(settings: &Settings) -> Vec<String> {
    pushwoosh_worker::broker::Topology::new(settings).retry_queues()
}

/// How many retries are parked in the broker now, over every retry queue.
pub async fn parked_retries(channel: &Channel, settings: &Settings) -> u32 {
    let mut parked = 0;
    for queue in retry_queues(settings) {
        parked += queue_depth(channel, &queue).await;
    }
    parked
}

/// How many messages a queue holds now.
pub async fn queue_depth(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count()
}

/// Waits until `queue` holds `expected` ready messages, and returns what it holds then or
/// after `within`. Messages given back by a stopping worker (nack, or its connection's
/// close) are requeued by the broker asynchronously (through the Raft log for a quorum
/// queue): a single look right after the worker exits can come too early.
pub async fn queue_depth_reaches(
    channel: &Channel,
    queue: &str,
    expected: u32,
    within: Duration,
) -> u32 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let depth = queue_depth(channel, queue).await;
        if depth == expected || tokio::time::Instant::now() >= deadline {
            return depth;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A connection of the test's own to its broker.
pub async fn amqp_connection(settings: &Settings) -> Connection {
    Connection::connect(&settings.amqp.url, ConnectionProperties::default())
        .await
        .expect("test connection")
}

/// A connection of the test's own and a channel on it in confirm mode.
pub async fn confirm_channel(settings: &Settings) -> (Connection, Channel) {
    let conn = amqp_connection(settings).await;
    let channel = conn.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (conn, channel)
}

/// A confirm-mode channel and a consumer of every result (an exclusive queue bound `#`).
pub async fn observe(settings: &Settings) -> (Connection, Channel, Consumer) {
    let (conn, channel) = confirm_channel(settings).await;
    let results =
        pushwoosh_worker::broker::watch_results(&channel, &settings.amqp.results_exchange)
            .await
            .unwrap();
    (conn, channel, results)
}

/// The next result event from `consumer`, or a panic after `timeout`.
pub async fn next_from(consumer: &mut Consumer, timeout: Duration) -> Received {
    let delivery = tokio::time::timeout(timeout, consumer.next())
        .await
        .unwrap_or_else(|_| panic!("no result within {timeout:?}"))
        .expect("consumer open")
        .expect("delivery");
    Received {
        body: serde_json::from_slice(&delivery.data).expect("results are JSON"),
        routing_key: delivery.routing_key.as_str().to_owned(),
        properties: delivery.properties,
    }
}

/// The next `n` results from `consumer`, each `ok` and each for a job of its own (a
/// second result for a job fails the test), by job id; each waited for at most `timeout`.
pub async fn one_ok_result_each(
    consumer: &mut Consumer,
    n: usize,
    timeout: Duration,
) -> std::collections::HashMap<String, Value> {
    let mut by_job = std::collections::HashMap::new();
    for _ in 0..n {
        let r = next_from(consumer, timeout).await.body;
        assert_eq!(r["outcome"], "ok", "{r}");
        let job = r["job_id"].as_str().expect("a job id").to_owned();
        if let Some(first) = by_job.insert(job, r.clone()) {
            panic!("two results for one job: {first} and {r}");
        }
    }
    by_job
}

/// Publishes a message, confirmed by the broker.
pub async fn publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "the broker confirmed the job");
}

/// JSON, persistent: the properties of a producer's job.
pub fn json_props() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
}

/// Gets (and acks) every message in a queue.
pub async fn drain(channel: &Channel, queue: &str) -> Vec<lapin::message::Delivery> {
    let mut out = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .expect("basic.get")
    {
        message
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        out.push(message.delivery);
    }
    out
}

/// Publishes a job (a JSON value) to the jobs exchange of `settings`, confirmed.
pub async fn publish_job(channel: &Channel, settings: &Settings, job: &Value) {
    publish(
        channel,
        &settings.amqp.jobs_exchange,
        "jobs.test",
        &serde_json::to_vec(job).unwrap(),
        json_props(),
    )
    .await;
}

/// A header of a message as a string, as the worker reads and writes them.
pub fn header_str(properties: &BasicProperties, key: &str) -> Option<String> {
    pushwoosh_worker::broker::publisher::header_str(properties, key)
}

/// Consumes a queue without acks (each delivery is settled when sent), for reading.
pub async fn consume_all(channel: &Channel, queue: &str) -> Consumer {
    channel
        .basic_consume(
            queue.into(),
            format!("test-{}", uuid_like()).as_str().into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consuming the queue")
}
