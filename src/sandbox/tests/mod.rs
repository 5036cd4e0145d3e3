//! End-to-end tests of the sandbox over real HTTP: a sandbox on port 0 and a small client.

mod api;
mod errors;
mod faults;

use std::time::Duration;

use serde_json::{Value, json};

use super::{SandboxConfig, SandboxHandle, start};

/// A running sandbox and a client for it.
pub(super) struct Sandbox {
    pub(super) handle: SandboxHandle,
    http: reqwest::Client,
}

pub(super) struct Raw {
    pub(super) status: u16,
    pub(super) retry_after: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) body: String,
}

impl Raw {
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

pub(super) async fn sandbox_with(config: SandboxConfig) -> Sandbox {
    let config = SandboxConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let handle = start(config).await.expect("sandbox starts");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Sandbox { handle, http }
}

pub(super) async fn sandbox() -> Sandbox {
    sandbox_with(SandboxConfig::default()).await
}

impl Sandbox {
    /// POSTs `body` as is to `{base_url}/{method}`.
    pub(super) async fn post(&self, method: &str, body: impl Into<String>) -> Raw {
        let url = format!("{}/{method}", self.handle.base_url());
        self.post_url(&url, body).await
    }

    pub(super) async fn post_url(&self, url: &str, body: impl Into<String>) -> Raw {
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.into())
            .send()
            .await
            .expect("request answered");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = response.status().as_u16();
        let retry_after = header("retry-after");
        let content_type = header("content-type");
        let body = response.text().await.expect("body");
        Raw {
            status,
            retry_after,
            content_type,
            body,
        }
    }

    /// Calls `method` with `{"request": request}`; asserts HTTP 200 and returns the JSON body.
    pub(super) async fn call(&self, method: &str, request: Value) -> Value {
        let raw = self
            .post(method, json!({ "request": request }).to_string())
            .await;
        assert_eq!(raw.status, 200, "{method}: {}", raw.body);
        assert_eq!(raw.content_type.as_deref(), Some("application/json"));
        raw.json()
    }

    /// createMessage with one notification; returns the whole answer.
    pub(super) async fn push(&self, app: &str, transaction_id: Option<&str>) -> Value {
        let mut notification = json!({ "send_date": "now", "content": { "en": "Hi" } });
        if let Some(t) = transaction_id {
            notification["transactionId"] = json!(t);
        }
        let request = json!({ "auth": "tok", "application": app, "notifications": [notification] });
        self.call("createMessage", request).await
    }
}

/// The single code of a createMessage answer.
pub(super) fn only_code(answer: &Value) -> String {
    assert_eq!(answer["status_code"], json!(200), "{answer}");
    let codes = answer["response"]["Messages"].as_array().expect("Messages");
    assert_eq!(codes.len(), 1, "{answer}");
    codes[0].as_str().expect("code").to_owned()
}
