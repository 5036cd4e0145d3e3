//! Jobs as producers send them, and the Pushwoosh a test puts in front of the worker:
//! answers, mocks, and what the mocks received.

use std::time::Duration;

use serde_json::Value;
use wiremock::MockServer;

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

/// A Pushwoosh success answer.
pub fn ok_answer(response: Value) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "status_code": 200, "status_message": "OK", "response": response
    }))
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

/// A mock Pushwoosh whose first `times` calls get `first`, and every call after them
/// success with one `code`.
pub async fn first_calls_then_ok(
    first: wiremock::ResponseTemplate,
    times: u64,
    code: &str,
) -> MockServer {
    let mock = MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(first)
        .up_to_n_times(times)
        .with_priority(1)
        .mount(&mock)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ok_answer(serde_json::json!({ "Messages": [code] })))
        .with_priority(2)
        .mount(&mock)
        .await;
    mock
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

/// Asserts that every notification `after` received carries a transactionId that one of
/// `before`'s calls carried: jobs sent again keep the transactionId of their first call.
pub async fn assert_resent_with_first_transaction_ids(before: &MockServer, after: &MockServer) {
    let first: Vec<Value> = before
        .received_requests()
        .await
        .unwrap()
        .iter()
        .flat_map(|r| transaction_ids(&r.body))
        .collect();
    for call in after.received_requests().await.unwrap() {
        for tx in transaction_ids(&call.body) {
            assert!(
                first.contains(&tx),
                "{tx} was sent again without the transactionId of its first call"
            );
        }
    }
}

/// Notifications a mock received so far, however they were batched into calls.
pub async fn notifications_sent(mock: &MockServer) -> usize {
    let requests = mock.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .map(|r| transaction_ids(&r.body).len())
        .sum()
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
