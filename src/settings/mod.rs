//! The worker's configuration: typed settings with a built-in default for every key,
//! layered from `config/default.toml` (or `--config`), `PUSHWOOSH_WORKER__SECTION__KEY`
//! variables, and the four short variables that always win.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::ExposeSecret;
use serde::Deserialize;

mod amqp;
mod lanes;
mod ledger;
mod operation;
mod pushwoosh;

pub use amqp::*;
pub use lanes::*;
pub use ledger::*;
pub use operation::*;
pub use pushwoosh::*;

/// Everything the worker reads from its configuration.
#[derive(Debug, Clone, Deserialize)]
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
    pub lanes: LanesSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            amqp: AmqpSettings::default(),
            pushwoosh: PushwooshSettings::default(),
            retry: RetrySettings::default(),
            http: HttpSettings::default(),
            log: LogSettings::default(),
            shutdown: ShutdownSettings::default(),
            validation: ValidationSettings::default(),
            breaker: BreakerSettings::default(),
            rate_limit: RateLimitSettings::default(),
            batch: BatchSettings::default(),
            runtime: RuntimeSettings::default(),
            ledger: LedgerSettings::default(),
            lanes: default_lanes(),
        }
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
        let mut settings: Settings = builder
            .build()
            .context("reading the configuration")?
            .try_deserialize()
            .context("invalid configuration")?;
        settings.lanes = lanes::with_urgent(std::mem::take(&mut settings.lanes));
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
        lanes::check(&self.lanes)?;
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
