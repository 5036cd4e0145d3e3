//! Argument errors (210 in an HTTP 200 body), malformed bodies (HTTP 400), token
//! restrictions (403 in the body), and odd inputs that must never break the sandbox.

use serde_json::{Value, json};

use super::super::SandboxConfig;
use super::{only_code, sandbox, sandbox_with};

const DEVICES_NOT_ARRAY: &str = "Invalid devices list. \"devices\" must be an array.";

/// Asserts a 210 answer with `message` (a substring) and the given `response`.
async fn assert_210(
    s: &super::Sandbox,
    method: &str,
    request: Value,
    message: &str,
    response: Value,
) {
    let answer = s.call(method, request.clone()).await;
    assert_eq!(
        answer["status_code"],
        json!(210),
        "{method} {request}: {answer}"
    );
    let got = answer["status_message"].as_str().unwrap_or_default();
    assert!(
        got.contains(message),
        "{method} {request}: {got:?} lacks {message:?}"
    );
    assert_eq!(answer["response"], response, "{method} {request}");
}

#[tokio::test]
async fn create_methods_answer_210_with_empty_messages() {
    let s = sandbox().await;
    let empty = json!({ "Messages": [] });
    let note = json!({ "content": "x", "devices": ["+1"] });
    for method in ["createMessage", "createSMSMessage", "createWhatsAppMessage"] {
        let cases = [
            (
                json!({ "application": "A", "notifications": [note] }),
                "\"auth\"",
            ),
            (
                json!({ "auth": "", "application": "A", "notifications": [note] }),
                "\"auth\"",
            ),
            (
                json!({ "auth": 7, "application": "A", "notifications": [note] }),
                "\"auth\"",
            ),
            (
                json!({ "auth": "t", "notifications": [note] }),
                "\"application\"",
            ),
            (
                json!({ "auth": "t", "application": "" , "notifications": [note] }),
                "\"application\"",
            ),
            (
                json!({ "auth": "t", "application": "A" }),
                "\"notifications\"",
            ),
            (
                json!({ "auth": "t", "application": "A", "notifications": {} }),
                "must be an array",
            ),
            (
                json!({ "auth": "t", "application": "A", "notifications": [] }),
                "must not be empty",
            ),
            (
                json!({ "auth": "t", "application": "A", "notifications": [1] }),
                "notification #0",
            ),
        ];
        for (request, message) in cases {
            assert_210(&s, method, request, message, empty.clone()).await;
        }
    }
    let bad_tid = json!({ "auth": "t", "application": "A",
                          "notifications": [ {}, { "transactionId": 5 } ] });
    assert_210(&s, "createMessage", bad_tid, "notification #1", empty).await;
    assert_eq!(s.handle.sends(), 0);
    assert_eq!(s.handle.requests("createMessage"), 10);
}

#[tokio::test]
async fn sms_and_whatsapp_need_exactly_one_number() {
    let s = sandbox().await;
    let empty = json!({ "Messages": [] });
    for method in ["createSMSMessage", "createWhatsAppMessage"] {
        for devices in [
            None,
            Some(json!("+1")),
            Some(json!({ "0": "+1" })),
            Some(json!(null)),
        ] {
            let mut note = json!({ "send_date": "now", "content": "x" });
            if let Some(d) = devices {
                note["devices"] = d;
            }
            let request = json!({ "auth": "t", "application": "A", "notifications": [note] });
            let answer = s.call(method, request).await;
            assert_eq!(
                answer,
                json!({ "status_code": 210, "status_message": DEVICES_NOT_ARRAY,
                        "response": { "Messages": [] } })
            );
        }
        for devices in [json!([]), json!(["+1", "+2"]), json!([null]), json!([""])] {
            let request = json!({ "auth": "t", "application": "A",
                                  "notifications": [ { "content": "x", "devices": devices } ] });
            assert_210(&s, method, request, "exactly one number", empty.clone()).await;
        }
    }
    assert_eq!(s.handle.sends(), 0);
}

