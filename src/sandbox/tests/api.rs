//! Success shapes of every method, both URL forms, de-duplication and the counters.

use std::time::Duration;

use serde_json::json;

use super::super::SandboxConfig;
use super::super::codes::is_code_shaped;
use super::{only_code, sandbox, sandbox_with};

#[tokio::test]
async fn create_message_answers_one_code_per_notification() {
    let s = sandbox().await;
    let answer = s
        .call(
            "createMessage",
            json!({ "auth": "tok", "application": "ABCDE-12345", "notifications": [
                { "send_date": "now", "content": "one" },
                { "send_date": "now", "content": { "en": "two" }, "platforms": [1, 3] } ] }),
        )
        .await;
    assert_eq!(answer["status_code"], json!(200));
    assert_eq!(answer["status_message"], json!("OK"));
    let codes = answer["response"]["Messages"].as_array().unwrap();
    assert_eq!(codes.len(), 2);
    assert!(codes.iter().all(|c| is_code_shaped(c.as_str().unwrap())));
    assert_ne!(codes[0], codes[1]);
    assert_eq!(s.handle.sends(), 2);
    assert_eq!(s.handle.requests("createMessage"), 1);
    assert_eq!(s.handle.requests("createSMSMessage"), 0);
    assert_eq!(s.handle.requests("noSuchMethod"), 0);
}

#[tokio::test]
async fn base_url_reports_the_real_port_and_both_paths_work() {
    let s = sandbox().await;
    let base = s.handle.base_url();
    assert!(base.starts_with("http://127.0.0.1:") && base.ends_with("/json/1.3"));
    assert_ne!(s.handle.local_addr().port(), 0);
    let body = json!({ "request": { "auth": "t", "application": "A-1",
        "notifications": [ { "content": "x" } ] } })
    .to_string();
    let url = format!("http://{}/createMessage", s.handle.local_addr());
    let raw = s.post_url(&url, body).await;
    assert_eq!(raw.status, 200, "{}", raw.body);
    only_code(&raw.json());
    assert_eq!(s.handle.requests("createMessage"), 1);
}

#[tokio::test]
async fn sms_and_whatsapp_answer_messages() {
    let s = sandbox().await;
    let sms = s
        .call(
            "createSMSMessage",
            json!({ "auth": "t", "application": "12345-67891", "notifications": [
                { "send_date": "now", "content": "Hello!", "devices": ["+1234567890"] } ] }),
        )
        .await;
    only_code(&sms);
    let whatsapp = s
        .call(
            "createWhatsAppMessage",
            json!({ "auth": "t", "application": "12345-67891", "notifications": [
                { "send_date": "now", "content_id": "hello_world",
                  "devices": ["whatsapp:+1234567890"] } ] }),
        )
        .await;
    only_code(&whatsapp);
    assert_eq!(s.handle.sends(), 2);
}

#[tokio::test]
async fn targeted_answers_a_message_code() {
    let s = sandbox().await;
    let answer = s
        .call(
            "createTargetedMessage",
            json!({ "auth": "t", "send_date": "now", "content": { "en": "Hi" },
                    "devices_filter": "A(\"XXXXX-XXXXX\") * T(\"City\", EQ, \"Name\")" }),
        )
        .await;
    assert_eq!(answer["status_code"], json!(200), "{answer}");
    assert!(is_code_shaped(
        answer["response"]["messageCode"].as_str().unwrap()
    ));
    assert_eq!(s.handle.sends(), 1);
}

#[tokio::test]
async fn details_cancel_delete_lifecycle() {
    let s = sandbox().await;
    let answer = s
        .call(
            "createMessage",
            json!({ "auth": "t", "application": "ABCDE-12345", "notifications": [
                { "send_date": "2031-05-06 07:08", "content": { "en": "Hello" },
                  "data": { "key": "value" }, "platforms": [1], "ignore_user_timezone": true } ] }),
        )
        .await;
    let code = only_code(&answer);
    let details = s
        .call("getMessageDetails", json!({ "auth": "t", "message": code }))
        .await;
    assert_eq!(details["status_code"], json!(200), "{details}");
    let m = &details["response"]["message"];
    assert!(m["id"].as_u64().is_some(), "{m}");
    assert_eq!(m["code"], json!(code));
    assert_eq!(m["status"], json!("done"));
    assert_eq!(m["send_date"], json!("2031-05-06 07:08:00"));
    assert_eq!(m["content"], json!({ "en": "Hello" }));
    assert_eq!(m["platforms"], json!("[1]"));
    assert_eq!(m["ignore_user_timezone"], json!("1"));
    assert_eq!(m["data"], json!({ "key": "value" }));
    assert_eq!(m["created"].as_str().unwrap().len(), 19);
    let by_id = s
        .call(
            "getMessageDetails",
            json!({ "auth": "t", "message": m["id"] }),
        )
        .await;
    assert_eq!(by_id["response"]["message"]["code"], json!(code));

    let cancel = s
        .call("cancelMessage", json!({ "auth": "t", "message": code }))
        .await;
    assert_eq!(
        cancel,
        json!({ "status_code": 200, "status_message": "OK" })
    );
    let details = s
        .call("getMessageDetails", json!({ "auth": "t", "message": code }))
        .await;
    assert_eq!(details["response"]["message"]["status"], json!("cancelled"));

    let delete = s
        .call("deleteMessage", json!({ "auth": "t", "message": code }))
        .await;
    assert_eq!(
        delete,
        json!({ "status_code": 200, "status_message": "OK" })
    );
    for method in ["getMessageDetails", "deleteMessage", "cancelMessage"] {
        let gone = s
            .call(method, json!({ "auth": "t", "message": code }))
            .await;
        assert_eq!(gone["status_code"], json!(210), "{method}: {gone}");
        assert_eq!(gone["status_message"], json!("Message not found"));
    }
}

