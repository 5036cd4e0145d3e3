//! `TestApp`: the real worker, built from test settings (names of its own, fast retries)
//! and run in the test's process, with a wiremock Pushwoosh and a watch on its results.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::{BasicProperties, Channel, Connection, Consumer};
use pushwoosh_worker::settings::Settings;
use pushwoosh_worker::startup::Application;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wiremock::MockServer;

use super::broker::{broker_url, uuid_like};
use super::http::{http_get, wait_ready};
use super::metrics::{find_metric, metric};
use super::queues::{Received, cleanup, drain, next_from, observe, publish, publish_job};

pub const TOKEN: &str = "test-token-7f3a";

/// Test settings: unique names, fast retries, a mock API, an ephemeral HTTP port.
pub async fn test_settings(api_base: &str) -> Settings {
    let prefix = format!("t{}", uuid_like());
    let mut s = Settings::default();
    s.amqp.url = broker_url().await;
    s.amqp.jobs_exchange = format!("{prefix}.jobs");
    s.amqp.jobs_queue = format!("{prefix}.jobs");
    s.amqp.results_exchange = format!("{prefix}.results");
    s.amqp.dead_letter_queue = format!("{prefix}.dead");
    s.amqp.retry_queue_prefix = format!("{prefix}.retry");
    // The ledger (on by default) on the machine's Redis, under a prefix of the test's own.
    s.ledger.key_prefix = format!("{prefix}:");
    s.amqp.startup_timeout_ms = 5_000;
    s.pushwoosh.api_url = format!("{api_base}/json/1.3");
    s.pushwoosh.auth_token = Some(TOKEN.into());
    s.pushwoosh.timeout_ms = 2_000;
    s.retry.max_attempts = 3;
    s.retry.initial_delay_ms = 20;
    s.retry.max_delay_ms = 100;
    s.retry.max_elapsed_ms = 30_000;
    s.http.listen = "127.0.0.1:0".into();
    s.shutdown.grace_period_ms = 5_000;
    // Tests of anything but the limiter should not be paced at 10 calls a second;
    // tests/rate_limit.rs turns it on.
    s.rate_limit.enabled = false;
    s
}

/// A running worker with its broker side and its mock Pushwoosh.
pub struct TestApp {
    pub settings: Settings,
    pub mock: MockServer,
    pub http_addr: SocketAddr,
    pub conn: Connection,
    pub channel: Channel,
    results: Consumer,
    shutdown: CancellationToken,
    worker: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let mock = MockServer::start().await;
        let mut settings = test_settings(&mock.uri()).await;
        configure(&mut settings);
        Self::start(mock, settings).await
    }

    /// A worker on given settings and mock (e.g. a second worker after a first one).
    pub async fn start(mock: MockServer, settings: Settings) -> Self {
        let app = Application::build(settings.clone())
            .await
            .expect("the worker starts");
        let http_addr = app.http_addr();
        // Watch the results before the worker runs: jobs may already be waiting.
        let (conn, channel, results) = observe(&settings).await;
        let shutdown = CancellationToken::new();
        let worker = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let app = Self {
            settings,
            mock,
            http_addr,
            conn,
            channel,
            results,
            shutdown,
            worker: Some(worker),
        };
        app.wait_ready().await;
        app
    }

    pub async fn wait_ready(&self) {
        assert!(
            wait_ready(self.http_addr, Duration::from_secs(5)).await,
            "the worker never became ready"
        );
    }

    /// Publishes a job (a JSON value) to the jobs exchange, confirmed.
    pub async fn publish_job(&self, job: &Value) {
        publish_job(&self.channel, &self.settings, job).await;
    }

    pub async fn publish_raw(&self, body: &[u8], properties: BasicProperties) {
        publish(
            &self.channel,
            &self.settings.amqp.jobs_exchange,
            "jobs.test",
            body,
            properties,
        )
        .await;
    }

    /// The next result event, or a panic after `timeout`.
    pub async fn next_result(&mut self, timeout: Duration) -> Received {
        next_from(&mut self.results, timeout).await
    }

    /// No result arrives within `wait`.
    pub async fn assert_no_result(&mut self, wait: Duration) {
        if let Ok(Some(Ok(d))) = tokio::time::timeout(wait, self.results.next()).await {
            panic!("unexpected result: {}", String::from_utf8_lossy(&d.data));
        }
    }

    /// Everything in the dead-letter queue right now.
    pub async fn dead_letters(&self) -> Vec<lapin::message::Delivery> {
        drain(&self.channel, &self.settings.amqp.dead_letter_queue).await
    }

    pub async fn metrics(&self) -> String {
        http_get(self.http_addr, "/metrics").await.1
    }

    /// /metrics shows every one of these `series value` lines within a second (the last
    /// result can arrive before its job is acked and counted); returns the text. Each
    /// series is read with [`metric`]: a value is compared whole (`… 2` is not `… 20`),
    /// and a series that is not there fails the test.
    pub async fn assert_metrics(&self, expected: &[&str]) -> String {
        let expected: Vec<(&str, f64)> = expected
            .iter()
            .map(|line| {
                let (series, value) = line
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("{line}: not `series value`"));
                let value = value
                    .parse()
                    .unwrap_or_else(|_| panic!("{line}: {value} is not a number"));
                (series, value)
            })
            .collect();
        let mut metrics = String::new();
        for _ in 0..50 {
            metrics = self.metrics().await;
            if expected
                .iter()
                .all(|(series, value)| find_metric(&metrics, series) == Some(*value))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for (series, value) in expected {
            assert_eq!(metric(&metrics, series), value, "{series} in\n{metrics}");
        }
        metrics
    }

    /// Requests the mock received for one method.
    pub async fn calls_to(&self, method: &str) -> Vec<Value> {
        let path = format!("/json/1.3/{method}");
        self.mock
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == path)
            .map(|r| serde_json::from_slice(&r.body).expect("the worker sends JSON"))
            .collect()
    }

    pub async fn total_calls(&self) -> usize {
        self.mock
            .received_requests()
            .await
            .unwrap_or_default()
            .len()
    }

    /// Stops the worker gracefully, keeping its queues, and hands back its mock.
    pub async fn stop_keeping_queues(mut self) -> (Settings, MockServer) {
        self.stop().await;
        let settings = self.settings.clone();
        // Skip the cleanup in Drop: the queues outlive this worker.
        self.settings.amqp.jobs_queue.clear();
        self.settings.amqp.dead_letter_queue.clear();
        self.settings.amqp.retry_queue_prefix =
            format!("{}.gone", settings.amqp.retry_queue_prefix);
        self.settings.amqp.jobs_exchange.clear();
        self.settings.amqp.results_exchange.clear();
        let mock = std::mem::replace(&mut self.mock, MockServer::start().await);
        (settings, mock)
    }

    /// Stops the worker gracefully and waits for it.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(worker) = self.worker.take() {
            tokio::time::timeout(Duration::from_secs(30), worker)
                .await
                .expect("the worker stops within 30 s")
                .expect("the worker task")
                .expect("the worker exits cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        cleanup(&self.settings);
    }
}
