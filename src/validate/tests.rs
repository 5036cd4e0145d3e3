//! Every request example of the Pushwoosh reference (seeds 000-002), minus `auth`, must validate clean.
//!
//! The examples are transcribed as they are, comments dropped. Where an example is a fragment,
//! the job is what it shows plus the method's required fields (said at each one). The Android
//! example's trailing comma inside `android_root_params` (not JSON) is dropped.

use serde_json::{Map, Value, json};

use crate::validate::{Options, Report, UnknownParams, validate};

pub(crate) fn request(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("test request must be an object, got {other}"),
    }
}

pub(crate) fn check(kind: &str, value: Value) -> Report {
    validate(kind, &request(value), &Options::default())
}

pub(crate) fn assert_clean(kind: &str, value: Value) {
    let report = check(kind, value);
    assert!(
        report.errors.is_empty(),
        "{kind}: unexpected errors: {:#?}",
        report.errors
    );
    assert!(
        report.warnings.is_empty(),
        "{kind}: unexpected warnings: {:#?}",
        report.warnings
    );
}

/// A createMessage job holding one platform example's notification.
pub(crate) fn push_with(notification: Value) -> Value {
    json!({ "application": "12345-67891", "notifications": [notification] })
}

#[test]
fn seed_create_sms_message() {
    assert_clean(
        "sms",
        json!({
            "application": "12345-67891",
            "notifications": [{
                "send_date": "now",
                "content": "Hello!",
                "devices": ["+1234567890"],
                "preset": "XXXXX-XXXXX",
                "use_auto_registration": true
            }]
        }),
    );
}

#[test]
fn seed_create_whatsapp_message() {
    assert_clean(
        "whatsapp",
        json!({
            "application": "12XXX-67XXX",
            "notifications": [{
                "send_date": "now",
                "content": "Hello! {{1}}",
                "content_id": "hello_world",
                "devices": ["whatsapp:+1234567890"],
                "preset": "XXXXX-XXXXX",
                "content_variables": { "1": "John" },
                "header_variables": { "image": "https://image-url.png" },
                "language": "en_GB",
                "use_auto_registration": true
            }]
        }),
    );
}

#[test]
fn seed_whatsapp_two_factor_code() {
    assert_clean(
        "whatsapp",
        json!({
            "application": "APP_CODE",
            "notifications": [{
                "send_date": "now",
                "content_id": "replace_with_your_meta_two_factor_template_name",
                "content_variables": { "1": "AUTH_CODE" },
                "button_url_variables": { "0": "AUTH_CODE" },
                "devices": ["whatsapp:REPLACE_WITH_YOUR_PHONE_NO"]
            }]
        }),
    );
}

#[test]
fn seed_create_message_full_example() {
    assert_clean(
        "push",
        json!({
            "application": "XXXXX-XXXXX",
            "notifications": [{
                "send_date": "now",
                "content": { "en": "English", "fr": "French" },
                "title": { "en": "Title", "fr": "Titre" },
                "subtitle": { "en": "Subtitle", "fr": "Sous-titre" },
                "ignore_user_timezone": true,
                "timezone": "America/New_York",
                "campaign": "CAMPAIGN_CODE",
                "geozone": { "lat": 22.22, "lng": 33.33, "range": 110 },
                "rich_media": "XXXXX-XXXXX",
                "link": "https://google.com",
                "minimize_link": 0,
                "data": { "key": "value" },
                "transactionId": "unique UUID",
                "platforms": [1, 3, 7, 8, 9, 10, 11, 12, 17],
                "preset": "XXXXX-XXXXX",
                "send_rate": 100,
                "send_rate_avoid": true,
                "template_bindings": { "TemplatePlaceholder": "Value" },
                "dynamic_content_placeholders": { "firstname": "John", "lastname": "Doe" },
                "capping_days": 30,
                "capping_count": 10,
                "capping_exclude": true,
                "capping_avoid": true,
                "inbox_date": "2017-02-02",
                "inbox_image": "Inbox image URL",
                "inbox_days": 5,
                "devices": ["hwid_XXXX"],
                "filter": "FILTER_NAME",
                "conditions": [["Country", "EQ", "fr"], ["Language", "EQ", "en"]],
                "conditions_operator": "AND"
            }]
        }),
    );
}