#[tokio::test]
async fn targeted_filter_errors() {
    let s = sandbox().await;
    let base = json!({ "auth": "t", "content": "x", "send_date": "now" });
    let with = |filter: Value| {
        let mut r = base.clone();
        r["devices_filter"] = filter;
        r
    };
    assert_210(
        &s,
        "createTargetedMessage",
        base.clone(),
        "\"devices_filter\"",
        Value::Null,
    )
    .await;
    assert_210(
        &s,
        "createTargetedMessage",
        with(json!(3)),
        "\"devices_filter\"",
        Value::Null,
    )
    .await;
    for filter in ["A(\"X\" * T(\"City\", EQ, \"N\")", "", "  "] {
        let answer = s.call("createTargetedMessage", with(json!(filter))).await;
        assert_eq!(answer["status_code"], json!(210), "{answer}");
        assert_eq!(
            answer["status_message"],
            json!("Errors occurred while compiling filter")
        );
        let errors = answer["response"]["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0]["type"], json!("syntax"));
        assert!(
            errors[0]["message"]
                .as_str()
                .unwrap()
                .starts_with("Invalid tag set")
        );
    }
    let answer = s
        .call("createTargetedMessage", with(json!("A(\"X\"")))
        .await;
    assert_eq!(
        answer["response"]["errors"][0]["message"],
        json!("Invalid tag set specification. \")\" expected.")
    );
    assert_eq!(s.handle.sends(), 0);
}

#[tokio::test]
async fn message_methods_need_a_message() {
    let s = sandbox().await;
    for method in ["cancelMessage", "deleteMessage", "getMessageDetails"] {
        for request in [
            json!({ "auth": "t" }),
            json!({ "auth": "t", "message": "" }),
            json!({ "auth": "t", "message": [] }),
        ] {
            assert_210(&s, method, request, "\"message\"", Value::Null).await;
        }
        let unknown = json!({ "auth": "t", "message": "0000-00000000-00000000" });
        assert_210(&s, method, unknown, "Message not found", Value::Null).await;
        assert_210(
            &s,
            method,
            json!({ "message": "x" }),
            "\"auth\"",
            Value::Null,
        )
        .await;
    }
    assert_210(&s, "getPushHistory", json!({}), "\"auth\"", Value::Null).await;
}

#[tokio::test]
async fn malformed_bodies_get_http_400() {
    let s = sandbox().await;
    for body in [
        "",
        "not json",
        "{\"request\":",
        "[]",
        "{}",
        "{\"request\": 1}",
        "{\"request\": [1]}",
        "{\"request\": null}",
        "\"request\"",
    ] {
        let raw = s.post("createMessage", body).await;
        assert_eq!(raw.status, 400, "{body:?}: {}", raw.body);
        assert!(raw.body.starts_with("malformed request"), "{}", raw.body);
    }
    assert_eq!(s.handle.requests("createMessage"), 9);
}

#[tokio::test]
async fn unknown_token_is_forbidden_in_the_body() {
    let config = SandboxConfig {
        valid_tokens: vec!["good".into(), "also".into()],
        ..Default::default()
    };
    let s = sandbox_with(config).await;
    let request = |auth: &str| json!({ "auth": auth, "application": "A", "notifications": [{}] });
    only_code(&s.call("createMessage", request("good")).await);
    only_code(&s.call("createMessage", request("also")).await);
    let forbidden = json!({ "status_code": 403,
        "status_message": "Token restrictions forbid this operation", "response": null });
    assert_eq!(s.call("createMessage", request("bad")).await, forbidden);
    let history = s.call("getPushHistory", json!({ "auth": "goo" })).await;
    assert_eq!(history, forbidden);
    assert_210(
        &s,
        "createMessage",
        request(""),
        "\"auth\"",
        json!({ "Messages": [] }),
    )
    .await;
    assert_eq!(s.handle.sends(), 2);
}

#[tokio::test]
async fn odd_inputs_never_break_the_sandbox() {
    let s = sandbox().await;
    let odd = [
        json!({ "auth": "t", "application": ["A"], "notifications": [{}] }),
        json!({ "auth": "t", "application": "A", "notifications": [null, "x"] }),
        json!({ "auth": "t", "application": "A", "notifications": [{ "send_date": 5, "platforms": "1" }] }),
        json!({ "auth": "t", "application": "A", "notifications": [{ "send_date": "9999-99-99 99:99" }] }),
        json!({ "auth": "t", "limitMessages": -5, "lastNotificationID": "abc", "searchBy": 1 }),
        json!({ "auth": "t", "limitMessages": 1e300, "value": { "a": 1 } }),
        json!({ "auth": "t", "message": 123456789012345678u64 }),
        json!({ "auth": "t", "message": -1.5 }),
        json!({ "auth": "t", "devices_filter": "\\\\((\"", "transactionId": [] }),
        json!({ "auth": "\u{0}", "message": "\u{1F680}" }),
    ];
    let methods = [
        "createMessage",
        "createSMSMessage",
        "createWhatsAppMessage",
        "createTargetedMessage",
        "cancelMessage",
        "deleteMessage",
        "getMessageDetails",
        "getPushHistory",
    ];
    for method in methods {
        for request in &odd {
            let answer = s.call(method, request.clone()).await;
            let code = answer["status_code"].as_u64().unwrap();
            assert!(code == 200 || code == 210, "{method} {request}: {answer}");
        }
        let huge = format!("{{\"request\": {}}}", "[".repeat(10_000));
        assert_eq!(s.post(method, huge).await.status, 400);
    }
    let health = reqwest::get(format!("http://{}/healthz", s.handle.local_addr())).await;
    assert_eq!(health.unwrap().status().as_u16(), 200);
}
