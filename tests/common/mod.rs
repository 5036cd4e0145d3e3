//! Test harness: a real RabbitMQ (found, never skipped), a wiremock Pushwoosh, and the
//! real worker built from settings with names of its own, so tests run side by side.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use pushwoosh_worker::settings::Settings;
use pushwoosh_worker::startup::Application;
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wiremock::MockServer;

pub const TOKEN: &str = "test-token-7f3a";

struct Broker {
    url: String,
    _container: Option<Box<dyn std::any::Any + Send + Sync>>,
}

static BROKER: OnceCell<Broker> = OnceCell::const_new();

/// The broker: `AMQP_URL`, else one answering on 127.0.0.1:5672, else a testcontainer.
/// No broker is a failure, never a skip.
pub async fn broker_url() -> String {
    BROKER
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("AMQP_URL") {
                return Broker {
                    url,
                    _container: None,
                };
            }
            let local = "127.0.0.1:5672".parse::<SocketAddr>().unwrap();
            if std::net::TcpStream::connect_timeout(&local, Duration::from_secs(1)).is_ok() {
                return Broker {
                    url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
                    _container: None,
                };
            }
            start_container().await
        })
        .await
        .url
        .clone()
}

async fn start_container() -> Broker {
    use testcontainers::GenericImage;
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::AsyncRunner;
    let container = GenericImage::new("rabbitmq", "3.13-management")
        .with_exposed_port(5672.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Server startup complete"))
        .start()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no RabbitMQ for the tests: AMQP_URL is unset, nothing answers on \
                 127.0.0.1:5672, and testcontainers could not start one ({e}). \
                 Start RabbitMQ (rabbitmq-server -detached) or set AMQP_URL."
            )
        });
    let port = container
        .get_host_port_ipv4(5672)
        .await
        .expect("container port");
    Broker {
        url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        _container: Some(Box::new(container)),
    }
}

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

