//! The ledger tests' harness: the real Redis (`REDIS_URL`, else 127.0.0.1:6379; never
//! skipped), a random key prefix per test whose keys are deleted afterwards, and a Redis
//! server of a test's own, on a free port, for the tests that stop it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushwoosh_worker::ledger::Ledger;
use pushwoosh_worker::metrics::Metrics;
use pushwoosh_worker::settings::LedgerSettings;
use secrecy::SecretString;

/// The Redis the tests share.
pub fn redis_url() -> String {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL");
    client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| {
            panic!(
                "no Redis for the tests at {url} ({e}): run scripts/ensure-redis, or set REDIS_URL"
            )
        });
    url
}

/// A key prefix of a test's own; its keys are deleted when it is dropped.
pub struct Prefix {
    pub url: String,
    pub prefix: String,
}

impl Prefix {
    pub fn new() -> Self {
        Self::on(redis_url())
    }

    pub fn on(url: String) -> Self {
        Self {
            url,
            prefix: format!("pwt{:08x}:", fastrand::u32(..)),
        }
    }

    pub fn settings(&self) -> LedgerSettings {
        LedgerSettings {
            url: SecretString::from(self.url.clone()),
            key_prefix: self.prefix.clone(),
            ..LedgerSettings::default()
        }
    }

    /// A ledger as one process has it, with metrics of its own.
    pub async fn ledger(&self) -> (Ledger, Arc<Metrics>) {
        self.ledger_with(|_| {}).await
    }

    pub async fn ledger_with(
        &self,
        configure: impl FnOnce(&mut LedgerSettings),
    ) -> (Ledger, Arc<Metrics>) {
        let mut settings = self.settings();
        configure(&mut settings);
        let metrics = Arc::new(Metrics::new());
        let ledger = Ledger::connect(&settings, &metrics).await.expect("connect");
        (ledger, metrics)
    }

    /// A plain connection, to look at what the ledger wrote.
    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("redis")
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(mut redis) = redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        else {
            return;
        };
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut redis)
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut redis);
        }
    }
}

/// A metric's value in the rendered text (0 when absent).
pub fn metric(metrics: &Metrics, series: &str) -> f64 {
    let text = metrics.render();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Round trips made for `operation` so far.
pub fn round_trips(metrics: &Metrics, operation: &str) -> f64 {
    metric(
        metrics,
        &format!(
            "pushwoosh_worker_ledger_redis_duration_seconds_count{{operation=\"{operation}\"}}"
        ),
    )
}

/// Waits until `check` holds, asking every 50 ms, for at most `limit` (a generous bound
/// for something that must happen; its passing fails the test).
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A redis-server of a test's own, on a free port, that the test may stop and start.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: it keeps nothing, like a lost node).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server (Debian's redis-server package; scripts/ensure-redis installs it)",
            );
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        let started = Instant::now();
        loop {
            let ping = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ping.is_ok() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "redis-server on port {} did not answer",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
