//! The worker's configuration: typed settings with a built-in default for every key,
//! layered from `config/default.toml` (or `--config`), `PUSHWOOSH_WORKER__SECTION__KEY`
//! variables, and the four short variables that always win.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::job::JobKind;

/// Everything the worker reads from its configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub amqp: AmqpSettings,
    pub pushwoosh: PushwooshSettings,
    pub retry: RetrySettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub shutdown: ShutdownSettings,
    pub validation: ValidationSettings,
    pub breaker: BreakerSettings,
    pub rate_limit: RateLimitSettings,
    pub batch: BatchSettings,
    pub runtime: RuntimeSettings,
    pub ledger: LedgerSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    Quorum,
    Classic,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpSettings {
    /// Broker URL; `AMQP_URL` overrides it.
    pub url: String,
    /// Jobs in flight per worker process (the consumer's prefetch).
    pub prefetch: u16,
    pub jobs_exchange: String,
    pub jobs_queue: String,
    pub queue_type: QueueType,
    pub results_exchange: String,
    pub dead_letter_queue: String,
    /// Retry queues are named `<prefix>.<delay>ms`, one per backoff tier.
    pub retry_queue_prefix: String,
    /// How long `run` keeps trying to reach the broker at start before it gives up.
    pub startup_timeout_ms: u64,
    /// Quorum queues: a job delivered this many times without being settled (its worker
    /// crashed or hung each time) is a poison job: it fails, with a result, instead of
    /// looping forever.
    pub delivery_limit: u32,
    /// How long a finished job's ack may wait for the jobs delivered before it, so that
    /// one multiple ack settles them all; 0 acks every job on its own.
    pub ack_coalesce_ms: u64,
    /// A job body larger than this is rejected without being decoded, and dead-lettered.
    pub max_job_bytes: usize,
    /// A result event larger than this goes out without Pushwoosh's `response`
    /// (`"truncated": ["response"]`); keep it well under the broker's `max_message_size`.
    pub max_result_bytes: usize,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            prefetch: 64,
            jobs_exchange: "pushwoosh.jobs".into(),
            jobs_queue: "pushwoosh.jobs".into(),
            queue_type: QueueType::Quorum,
            results_exchange: "pushwoosh.results".into(),
            dead_letter_queue: "pushwoosh.dead".into(),
            retry_queue_prefix: "pushwoosh.retry".into(),
            startup_timeout_ms: 30_000,
            delivery_limit: 10,
            ack_coalesce_ms: 5,
            max_job_bytes: 4 * 1024 * 1024,
            max_result_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushwooshSettings {
    /// Base URL of the Messages API; `PUSHWOOSH_API_URL` overrides it.
    pub api_url: String,
    /// Default API token; `PUSHWOOSH_AUTH_TOKEN` overrides it.
    pub auth_token: Option<SecretString>,
    /// Per-application tokens, keyed by application code (matched case-insensitively).
    pub tokens: HashMap<String, SecretString>,
    /// One HTTP call's time-out.
    pub timeout_ms: u64,
}

impl Default for PushwooshSettings {
    fn default() -> Self {
        Self {
            api_url: "https://api.pushwoosh.com/json/1.3".into(),
            auth_token: None,
            tokens: HashMap::new(),
            timeout_ms: 10_000,
        }
    }
}

impl AmqpSettings {
    pub fn ack_coalesce(&self) -> Duration {
        Duration::from_millis(self.ack_coalesce_ms)
    }
}

impl PushwooshSettings {
    /// The token for `application`, else the default token.
    pub fn token_for(&self, application: Option<&str>) -> Option<&SecretString> {
        application
            .and_then(|app| {
                self.tokens
                    .iter()
                    .find(|(code, _)| code.eq_ignore_ascii_case(app))
                    .map(|(_, token)| token)
            })
            .or(self.auth_token.as_ref())
    }

    /// Whether `application` has a token of its own (else calls use the default token).
    pub fn has_application_token(&self, application: Option<&str>) -> bool {
        application.is_some_and(|app| {
            self.tokens
                .keys()
                .any(|code| code.eq_ignore_ascii_case(app))
        })
    }

    pub fn has_any_token(&self) -> bool {
        self.auth_token
            .as_ref()
            .is_some_and(|t| !t.expose_secret().is_empty())
            || !self.tokens.is_empty()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    /// Calls per job at most, the first included.
    pub max_attempts: u32,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Total time from a job's first receipt after which it is not retried again.
    pub max_elapsed_ms: u64,
    /// Send an SMS again after a call that may have reached Pushwoosh (risking a duplicate).
    pub resend_unknown_sms: bool,
    /// Same for WhatsApp.
    pub resend_unknown_whatsapp: bool,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay_ms: 1_000,
            max_delay_ms: 60_000,
            // Pushwoosh remembers a transactionId for 5 minutes: retrying past that could
            // send a push twice, so the default budget stays inside the window.
            max_elapsed_ms: 240_000,
            resend_unknown_sms: false,
            resend_unknown_whatsapp: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address of `/metrics`, `/livez`, `/healthz` and `/readyz`.
    pub listen: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSettings {
    /// How long a stopping worker lets jobs in flight finish before handing them back.
    pub grace_period_ms: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            grace_period_ms: 25_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Threads that run the worker's tasks (`pushwoosh-worker run` only); 0 = tokio's
    /// default, one a core or `TOKIO_WORKER_THREADS`. The broker connection does its socket
    /// I/O on a thread of its own either way.
    pub worker_threads: usize,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self { worker_threads: 1 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnknownParamsPolicy {
    #[default]
    Reject,
    Warn,
    Pass,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationSettings {
    /// What to do with a parameter the Pushwoosh reference does not document.
    pub unknown_params: UnknownParamsPolicy,
    /// Validation errors (and, apart, warnings) a result lists at most; the rest are
    /// counted in one last entry.
    pub max_errors: usize,
}

impl Default for ValidationSettings {
    fn default() -> Self {
        Self {
            unknown_params: UnknownParamsPolicy::default(),
            max_errors: 50,
        }
    }
}

/// The circuit breaker: when Pushwoosh fails for everyone, stop taking jobs and probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    pub enabled: bool,
    /// Outages in a row (5xx, time-outs, connection errors, auth rejected) that open it.
    pub failure_threshold: u32,
    /// The first open period; each failed probe doubles it, up to `max_open_ms`.
    pub initial_open_ms: u64,
    pub max_open_ms: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_threshold: 10,
            initial_open_ms: 1_000,
            max_open_ms: 60_000,
        }
    }
}

impl BreakerSettings {
    pub fn initial_open(&self) -> Duration {
        Duration::from_millis(self.initial_open_ms)
    }

    pub fn max_open(&self) -> Duration {
        Duration::from_millis(self.max_open_ms)
    }
}

/// The client-side rate limiter: calls per minute per Pushwoosh method, and the
/// slow-down after a 429.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Worker processes sharing one account: each takes `1/replicas` of every figure.
    pub replicas: u32,
    /// Calls a process may make at once after a quiet spell.
    pub burst: u32,
    /// The limiter spaces calls as if a minute lasted this much longer, so that jitter
    /// between the worker and Pushwoosh cannot squeeze one call too many into a minute.
    pub window_slack_ms: u64,
    /// Calls per minute (for the whole account, before the replicas' share); 0 = no
    /// client-side limit for that method.
    pub create_message_per_minute: u32,
    pub create_sms_message_per_minute: u32,
    pub create_whatsapp_message_per_minute: u32,
    pub create_targeted_message_per_minute: u32,
    pub cancel_message_per_minute: u32,
    pub delete_message_per_minute: u32,
    pub get_message_details_per_minute: u32,
    pub get_push_history_per_minute: u32,
    /// How long every call of a method waits after a 429 without `Retry-After`.
    pub default_pause_ms: u64,
    /// The longest pause a `Retry-After` can impose.
    pub max_pause_ms: u64,
    /// Each slow-down step after a 429 doubles the spacing of calls, up to this factor.
    pub max_slowdown: u32,
    /// The factor halves after each such period without a 429.
    pub recovery_interval_ms: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            replicas: 1,
            burst: 1,
            window_slack_ms: 500,
            create_message_per_minute: 600,
            create_sms_message_per_minute: 600,
            create_whatsapp_message_per_minute: 600,
            create_targeted_message_per_minute: 600,
            cancel_message_per_minute: 0,
            delete_message_per_minute: 0,
            get_message_details_per_minute: 0,
            get_push_history_per_minute: 0,
            default_pause_ms: 1_000,
            max_pause_ms: 60_000,
            max_slowdown: 16,
            recovery_interval_ms: 10_000,
        }
    }
}

