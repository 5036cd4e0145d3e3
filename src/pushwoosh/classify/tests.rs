//! Tests of the classification: every kind of answer, and Pushwoosh's own words kept.

use std::time::Duration;

use serde_json::json;

use super::{HttpAnswer, TransportError, Verdict, classify};

fn http(status: u16, retry_after: Option<u64>, body: &str) -> Result<HttpAnswer, TransportError> {
    Ok(HttpAnswer {
        status,
        retry_after: retry_after.map(Duration::from_secs),
        body: bytes::Bytes::from(body.to_owned()),
    })
}

/// (case, answer, expected label, expected status_code, retry_after secs, may_have_reached)
type Case = (
    &'static str,
    Result<HttpAnswer, TransportError>,
    &'static str,
    Option<i64>,
    Option<u64>,
    bool,
);

#[test]
fn classifies_every_kind_of_answer() {
    let ok = r#"{"status_code":200,"status_message":"OK","response":{"Messages":["C3F8-C3863ED4-334AD4F1"]}}"#;
    let arg = r#"{"status_code":210,"status_message":"Invalid devices list. \"devices\" must be an array.","response":{"Messages":[]}}"#;
    let forbidden =
        r#"{"status_code":403,"status_message":"Token restrictions forbid this operation"}"#;
    let internal = r#"{"status_code":500,"status_message":"Internal error"}"#;
    let cases: Vec<Case> = vec![
        ("200 ok", http(200, None, ok), "ok", None, None, false),
        (
            "210 argument error",
            http(200, None, arg),
            "rejected",
            Some(210),
            None,
            false,
        ),
        (
            "http 400",
            http(400, None, "bad json"),
            "rejected",
            Some(400),
            None,
            false,
        ),
        (
            "403 in body",
            http(200, None, forbidden),
            "failed",
            Some(403),
            None,
            false,
        ),
        (
            "500 in body",
            http(200, None, internal),
            "transient",
            Some(500),
            None,
            false,
        ),
        (
            "200 not json",
            http(200, None, "<html>"),
            "transient",
            None,
            None,
            true,
        ),
        (
            "429 without retry-after",
            http(429, None, ""),
            "transient",
            Some(429),
            None,
            false,
        ),
        (
            "429 with retry-after",
            http(429, Some(7), ""),
            "transient",
            Some(429),
            Some(7),
            false,
        ),
        (
            "500",
            http(500, None, ""),
            "transient",
            Some(500),
            None,
            false,
        ),
        (
            "503",
            http(503, Some(2), ""),
            "transient",
            Some(503),
            Some(2),
            false,
        ),
        (
            "502",
            http(502, None, ""),
            "transient",
            Some(502),
            None,
            true,
        ),
        (
            "504",
            http(504, None, ""),
            "transient",
            Some(504),
            None,
            true,
        ),
        (
            "http 401",
            http(401, None, ""),
            "failed",
            Some(401),
            None,
            false,
        ),
        (
            "http 404",
            http(404, None, ""),
            "failed",
            Some(404),
            None,
            false,
        ),
        (
            "time-out after sending",
            Err(TransportError::Timeout {
                sent: true,
                after: Duration::from_secs(10),
            }),
            "transient",
            None,
            None,
            true,
        ),
        (
            "time-out connecting",
            Err(TransportError::Timeout {
                sent: false,
                after: Duration::from_secs(10),
            }),
            "transient",
            None,
            None,
            false,
        ),
        (
            "connection refused",
            Err(TransportError::Connect {
                message: "Connection refused (os error 111)".into(),
            }),
            "transient",
            None,
            None,
            false,
        ),
        (
            "reset mid-call",
            Err(TransportError::Other {
                message: "connection reset".into(),
            }),
            "transient",
            None,
            None,
            true,
        ),
    ];
    for (name, answer, label, code, retry_after, reached) in cases {
        let verdict = classify(&answer);
        assert_eq!(verdict.label(), label, "{name}: {verdict:?}");
        match verdict {
            Verdict::Success { response, .. } => {
                assert_eq!(
                    response,
                    json!({"Messages": ["C3F8-C3863ED4-334AD4F1"]}),
                    "{name}"
                )
            }
            Verdict::Rejected {
                status_code,
                status_message,
                ..
            } => {
                assert_eq!(Some(status_code), code, "{name}");
                assert!(!status_message.is_empty(), "{name}");
            }
            Verdict::Failed { status_code, .. } => assert_eq!(status_code, code, "{name}"),
            Verdict::Transient {
                status_code,
                retry_after: ra,
                may_have_reached,
                status_message,
            } => {
                assert_eq!(status_code, code, "{name}");
                assert_eq!(ra, retry_after.map(Duration::from_secs), "{name}");
                assert_eq!(may_have_reached, reached, "{name}");
                assert!(!status_message.is_empty(), "{name}");
            }
        }
    }
}

#[test]
fn pushwoosh_words_are_kept() {
    let v = classify(&http(
        200,
        None,
        r#"{"status_code":210,"status_message":"Invalid devices list. \"devices\" must be an array.","response":{"Messages":[]}}"#,
    ));
    let Verdict::Rejected {
        status_message,
        response,
        ..
    } = v
    else {
        panic!()
    };
    assert_eq!(
        status_message,
        "Invalid devices list. \"devices\" must be an array."
    );
    assert_eq!(response, json!({"Messages": []}));
    let Verdict::Transient { status_message, .. } = classify(&Err(TransportError::Timeout {
        sent: true,
        after: Duration::from_millis(1500),
    })) else {
        panic!()
    };
    assert!(status_message.contains("1500 ms"), "{status_message}");
}