fn uuid_like() -> String {
    format!("{:016x}", fastrand::u64(..))
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

/// One result event as received from the results exchange.
#[derive(Debug)]
pub struct Received {
    pub body: Value,
    pub routing_key: String,
    pub properties: BasicProperties,
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
            let mut queues = vec![s.amqp.jobs_queue.clone(), s.amqp.dead_letter_queue.clone()];
            queues.extend(retry_queues(&s));
            for q in queues {
                let _ = ch
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
            for e in [&s.amqp.jobs_exchange, &s.amqp.results_exchange] {
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
    let conn = Connection::connect(&settings.amqp.url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let policy = pushwoosh_worker::retry::RetryPolicy::new(&settings.retry);
    pushwoosh_worker::broker::Topology::new(&settings.amqp, &policy)
        .declare(&channel)
        .await
        .unwrap();
    let _ = conn.close(200, "declared".into()).await;
}

/// The retry queues (one a delay tier) of a test's topology.
pub fn retry_queues(settings: &Settings) -> Vec<String> {
    let policy = pushwoosh_worker::retry::RetryPolicy::new(&settings.retry);
    pushwoosh_worker::broker::Topology::new(&settings.amqp, &policy).retry_queues()
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

/// A confirm-mode channel and a consumer of every result (an exclusive queue bound `#`).
pub async fn observe(settings: &Settings) -> (Connection, Channel, Consumer) {
    let conn = Connection::connect(&settings.amqp.url, ConnectionProperties::default())
        .await
        .expect("test connection");
    let channel = conn.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let results =
        pushwoosh_worker::broker::watch_results(&channel, &settings.amqp.results_exchange)
            .await
            .unwrap();
    (conn, channel, results)
}

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

/// A minimal HTTP GET, returning (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    match reqwest::get(url).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// A Pushwoosh success answer.
/// Whether the worker listening on `addr` answers /readyz with 200 within `within`
/// (polled every 50 ms).
pub async fn wait_ready(addr: SocketAddr, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if http_get(addr, "/readyz").await.0 == 200 {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A local address with a port free right now, for a worker's HTTP listener that a test
/// must know in advance.
pub fn free_local_addr() -> SocketAddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn ok_answer(response: Value) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "status_code": 200, "status_message": "OK", "response": response
    }))
}

pub fn header_str(properties: &BasicProperties, key: &str) -> Option<String> {
    pushwoosh_worker::broker::publisher::header_str(properties, key)
}

/// The real binary, configured through the environment like an operator would.
pub fn worker_command(settings: &Settings) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushwoosh-worker"));
    cmd.arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("PUSHWOOSH_API_URL", &settings.pushwoosh.api_url)
        .env("PUSHWOOSH_AUTH_TOKEN", TOKEN)
        .env("PUSHWOOSH_WORKER__HTTP__LISTEN", "127.0.0.1:0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log_file(&settings.amqp.jobs_queue))
        .kill_on_drop(true);
    point_at_test_names(&mut cmd, settings);
    cmd
}

/// Where a test's worker writes its log: `target/test-logs/<jobs queue>.log`, to read
/// after a failure. A pipe nobody reads would stop the worker once it filled up. A test
/// that reads the log itself sets `stderr(Stdio::piped())`.
fn log_file(name: &str) -> std::process::Stdio {
    let path = log_path(name);
    std::fs::create_dir_all(path.parent().unwrap()).expect("a directory for the workers' logs");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("a log file");
    file.into()
}

/// The log of the workers started with `worker_command` for these settings.
pub fn worker_log(settings: &Settings) -> String {
    std::fs::read_to_string(log_path(&settings.amqp.jobs_queue)).unwrap_or_default()
}

fn log_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("test-logs")
        .join(format!("{name}.log"))
}

/// The worker's exit status; a worker that has not exited within `within` fails the test
/// (and is killed) instead of hanging it.
pub async fn exit_status(
    child: &mut tokio::process::Child,
    within: Duration,
) -> std::process::ExitStatus {
    match tokio::time::timeout(within, child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = child.kill().await;
            panic!(
                "the worker did not exit within {within:?} (its log: {}/test-logs/)",
                env!("CARGO_TARGET_TMPDIR")
            );
        }
    }
}

/// Sends SIGTERM, as an orchestrator would.
pub async fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

/// Points a command of the binary at a test's broker, names and timings, through the
/// environment as an operator would.
pub fn point_at_test_names(cmd: &mut tokio::process::Command, settings: &Settings) {
    let a = &settings.amqp;
    cmd.env_remove("PUSHWOOSH_WORKER_CONFIG")
        .env("AMQP_URL", &a.url);
    for (key, value) in [
        ("AMQP__JOBS_EXCHANGE", a.jobs_exchange.clone()),
        ("AMQP__JOBS_QUEUE", a.jobs_queue.clone()),
        ("AMQP__RESULTS_EXCHANGE", a.results_exchange.clone()),
        ("AMQP__DEAD_LETTER_QUEUE", a.dead_letter_queue.clone()),
        ("AMQP__RETRY_QUEUE_PREFIX", a.retry_queue_prefix.clone()),
        ("AMQP__STARTUP_TIMEOUT_MS", a.startup_timeout_ms.to_string()),
        (
            "RETRY__INITIAL_DELAY_MS",
            settings.retry.initial_delay_ms.to_string(),
        ),
        (
            "RETRY__MAX_DELAY_MS",
            settings.retry.max_delay_ms.to_string(),
        ),
        (
            "SHUTDOWN__GRACE_PERIOD_MS",
            settings.shutdown.grace_period_ms.to_string(),
        ),
        (
            "RATE_LIMIT__ENABLED",
            settings.rate_limit.enabled.to_string(),
        ),
        ("BATCH__ENABLED", settings.batch.enabled.to_string()),
        ("BATCH__LINGER_MS", settings.batch.linger_ms.to_string()),
        (
            "BATCH__BUSY_LINGER_MS",
            settings.batch.busy_linger_ms.to_string(),
        ),
    ] {
        cmd.env(format!("PUSHWOOSH_WORKER__{key}"), value);
    }
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

/// A mock Pushwoosh that answers every call with success and one message code.
pub async fn answering_ok() -> MockServer {
    let mock = MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ok_answer(serde_json::json!({"Messages": ["C"]})))
        .mount(&mock)
        .await;
    mock
}

/// The value of one series (`name{labels}`, as the worker writes it) in /metrics text; a
/// series that is not there fails the test, so a renamed metric cannot pass a `== 0`.
pub fn metric(text: &str, series: &str) -> f64 {
    find_metric(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// [`metric`] for a series born at its first count (e.g. `api_calls_total` of one
/// `status`): 0 while it is absent. Its metric must be in the text all the same (its
/// `# TYPE` line, written once any of its series exists), so a renamed metric still fails
/// the test.
pub fn metric_or_zero(text: &str, series: &str) -> f64 {
    let name = series.split('{').next().unwrap_or(series);
    let family = ["_total", "_sum", "_count", "_bucket"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .into_iter()
        .chain([name]);
    let served = family
        .into_iter()
        .any(|family| text.contains(&format!("\n# TYPE {family} ")));
    assert!(served, "no metric {name} in\n{text}");
    find_metric(text, series).unwrap_or(0.0)
}

/// The value of `series` if the text has it (for polling; a test asserts with [`metric`]).
fn find_metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The transactionIds of a call's notifications (several when jobs were batched).
pub fn transaction_ids(body: &[u8]) -> Vec<Value> {
    serde_json::from_slice::<Value>(body).unwrap()["request"]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["transactionId"].clone())
        .collect()
}

/// Notifications a mock received so far, however they were batched into calls.
pub async fn notifications_sent(mock: &MockServer) -> usize {
    let requests = mock.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .map(|r| transaction_ids(&r.body).len())
        .sum()
}

/// The application of the jobs built here unless a test names another.
pub const APPLICATION: &str = "A-B";

/// A push job for application [`APPLICATION`] with one notification: the job most tests
/// need.
pub fn push_job(id: &str) -> Value {
    push(id, vec![default_notification()])
}

/// [`push_job`] for another application (calls are batched, and mocks can answer, by
/// application).
pub fn push_job_for(application: &str, id: &str) -> Value {
    let mut job = push_job(id);
    job["application"] = application.into();
    job
}

/// [`push_job`] whose notification has these fields too, or instead of the default ones
/// (`{"content": "refused"}`).
pub fn push_with(id: &str, fields: Value) -> Value {
    let mut notification = default_notification();
    for (key, value) in fields
        .as_object()
        .expect("notification fields are an object")
    {
        notification[key] = value.clone();
    }
    push(id, vec![notification])
}

/// [`push_job`] with `count` notifications (each gets a transactionId of its own).
pub fn push_with_notifications(id: &str, count: usize) -> Value {
    push(id, vec![default_notification(); count])
}

fn default_notification() -> Value {
    serde_json::json!({"send_date": "now", "content": "x"})
}

fn push(id: &str, notifications: Vec<Value>) -> Value {
    serde_json::json!({"id": id, "kind": "push", "application": APPLICATION,
        "notifications": notifications})
}

/// Runs `rabbitmqctl` against the machine's broker; a failure fails the test.
pub fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (the tests need the machine's RabbitMQ and its CLI)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A vhost of the test's own on the machine's broker, with a user of its own, so that a
/// test can change permissions without touching any other test. Deleted on drop.
pub struct IsolatedVhost {
    pub name: String,
    pub user: String,
    /// The broker URL as the vhost's user.
    pub url: String,
}

impl IsolatedVhost {
    pub fn create() -> Self {
        let name = format!("pwt-{}", uuid_like());
        let user = format!("{name}-user");
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["add_user", &user, "secret"]);
        rabbitmqctl(&["set_permissions", "-p", &name, &user, ".*", ".*", ".*"]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        let url = format!("amqp://{user}:secret@127.0.0.1:5672/{name}");
        Self { name, user, url }
    }

    /// Sets the user's configure, write and read permissions (regular expressions).
    pub fn set_permissions(&self, configure: &str, write: &str, read: &str) {
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &self.name,
            &self.user,
            configure,
            write,
            read,
        ]);
    }
}

impl Drop for IsolatedVhost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_user", &self.user])
            .output();
    }
}

