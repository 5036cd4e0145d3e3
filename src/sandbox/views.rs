//! The JSON shapes of stored messages: getMessageDetails' `message` and getPushHistory's
//! `rows` (with its limitMessages / lastNotificationID / source / searchBy filters).

use serde_json::{Map, Value, json};

use super::state::{Kind, Message, Status, Store};

const MAX_ROWS: u64 = 1000;

fn param(m: &Message, key: &str) -> Value {
    m.params.get(key).cloned().unwrap_or(Value::Null)
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
        Some(Value::String(s)) => matches!(s.trim(), "1" | "true"),
        _ => false,
    }
}

/// Pushwoosh writes `platforms` as a JSON array inside a string, e.g. `"[1]"`.
fn platforms(m: &Message) -> String {
    match m.params.get("platforms") {
        Some(v @ Value::Array(_)) => v.to_string(),
        _ => match m.kind {
            Kind::Push | Kind::Targeted => "[1,3,7,8,9,10,11,12,17]".to_owned(),
            Kind::Sms | Kind::WhatsApp => "[]".to_owned(),
        },
    }
}

fn timestamp(m: &Message) -> String {
    m.created.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// getMessageDetails' `response.message`.
pub(super) fn details(m: &Message) -> Value {
    json!({
        "id": m.id,
        "created": timestamp(m),
        "send_date": m.send_date,
        "status": match m.status { Status::Done => "done", Status::Cancelled => "cancelled" },
        "content": param(m, "content"),
        "platforms": platforms(m),
        "ignore_user_timezone": if truthy(m.params.get("ignore_user_timezone")) { "1" } else { "0" },
        "code": m.code,
        "data": param(m, "data"),
    })
}

/// One getPushHistory row, shaped like the reference's example.
fn row(m: &Message) -> Value {
    let per_app = |v: Value| {
        let mut map = Map::new();
        if !m.application.is_empty() {
            map.insert(m.application.clone(), v);
        }
        Value::Object(map)
    };
    let channel = match m.kind {
        Kind::Sms => json!({ "SMS": 1 }),
        Kind::WhatsApp => json!({ "WHATSAPP": 1 }),
        Kind::Push | Kind::Targeted => json!({}),
    };
    let filter_conditions = match m.kind {
        Kind::Targeted => param(m, "devices_filter"),
        _ => Value::Null,
    };
    json!({
        "id": m.id,
        "code": m.code,
        "createDate": timestamp(m),
        "sendDate": m.send_date,
        "content": param(m, "content"),
        "title": param(m, "title"),
        "subtitle": param(m, "subtitle"),
        "url": param(m, "link"),
        "ios_title": param(m, "ios_title"),
        "ios_subtitle": param(m, "ios_subtitle"),
        "ios_root_params": param(m, "ios_root_params"),
        "android_header": param(m, "android_header"),
        "android_root_params": param(m, "android_root_params"),
        "conditions": param(m, "conditions"),
        "conditions_operator": m.params.get("conditions_operator").cloned().unwrap_or_else(|| "AND".into()),
        "filter_code": null,
        "filter_conditions": filter_conditions,
        "filter_name": param(m, "filter"),
        "geozone": param(m, "geozone"),
        "campaignId": m.params.get("campaign").cloned().unwrap_or_else(|| "".into()),
        "campaignName": "",
        "subscription_segments": null,
        "data": param(m, "data"),
        "open": per_app(json!({})),
        "sent": per_app(channel),
        "ctr": per_app(json!(0)),
    })
}

/// A string or a number, as text (for ids and search values).
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: Option<&Value>) -> Option<u64> {
    text(v)?.parse::<u64>().ok()
}

/// getPushHistory's `response.rows`: newest first, like Pushwoosh's (sorted by message id).
pub(super) fn history(req: &Map<String, Value>, store: &Store) -> Vec<Value> {
    let limit = number(req.get("limitMessages")).map_or(MAX_ROWS, |n| n.clamp(1, MAX_ROWS));
    let before = number(req.get("lastNotificationID")).filter(|id| *id > 0);
    let source_ok = match text(req.get("source")) {
        None => true,
        Some(s) => s.is_empty() || s.eq_ignore_ascii_case("API"),
    };
    if !source_ok {
        return Vec::new();
    }
    let search_by = text(req.get("searchBy")).unwrap_or_default();
    let value = text(req.get("value")).unwrap_or_default();
    let keep = |m: &Message| match search_by.as_str() {
        "notificationID" => m.id.to_string() == value,
        "notificationCode" => m.code == value,
        "applicationCode" => m.application == value,
        "campaignCode" => text(m.params.get("campaign")).is_some_and(|c| c == value),
        _ => true,
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    store.history(before, limit, keep).iter().map(row).collect()
}
