//! The worker as a separate process (the real binary), configured through its
//! environment as an operator would: start, SIGTERM, exit status, log.

use std::time::Duration;

use pushwoosh_worker::settings::Settings;

use super::app::TOKEN;

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
    // `amqp.urls`, when set, wins over `amqp.url` (AMQP_URL takes a comma-separated list).
    let url = if a.urls.is_empty() {
        a.url.clone()
    } else {
        a.urls.join(",")
    };
    cmd.env_remove("PUSHWOOSH_WORKER_CONFIG")
        .env("AMQP_URL", url);
    if let Some(ca) = &a.tls.ca_file {
        cmd.env("PUSHWOOSH_WORKER__AMQP__TLS__CA_FILE", ca);
    }
    for (key, value) in [
        ("AMQP__JOBS_EXCHANGE", a.jobs_exchange.clone()),
        ("AMQP__JOBS_QUEUE", a.jobs_queue.clone()),
        ("AMQP__RESULTS_EXCHANGE", a.results_exchange.clone()),
        ("AMQP__DEAD_LETTER_QUEUE", a.dead_letter_queue.clone()),
        ("AMQP__RETRY_QUEUE_PREFIX", a.retry_queue_prefix.clone()),
        ("LEDGER__KEY_PREFIX", settings.ledger.key_prefix.clone()),
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

/// Runs `pushwoosh-worker topology ARGS` with the test's names; returns (success, stdout).
pub async fn run_topology(settings: &Settings, args: &[&str]) -> (bool, String) {
    let out = topology_output(settings, args).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Runs `pushwoosh-worker topology ARGS` with the test's names; all it printed.
pub async fn topology_output(settings: &Settings, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushwoosh-worker"));
    cmd.arg("topology").args(args);
    point_at_test_names(&mut cmd, settings);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("topology finishes within 30 s")
        .unwrap();
    eprintln!(
        "topology {args:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