/// The broker's `max_message_size` on the node of [`small_node_url`].
pub const SMALL_NODE_MAX_MESSAGE: usize = 65_536;

/// A RabbitMQ node of the project's own (scripts/rabbitmq-node) that refuses messages
/// over [`SMALL_NODE_MAX_MESSAGE`] bytes, started when it is not running yet. The
/// machine's broker is left as it is.
pub async fn small_node_url() -> String {
    static STARTED: OnceCell<String> = OnceCell::const_new();
    STARTED
        .get_or_init(|| async {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rabbitmq-node");
            let limit = format!("max_message_size={SMALL_NODE_MAX_MESSAGE}");
            let status = tokio::process::Command::new(script)
                .args(["start", "small", "5682", &limit])
                .status()
                .await
                .expect("scripts/rabbitmq-node runs");
            assert!(status.success(), "scripts/rabbitmq-node start small failed");
            "amqp://guest:guest@127.0.0.1:5682/%2f".to_owned()
        })
        .await
        .clone()
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

/// A Pushwoosh that answers every call with success at once, except the calls whose body
/// contains a marker: those it holds until the test releases them. A test can then order
/// events ("these jobs finished while that call was held") instead of timing them.
pub struct HeldApi {
    /// The base for `pushwoosh.api_url`.
    pub api_url: String,
    held: tokio::sync::watch::Receiver<usize>,
    release: tokio::sync::watch::Sender<bool>,
}

impl HeldApi {
    /// Holds the calls that contain `marker` (answered `{"Messages": ["HELD"]}` once
    /// released); answers the others `{"Messages": ["QUICK"]}`.
    pub async fn start(marker: &'static str) -> Self {
        use axum::http::header::CONTENT_TYPE;
        let (held_tx, held) = tokio::sync::watch::channel(0_usize);
        let (release, released) = tokio::sync::watch::channel(false);
        let held_tx = std::sync::Arc::new(held_tx);
        let answer = move |body: String| {
            let held_tx = held_tx.clone();
            let mut released = released.clone();
            async move {
                let code = if body.contains(marker) {
                    held_tx.send_modify(|n| *n += 1);
                    let _ = released.wait_for(|released| *released).await;
                    "HELD"
                } else {
                    "QUICK"
                };
                let body = serde_json::json!({"status_code": 200, "status_message": "OK",
                    "response": {"Messages": [code]}});
                ([(CONTENT_TYPE, "application/json")], body.to_string())
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the held API");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            async move { axum::serve(listener, axum::Router::new().fallback(answer)).await },
        );
        Self {
            api_url: format!("http://{addr}/json/1.3"),
            held,
            release,
        }
    }

    /// Waits until `n` calls are held; fails the test after `within` instead of hanging.
    pub async fn wait_held(&mut self, n: usize, within: Duration) {
        tokio::time::timeout(within, self.held.wait_for(|held| *held >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} call(s) never reached the held API"))
            .expect("the held API runs");
    }

    /// Answers the held calls, and any that come later.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}
