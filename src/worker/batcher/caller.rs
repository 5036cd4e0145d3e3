//! The test seam: what makes a batched call's HTTP request. In the worker it is the
//! Pushwoosh client; the batcher's tests put a fake Pushwoosh here, and build their
//! batchers and jobs with the helpers in `fake`.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::pushwoosh::{HttpAnswer, PushwooshClient, TransportError};

/// Makes one HTTP call to Pushwoosh: the client, or a fake in tests.
pub trait Caller: Send + Sync + 'static {
    fn call(
        &self,
        method: &'static str,
        body: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<HttpAnswer, TransportError>> + Send + '_>>;
}

impl Caller for PushwooshClient {
    fn call(
        &self,
        method: &'static str,
        body: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<HttpAnswer, TransportError>> + Send + '_>> {
        Box::pin(PushwooshClient::call(self, method, body))
    }
}

#[cfg(test)]
pub(super) mod fake {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use secrecy::SecretString;
    use serde_json::{Value, json};

    use super::Caller;
    use crate::job::{Job, decode};
    use crate::ledger::CallLimiter;
    use crate::metrics::Metrics;
    use crate::pushwoosh::{HttpAnswer, RateLimiter, TransportError, Verdict};
    use crate::settings::{BatchSettings, BreakerSettings, RateLimitSettings};
    use crate::worker::Readiness;
    use crate::worker::batcher::{Batched, Batcher};
    use crate::worker::breaker::CircuitBreaker;

    /// A Pushwoosh that answers one code per notification (`C-<content>`), 210 when a
    /// notification has `"bad": true`, and, if `short`, one code too few.
    #[derive(Default)]
    pub struct Fake {
        pub calls: Mutex<Vec<Vec<String>>>,
        pub short: bool,
        pub latency: Duration,
    }

    impl Fake {
        /// The contents of each call's notifications, call by call.
        pub fn calls(&self) -> Vec<Vec<String>> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Caller for Fake {
        fn call(
            &self,
            method: &'static str,
            body: Bytes,
        ) -> Pin<Box<dyn Future<Output = Result<HttpAnswer, TransportError>> + Send + '_>> {
            Box::pin(async move {
                assert_eq!(method, "createMessage");
                let request: Value = serde_json::from_slice(&body).expect("a JSON body");
                assert_eq!(request["request"]["auth"], "tok");
                assert_eq!(request["request"]["application"], "APP");
                let notifications = request["request"]["notifications"].as_array().unwrap();
                let contents: Vec<String> = notifications
                    .iter()
                    .map(|n| n["content"].as_str().unwrap().to_owned())
                    .collect();
                self.calls.lock().unwrap().push(contents.clone());
                tokio::time::sleep(self.latency).await;
                let answer = if notifications.iter().any(|n| n["bad"] == true) {
                    json!({"status_code": 210, "status_message": "Invalid content", "response": {"Messages": []}})
                } else {
                    let mut codes: Vec<String> =
                        contents.iter().map(|c| format!("C-{c}")).collect();
                    if self.short {
                        codes.pop();
                    }
                    json!({"status_code": 200, "status_message": "OK", "response": {"Messages": codes}})
                };
                Ok(HttpAnswer {
                    status: 200,
                    retry_after: None,
                    body: serde_json::to_vec(&answer).unwrap().into(),
                })
            })
        }
    }

    pub fn new_batcher(fake: Arc<Fake>, max_size: usize, linger_ms: u64) -> Arc<Batcher> {
        with_settings(
            fake,
            BatchSettings {
                enabled: true,
                max_size,
                linger_ms,
                busy_linger_ms: 0,
            },
        )
    }

    pub fn with_settings(fake: Arc<Fake>, settings: BatchSettings) -> Arc<Batcher> {
        let unlimited = RateLimitSettings {
            enabled: false,
            ..RateLimitSettings::default()
        };
        with_limits(fake, settings, &unlimited)
    }

    pub fn with_limits(
        fake: Arc<Fake>,
        settings: BatchSettings,
        limits: &RateLimitSettings,
    ) -> Arc<Batcher> {
        let metrics = Arc::new(Metrics::new());
        let limiter = Arc::new(CallLimiter::Local(RateLimiter::new(
            limits,
            metrics.clone(),
        )));
        let breaker = Arc::new(CircuitBreaker::new(
            &BreakerSettings::default(),
            metrics.clone(),
            Arc::new(Readiness::default()),
        ));
        Arc::new(Batcher::new(
            &settings,
            fake,
            limiter,
            metrics,
            breaker,
            None,
            std::time::Duration::from_secs(10),
        ))
    }

    /// A push job with one notification per content; `bad` marks them invalid.
    pub fn job(id: &str, contents: &[&str], bad: bool) -> Job {
        let notifications: Vec<Value> = contents
            .iter()
            .map(|c| json!({"send_date": "now", "content": c, "bad": bad}))
            .collect();
        let body =
            json!({"id": id, "kind": "push", "application": "APP", "notifications": notifications});
        decode(body.to_string().as_bytes(), None).unwrap()
    }

    pub fn submit(batcher: &Arc<Batcher>, job: Job) -> tokio::task::JoinHandle<Batched> {
        let batcher = batcher.clone();
        tokio::spawn(async move {
            let batchable = batcher.batchable(&job).expect("batchable");
            batcher
                .submit(batchable, &SecretString::from("tok"), true, 1, None)
                .await
                .expect("an answer")
                .expect("no ledger, no word of its own")
        })
    }

    /// [`submit`] for a job of the urgent lane.
    pub fn submit_urgent(batcher: &Arc<Batcher>, job: Job) -> tokio::task::JoinHandle<Batched> {
        let batcher = batcher.clone();
        tokio::spawn(async move {
            let batchable = batcher
                .batchable(&job)
                .expect("batchable")
                .with_priority(crate::pushwoosh::Priority::Urgent);
            batcher
                .submit(batchable, &SecretString::from("tok"), true, 1, None)
                .await
                .expect("an answer")
                .expect("no ledger, no word of its own")
        })
    }

    /// The message codes a success gave the job.
    pub fn codes(batched: &Batched) -> Vec<String> {
        match &batched.answered.verdict {
            Verdict::Success { response, .. } => response["Messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect(),
            other => panic!("not a success: {other:?}"),
        }
    }
}