/// Batching: push jobs for one application that arrive together share one createMessage call.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchSettings {
    pub enabled: bool,
    /// Most notifications in one call (a job of several notifications counts each).
    pub max_size: usize,
    /// How long the first job of a batch waits for company before the call goes out.
    /// A batch also keeps filling while its call waits for a rate-limit slot.
    pub linger_ms: u64,
    /// How long a batch may wait for company while the application's calls under way
    /// already cover a call's latency (one call per `busy_linger_ms` of it): a busy
    /// application sends fewer, fuller calls; a quiet one's job goes at once. 0: never.
    pub busy_linger_ms: u64,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_size: 100,
            linger_ms: 0,
            busy_linger_ms: 1,
        }
    }
}

/// What the worker does while Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Stop taking jobs (like the open circuit breaker) until Redis answers again: nothing
    /// is sent that the ledger did not see, and the account's budget is never exceeded.
    #[default]
    Hold,
    /// Go on without the ledger, loudly: jobs are sent unrecorded and the rate limiter
    /// falls back to this process's share (`rate_limit.replicas`).
    Send,
}

/// The ledger: which job ids went out, and the account-wide rate limits, in Redis, shared
/// by every replica.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerSettings {
    /// Off: no Redis, no memory of job ids, and each process keeps its share of the rate
    /// limits (`rate_limit.replicas`).
    pub enabled: bool,
    /// Redis URL; `REDIS_URL` overrides it. `redis://` or `rediss://` (TLS) for one node,
    /// `redis+cluster://host1:port,host2:port` for a cluster, and
    /// `redis+sentinel://host1:26379,host2:26379/master_name` for Sentinel (`rediss+…`
    /// with TLS). It may hold a password, so it never prints.
    pub url: SecretString,
    /// How long a job id that reached Pushwoosh is remembered: a job published again
    /// within this window is not sent again.
    pub window_ms: u64,
    /// Every key the worker writes starts with this. Keep it short: up to 10 characters,
    /// a remembered job costs ~150 bytes; each character more costs up to 16 bytes a job.
    pub key_prefix: String,
    /// `hold` or `send`: see [`OnUnavailable`].
    pub on_unavailable: OnUnavailable,
    /// The longest one Redis round trip may take before Redis counts as unavailable.
    pub timeout_ms: u64,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            url: SecretString::from("redis://127.0.0.1:6379"),
            window_ms: 86_400_000,
            key_prefix: "pushwoosh:".into(),
            on_unavailable: OnUnavailable::Hold,
            timeout_ms: 1_000,
        }
    }
}