/// The full example also shows `users`; with `devices` too Pushwoosh ignores `devices`, which is
/// a warning, so `users` is checked in its own job.
#[test]
fn seed_create_message_users() {
    assert_clean(
        "push",
        push_with(json!({ "send_date": "now", "content": "Hi", "users": ["user_XXXX"] })),
    );
}

/// The VoIP examples show `application` and `notifications` (all createMessage requires); they
/// have no `send_date` or `content`, which createMessage does not require.
#[test]
fn seed_voip_ios() {
    assert_clean(
        "push",
        json!({
            "application": "XXXXX-XXXXX",
            "notifications": [{
                "voip_push": true,
                "ios_root_params": {
                    "aps": { "mutable-content": 1 },
                    "callerName": "CallerName",
                    "video": true,
                    "supportsHolding": true,
                    "supportsDTMF": false,
                    "callId": "42",
                    "cancelCall": true
                }
            }]
        }),
    );
}

#[test]
fn seed_voip_android() {
    assert_clean(
        "push",
        json!({
            "application": "XXXXX-XXXXX",
            "notifications": [{
                "voip_push": true,
                "android_root_params": {
                    "callerName": "callerName",
                    "video": true,
                    "callId": 42,
                    "cancelCall": true
                }
            }]
        }),
    );
}

/// The bash snippet's body, with its default message.
#[test]
fn seed_create_message_curl_snippet() {
    assert_clean(
        "push",
        push_with(json!({ "send_date": "now", "content": "One push to rule them all!" })),
    );
}

#[test]
fn seed_create_targeted_message() {
    assert_clean(
        "targeted",
        json!({
            "devices_filter": "A(\"XXXXX-XXXXX\") * T(\"City\", EQ, \"Name\")",
            "send_date": "now",
            "ignore_user_timezone": true,
            "timezone": "America/New_York",
            "campaign": "CAMPAIGN_CODE",
            "content": { "en": "English", "de": "Deutsch" },
            "transactionId": "unique UUID",
            "rich_media": "XXXXX-XXXXX",
            "link": "https://google.com",
            "minimize_link": 0,
            "data": { "key": "value" },
            "preset": "XXXXX-XXXXX",
            "send_rate": 100,
            "dynamic_content_placeholders": { "firstname": "John", "lastname": "Doe" },
            "inbox_image": "Inbox image URL",
            "inbox_date": "2017-02-02"
        }),
    );
}

#[test]
fn seed_cancel_delete_details() {
    for kind in ["cancel", "delete", "details"] {
        assert_clean(kind, json!({ "message": "xxxx-xxxxxxx-xxxxxx" }));
    }
}

#[test]
fn seed_details_by_message_id() {
    assert_clean("details", json!({ "message": 2068991743 }));
}

#[test]
fn seed_get_push_history() {
    assert_clean(
        "history",
        json!({
            "source": null,
            "searchBy": "applicationCode",
            "value": "C8717-703F2",
            "lastNotificationID": 0,
            "limitMessages": 1000
        }),
    );
    assert_clean("history", json!({}));
    assert_clean("history", json!({ "searchBy": "", "source": "A/B Test" }));
}

#[test]
fn unknown_params_parse() {
    assert_eq!("reject".parse::<UnknownParams>(), Ok(UnknownParams::Reject));
    assert_eq!("warn".parse::<UnknownParams>(), Ok(UnknownParams::Warn));
    assert_eq!("pass".parse::<UnknownParams>(), Ok(UnknownParams::Pass));
    assert!("Reject ".parse::<UnknownParams>().is_err());
    assert_eq!(Options::default().unknown_params, UnknownParams::Reject);
}

#[test]
fn unknown_kind_is_one_error() {
    let report = check("carrier-pigeon", json!({}));
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].path, "kind");
    assert!(!report.is_ok());
}

#[test]
fn problem_display() {
    let report = check("push", push_with(json!({ "send_rate": 5 })));
    let shown: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["notifications[0].send_rate: \"send_rate\" must be an integer from 100 to 1000, got 5."]
    );
}
