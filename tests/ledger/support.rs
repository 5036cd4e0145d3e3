//! The ledger tests' harness: the real Redis (`REDIS_URL`, else 127.0.0.1:6379; never
//! skipped), a random key prefix per test whose keys are deleted afterwards, and a Redis
//! server of a test's own, on a free port, for the tests that stop it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushwoosh_worker::ledger::{Claim, Ledger, Record, Recorded};
use pushwoosh_worker::metrics::Metrics;
use pushwoosh_worker::result_event::Outcome;
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

/// One claim per id, all by `owner`.
pub fn claims_of(ids: &[String], owner: u64) -> Vec<Claim<'_>> {
    ids.iter()
        .map(|job_id| Claim {
            job_id,
            owner,
            now_ms: 1,
        })
        .collect()
}

/// The same answer for each id.
pub fn records_of<'a>(ids: &'a [String], answer: &Recorded) -> Vec<Record<'a>> {
    ids.iter()
        .map(|job_id| Record {
            job_id,
            answer: answer.clone(),
        })
        .collect()
}

/// A typical push's answer: ok, 200, one message code.
pub fn push_answer() -> Recorded {
    Recorded {
        outcome: Outcome::Ok,
        status_code: Some(200),
        message_codes: vec!["C3F8-C3863ED4-334AD4F1".into()],
    }
}

/// A metric's value in the rendered text; a series that is not there fails the test
/// (the ledger's series are all created at start).
pub fn metric(metrics: &Metrics, series: &str) -> f64 {
    let text = metrics.render();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
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
    /// Arguments after the port and the directory: a config file, flags.
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with these flags too (e.g. `--cluster-enabled yes`).
    pub fn start_with(flags: &[&str]) -> Self {
        let mut redis = Self::unstarted();
        redis
            .args
            .extend(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"].map(String::from));
        redis.args.extend(flags.iter().map(|f| f.to_string()));
        redis.restart();
        redis
    }

    /// A Sentinel watching the master on `master_port` as `ledgermaster`.
    pub fn sentinel(master_port: u16) -> Self {
        let mut redis = Self::unstarted();
        let conf = redis.dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {}\nbind 127.0.0.1\nsentinel monitor ledgermaster 127.0.0.1 {master_port} 1\n",
                redis.port
            ),
        )
        .unwrap();
        redis.args = vec![conf.display().to_string(), "--sentinel".into()];
        redis.restart();
        redis
    }

    fn unstarted() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("pw-ledger-redis-{port}-{:08x}", fastrand::u32(..)));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            port,
            args: Vec::new(),
            dir,
            child: None,
        }
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
        let mut command = Command::new("redis-server");
        if self.args.first().is_some_and(|a| a.ends_with(".conf")) {
            command.args(&self.args);
        } else {
            command
                .args(["--port", &self.port.to_string()])
                .arg("--dir")
                .arg(&self.dir)
                .args(&self.args);
        }
        let child = command
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
