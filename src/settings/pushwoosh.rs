//! Talking to Pushwoosh: `[pushwoosh]` (the API and its tokens), `[retry]`, `[breaker]`,
//! `[rate_limit]` and `[batch]`.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::job::JobKind;

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
