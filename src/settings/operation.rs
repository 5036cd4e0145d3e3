//! Running the process: `[http]`, `[log]`, `[shutdown]`, `[runtime]` and `[validation]`.

use serde::Deserialize;

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
