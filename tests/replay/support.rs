//! The replay tests' harness: the binary run as an operator would, and queues without a worker.

use std::process::Stdio;
use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use pushwoosh_worker::broker::Topology;
use pushwoosh_worker::broker::publisher::headers;
use pushwoosh_worker::settings::Settings;
use serde_json::json;

use crate::common::{self, cleanup, drain, publish, test_settings};

pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// The binary with the test's names and fast retries in its environment.
pub(crate) fn replay(settings: &Settings, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushwoosh-worker"));
    cmd.arg("replay").args(args);
    common::point_at_test_names(&mut cmd, settings);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `replay ARGS` to its end; returns (exit code, stdout).
pub(crate) async fn run_replay(settings: &Settings, args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::time::timeout(Duration::from_secs(30), replay(settings, args).output())
        .await
        .expect("replay finishes within 30 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "replay {args:?} failed: {stdout}\n{stderr}"
    );
    (out.status.code(), stdout)
}

/// Broker-side fixture without a worker: replayed jobs stay in the jobs queue to be looked at.
pub(crate) struct Queues {
    pub(crate) settings: Settings,
    _conn: Connection,
    pub(crate) channel: Channel,
}

impl Queues {
    pub(crate) async fn new() -> Self {
        let settings = test_settings("http://127.0.0.1:9").await;
        let conn = Connection::connect(&settings.amqp.url, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        channel.confirm_select(Default::default()).await.unwrap();
        Topology::new(&settings).declare(&conn).await.unwrap();
        Self {
            settings,
            _conn: conn,
            channel,
        }
    }

    /// Puts a dead letter in the dead queue, with the headers the worker writes.
    pub(crate) async fn dead(&self, id: &str, kind: &str, reason: &str, dead_secs_ago: i64) {
        let mut h = FieldTable::default();
        let s = |v: &str| AMQPValue::LongString(LongString::from(v));
        h.insert("x-trace".into(), s(&format!("trace-{id}")));
        h.insert(headers::DEAD_REASON.into(), s(reason));
        h.insert(headers::LAST_ERROR.into(), s("HTTP 503"));
        h.insert(headers::KIND.into(), s(kind));
        h.insert(headers::JOB_ID.into(), s(id));
        h.insert(headers::ATTEMPTS.into(), AMQPValue::LongLongInt(3));
        h.insert(
            headers::RECEIVED_AT.into(),
            AMQPValue::LongLongInt(chrono::Utc::now().timestamp_millis() - 99_000),
        );
        h.insert(
            headers::DEAD_AT.into(),
            AMQPValue::LongLongInt(chrono::Utc::now().timestamp_millis() - dead_secs_ago * 1000),
        );
        h.insert(
            headers::ORIGINAL_EXCHANGE.into(),
            s(&self.settings.amqp.jobs_exchange),
        );
        h.insert(headers::ORIGINAL_ROUTING_KEY.into(), s("orders.shipped"));
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(id.into())
            .with_correlation_id(format!("corr-{id}").as_str().into())
            .with_reply_to("answers".into())
            .with_headers(h);
        let body = json!({"id": id, "kind": kind, "message": "M"}).to_string();
        publish(
            &self.channel,
            "",
            &self.settings.amqp.dead_letter_queue,
            body.as_bytes(),
            properties,
        )
        .await;
    }

    async fn dead_count(&self) -> u32 {
        common::queue_depth(&self.channel, &self.settings.amqp.dead_letter_queue).await
    }

    async fn jobs_count(&self) -> u32 {
        common::queue_depth(&self.channel, &self.settings.amqp.jobs_queue).await
    }

    /// (jobs, dead) once they add up to at least `total`, or as they are after a while:
    /// a quorum queue counts the requeued messages of a closed channel a moment later.
    pub(crate) async fn settle(&self, total: usize) -> (usize, usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let jobs = self.jobs_count().await as usize;
            let dead = self.dead_count().await as usize;
            if jobs + dead >= total || tokio::time::Instant::now() > deadline {
                return (jobs, dead);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the dead queue holds `n` (the handed-back ones are back).
    pub(crate) async fn wait_dead(&self, n: u32) {
        for _ in 0..300 {
            if self.dead_count().await == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the dead queue never held {n}");
    }

    pub(crate) async fn take_jobs(&self) -> Vec<lapin::message::Delivery> {
        drain(&self.channel, &self.settings.amqp.jobs_queue).await
    }

    pub(crate) async fn take_dead(&self) -> Vec<lapin::message::Delivery> {
        drain(&self.channel, &self.settings.amqp.dead_letter_queue).await
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        cleanup(&self.settings);
    }
}

pub(crate) fn ids(deliveries: &[lapin::message::Delivery]) -> Vec<String> {
    let mut ids: Vec<_> = deliveries
        .iter()
        .map(|d| d.properties.message_id().as_ref().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}