impl LedgerSettings {
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl RateLimitSettings {
    /// The configured calls per minute of the Pushwoosh method of a job kind (0: no
    /// client-side limit).
    pub fn per_minute(&self, kind: JobKind) -> u32 {
        match kind {
            JobKind::Push => self.create_message_per_minute,
            JobKind::Sms => self.create_sms_message_per_minute,
            JobKind::Whatsapp => self.create_whatsapp_message_per_minute,
            JobKind::Targeted => self.create_targeted_message_per_minute,
            JobKind::Cancel => self.cancel_message_per_minute,
            JobKind::Delete => self.delete_message_per_minute,
            JobKind::Details => self.get_message_details_per_minute,
            JobKind::History => self.get_push_history_per_minute,
        }
    }
}

impl BatchSettings {
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }

    pub fn busy_linger(&self) -> Duration {
        Duration::from_millis(self.busy_linger_ms)
    }
}

/// Where the configuration file comes from.
pub fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    if let Ok(path) = std::env::var("PUSHWOOSH_WORKER_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let default = PathBuf::from("config/default.toml");
    default.exists().then_some(default)
}

impl Settings {
    /// Loads the settings from the file (if any) and the process environment.
    pub fn load(explicit_path: Option<&Path>) -> anyhow::Result<Self> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::load_from(config_path(explicit_path).as_deref(), &vars)
    }

    /// Loads the settings from an optional file and a given environment (testable).
    pub fn load_from(path: Option<&Path>, env: &HashMap<String, String>) -> anyhow::Result<Self> {
        let mut builder = config::Config::builder();
        if let Some(path) = path {
            if !path.exists() {
                anyhow::bail!("configuration file {} does not exist", path.display());
            }
            builder = builder.add_source(config::File::from(path).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("PUSHWOOSH_WORKER")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env.clone().into_iter().collect())),
        );
        for (var, key) in [
            ("AMQP_URL", "amqp.url"),
            ("PUSHWOOSH_API_URL", "pushwoosh.api_url"),
            ("PUSHWOOSH_AUTH_TOKEN", "pushwoosh.auth_token"),
            ("REDIS_URL", "ledger.url"),
        ] {
            if let Some(value) = env.get(var).filter(|v| !v.is_empty()) {
                builder = builder.set_override(key, value.as_str())?;
            }
        }
        let settings: Settings = builder
            .build()
            .context("reading the configuration")?
            .try_deserialize()
            .context("invalid configuration")?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.amqp.prefetch > 0, "amqp.prefetch must be at least 1");
        anyhow::ensure!(
            self.amqp.max_job_bytes > 0,
            "amqp.max_job_bytes must be at least 1"
        );
        anyhow::ensure!(
            self.amqp.max_result_bytes >= 4096,
            "amqp.max_result_bytes must be at least 4096: a result without its response needs room"
        );
        anyhow::ensure!(
            self.validation.max_errors > 0,
            "validation.max_errors must be at least 1"
        );
        anyhow::ensure!(
            self.batch.max_size > 0,
            "batch.max_size must be at least 1 (set batch.enabled = false to turn batching off)"
        );
        anyhow::ensure!(
            self.amqp.delivery_limit > 0,
            "amqp.delivery_limit must be at least 1"
        );
        anyhow::ensure!(
            self.retry.max_attempts > 0,
            "retry.max_attempts must be at least 1 (it counts the first call)"
        );
        anyhow::ensure!(
            self.retry.initial_delay_ms > 0,
            "retry.initial_delay_ms must be at least 1"
        );
        anyhow::ensure!(
            self.retry.max_delay_ms >= self.retry.initial_delay_ms,
            "retry.max_delay_ms must be at least retry.initial_delay_ms"
        );
        anyhow::ensure!(
            self.pushwoosh.timeout_ms > 0,
            "pushwoosh.timeout_ms must be at least 1"
        );
        anyhow::ensure!(
            self.breaker.failure_threshold > 0,
            "breaker.failure_threshold must be at least 1"
        );
        anyhow::ensure!(
            self.breaker.initial_open_ms > 0,
            "breaker.initial_open_ms must be at least 1"
        );
        anyhow::ensure!(
            self.breaker.max_open_ms >= self.breaker.initial_open_ms,
            "breaker.max_open_ms must be at least breaker.initial_open_ms"
        );
        let r = &self.rate_limit;
        anyhow::ensure!(r.replicas > 0, "rate_limit.replicas must be at least 1");
        anyhow::ensure!(r.burst > 0, "rate_limit.burst must be at least 1");
        anyhow::ensure!(
            r.max_slowdown > 0,
            "rate_limit.max_slowdown must be at least 1 (1 = never slow down)"
        );
        anyhow::ensure!(
            r.recovery_interval_ms > 0,
            "rate_limit.recovery_interval_ms must be at least 1"
        );
        anyhow::ensure!(
            r.max_pause_ms >= r.default_pause_ms,
            "rate_limit.max_pause_ms must be at least rate_limit.default_pause_ms"
        );
        let l = &self.ledger;
        anyhow::ensure!(l.window_ms > 0, "ledger.window_ms must be at least 1");
        anyhow::ensure!(l.timeout_ms > 0, "ledger.timeout_ms must be at least 1");
        anyhow::ensure!(
            !l.key_prefix.contains(['{', '}']),
            "ledger.key_prefix must not hold braces: Redis Cluster would read them as a hash tag and put every key on one node"
        );
        if l.enabled {
            crate::ledger::Endpoint::parse(l.url.expose_secret()).context("ledger.url")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn needs_no_file_and_has_the_contract_defaults() {
        let s = Settings::load_from(None, &env(&[])).unwrap();
        assert_eq!(s.amqp.prefetch, 64);
        assert_eq!(s.amqp.jobs_queue, "pushwoosh.jobs");
        assert_eq!(s.amqp.queue_type, QueueType::Quorum);
        assert_eq!(s.pushwoosh.api_url, "https://api.pushwoosh.com/json/1.3");
        assert_eq!(s.http.listen, "127.0.0.1:9464");
        assert_eq!(s.runtime.worker_threads, 1);
        assert!(s.ledger.enabled);
        assert_eq!(s.ledger.url.expose_secret(), "redis://127.0.0.1:6379");
        assert_eq!(s.ledger.window_ms, 86_400_000);
        assert_eq!(s.ledger.key_prefix, "pushwoosh:");
        assert_eq!(s.ledger.on_unavailable, OnUnavailable::Hold);
    }

    #[test]
    fn the_shipped_default_toml_equals_the_built_in_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let from_file = Settings::load_from(Some(&path), &env(&[])).unwrap();
        let built_in = Settings::default();
        assert_eq!(format!("{from_file:?}"), format!("{built_in:?}"));
    }

    #[test]
    fn section_variables_and_short_variables_override() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("PUSHWOOSH_WORKER__RETRY__MAX_ATTEMPTS", "3"),
                ("PUSHWOOSH_WORKER__AMQP__QUEUE_TYPE", "classic"),
                ("PUSHWOOSH_WORKER__AMQP__URL", "amqp://from-section"),
                ("AMQP_URL", "amqp://short-wins"),
                ("PUSHWOOSH_API_URL", "http://127.0.0.1:1/json/1.3"),
                ("PUSHWOOSH_AUTH_TOKEN", "tok"),
                ("PUSHWOOSH_WORKER_CONFIG", "ignored-by-the-key-loader"),
                ("PUSHWOOSH_WORKER__LEDGER__URL", "redis://from-section:6379"),
                ("REDIS_URL", "redis://short-wins:6379"),
                ("PUSHWOOSH_WORKER__LEDGER__ON_UNAVAILABLE", "send"),
            ]),
        )
        .unwrap();
        assert_eq!(s.retry.max_attempts, 3);
        assert_eq!(s.amqp.queue_type, QueueType::Classic);
        assert_eq!(s.amqp.url, "amqp://short-wins");
        assert_eq!(s.pushwoosh.api_url, "http://127.0.0.1:1/json/1.3");
        assert_eq!(s.pushwoosh.token_for(None).unwrap().expose_secret(), "tok");
        assert_eq!(s.ledger.url.expose_secret(), "redis://short-wins:6379");
        assert_eq!(s.ledger.on_unavailable, OnUnavailable::Send);
    }

    #[test]
    fn the_redis_password_never_prints_and_bad_ledger_values_are_clear_errors() {
        let s =
            Settings::load_from(None, &env(&[("REDIS_URL", "redis://:pa55word@db:6379")])).unwrap();
        assert!(!format!("{s:?}").contains("pa55word"));
        for (var, value, says) in [
            ("PUSHWOOSH_WORKER__LEDGER__WINDOW_MS", "0", "window_ms"),
            ("PUSHWOOSH_WORKER__LEDGER__TIMEOUT_MS", "0", "timeout_ms"),
            (
                "PUSHWOOSH_WORKER__LEDGER__KEY_PREFIX",
                "{pw}:",
                "key_prefix",
            ),
            ("REDIS_URL", "http://db:6379", "ledger.url"),
            (
                "PUSHWOOSH_WORKER__LEDGER__ON_UNAVAILABLE",
                "drop",
                "on_unavailable",
            ),
        ] {
            let err = Settings::load_from(None, &env(&[(var, value)])).unwrap_err();
            assert!(format!("{err:#}").contains(says), "{var}={value}: {err:#}");
        }
        let off = Settings::load_from(
            None,
            &env(&[
                ("PUSHWOOSH_WORKER__LEDGER__ENABLED", "false"),
                ("REDIS_URL", "http://ignored"),
            ]),
        );
        assert!(off.is_ok(), "a disabled ledger's URL is not checked");
    }

    #[test]
    fn per_application_tokens_win_over_the_default() {
        let dir = std::env::temp_dir().join(format!("pww-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "[pushwoosh]\nauth_token = \"default\"\n[pushwoosh.tokens]\n\"ABCDE-12345\" = \"app-token\"\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), &env(&[])).unwrap();
        let token = |app| {
            s.pushwoosh
                .token_for(app)
                .unwrap()
                .expose_secret()
                .to_string()
        };
        assert_eq!(token(Some("ABCDE-12345")), "app-token");
        assert_eq!(token(Some("OTHER-00000")), "default");
        assert_eq!(token(None), "default");
    }

    #[test]
    fn the_token_never_prints() {
        let s =
            Settings::load_from(None, &env(&[("PUSHWOOSH_AUTH_TOKEN", "s3cr3t-token")])).unwrap();
        assert!(!format!("{s:?}").contains("s3cr3t-token"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let err = Settings::load_from(None, &env(&[("PUSHWOOSH_WORKER__RETRY__MAX_ATTEMPS", "3")]))
            .unwrap_err();
        assert!(format!("{err:#}").contains("max_attemps"), "{err:#}");
        let err = Settings::load_from(
            None,
            &env(&[("PUSHWOOSH_WORKER__RETRY__MAX_ATTEMPTS", "0")]),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("max_attempts"), "{err:#}");
    }
}