#[tokio::test]
async fn history_lists_newest_first_with_limit_and_pagination() {
    let s = sandbox().await;
    let mut codes = Vec::new();
    for app in ["APP-1", "APP-1", "APP-2"] {
        codes.push(only_code(&s.push(app, None).await));
    }
    let all = s.call("getPushHistory", json!({ "auth": "t" })).await;
    let rows = all["response"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["code"], json!(codes[2]));
    let row = &rows[0];
    for key in [
        "id",
        "createDate",
        "sendDate",
        "content",
        "url",
        "conditions_operator",
        "filter_name",
        "campaignId",
        "open",
        "sent",
        "ctr",
    ] {
        assert!(row.get(key).is_some(), "{key} missing in {row}");
    }
    assert_eq!(row["conditions_operator"], json!("AND"));
    assert!(row["sent"]["APP-2"].is_object(), "{row}");

    let two = s
        .call("getPushHistory", json!({ "auth": "t", "limitMessages": 2 }))
        .await;
    let two = two["response"]["rows"].as_array().unwrap().clone();
    assert_eq!(two.len(), 2);
    let next = s
        .call(
            "getPushHistory",
            json!({ "auth": "t", "lastNotificationID": two[1]["id"] }),
        )
        .await;
    let next = next["response"]["rows"].as_array().unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0]["code"], json!(codes[0]));

    let app1 = s
        .call(
            "getPushHistory",
            json!({ "auth": "t", "searchBy": "applicationCode", "value": "APP-1", "source": null }),
        )
        .await;
    assert_eq!(app1["response"]["rows"].as_array().unwrap().len(), 2);
    let rss = s
        .call("getPushHistory", json!({ "auth": "t", "source": "RSS" }))
        .await;
    assert_eq!(rss["response"]["rows"], json!([]));
}

#[tokio::test]
async fn repeated_transaction_id_returns_the_same_code_and_sends_once() {
    let s = sandbox().await;
    let first = only_code(&s.push("APP-1", Some("job-1/0")).await);
    let again = only_code(&s.push("APP-1", Some("job-1/0")).await);
    assert_eq!(first, again);
    assert_eq!(s.handle.sends(), 1);
    assert_eq!(s.handle.requests("createMessage"), 2);
    let other_app = only_code(&s.push("APP-2", Some("job-1/0")).await);
    let other_tid = only_code(&s.push("APP-1", Some("job-1/1")).await);
    assert_ne!(first, other_app);
    assert_ne!(first, other_tid);
    assert_eq!(s.handle.sends(), 3);

    let targeted = json!({ "auth": "t", "devices_filter": "A(\"APP-1\")", "content": "x",
                           "send_date": "now", "transactionId": "tx-9" });
    let a = s.call("createTargetedMessage", targeted.clone()).await;
    let b = s.call("createTargetedMessage", targeted).await;
    assert_eq!(a["response"]["messageCode"], b["response"]["messageCode"]);
    assert_eq!(s.handle.sends(), 4);
}

#[tokio::test]
async fn dedup_forgets_after_the_window() {
    let config = SandboxConfig {
        dedup_window: Duration::from_millis(100),
        ..Default::default()
    };
    let s = sandbox_with(config).await;
    let first = only_code(&s.push("APP", Some("t")).await);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let later = only_code(&s.push("APP", Some("t")).await);
    assert_ne!(first, later);
    assert_eq!(s.handle.sends(), 2);
}

#[tokio::test]
async fn healthz_and_unknown_paths() {
    let s = sandbox().await;
    let url = format!("http://{}/healthz", s.handle.local_addr());
    let health = reqwest::get(&url).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    assert_eq!(s.post("sendCarrierPigeon", "{}").await.status, 404);
    let url = format!("http://{}/a/b/c", s.handle.local_addr());
    assert_eq!(s.post_url(&url, "{}").await.status, 404);
}
