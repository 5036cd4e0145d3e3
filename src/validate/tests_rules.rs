//! One broken variant per validation rule: each must fail at its path with its own message.

use serde_json::{Value, json};

use crate::validate::tests::{check, request};
use crate::validate::{Options, UnknownParams, validate};

/// A valid createMessage job with `extra` merged into its one notification.
fn push(extra: Value) -> Value {
    let mut n = json!({ "send_date": "now", "content": "Hi" });
    merge(&mut n, extra);
    json!({ "application": "ABCDE-12345", "notifications": [n] })
}

fn sms(extra: Value) -> Value {
    let mut n = json!({ "send_date": "now", "content": "Hi", "devices": ["+1234567890"] });
    merge(&mut n, extra);
    json!({ "application": "ABCDE-12345", "notifications": [n] })
}

fn whatsapp(extra: Value) -> Value {
    let mut n =
        json!({ "send_date": "now", "content_id": "tpl", "devices": ["whatsapp:+1234567890"] });
    merge(&mut n, extra);
    json!({ "application": "ABCDE-12345", "notifications": [n] })
}

fn targeted(extra: Value) -> Value {
    let mut r = json!({ "devices_filter": "A(\"ABCDE-12345\")", "content": "Hi" });
    merge(&mut r, extra);
    r
}

/// Sets (or, for null, removes) each key of `extra` in `target`.
fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(t), Value::Object(e)) = (target, extra) {
        for (k, v) in e {
            if v.is_null() {
                t.remove(&k);
            } else {
                t.insert(k, v);
            }
        }
    }
}

fn expect_error(kind: &str, body: Value, path: &str, fragment: &str) {
    let report = check(kind, body);
    assert!(
        report
            .errors
            .iter()
            .any(|p| p.path == path && p.message.contains(fragment)),
        "expected an error at {path:?} containing {fragment:?}, got {:#?}",
        report.errors
    );
}

macro_rules! rejects {
    ($($name:ident: $kind:literal, $body:expr, $path:literal, $fragment:literal;)*) => {
        $(
            #[test]
            fn $name() {
                expect_error($kind, $body, $path, $fragment);
            }
        )*
    };
}

/// The job is valid (no error at all) and has exactly one warning, at `path`, containing `fragment`.
fn expect_warning(kind: &str, body: Value, path: &str, fragment: &str) {
    let report = check(kind, body);
    assert!(
        report.errors.is_empty(),
        "{path}: unexpected errors: {:#?}",
        report.errors
    );
    assert!(
        report.warnings.len() == 1
            && report.warnings[0].path == path
            && report.warnings[0].message.contains(fragment),
        "expected one warning at {path:?} containing {fragment:?}, got {:#?}",
        report.warnings
    );
}

/// Values the reference describes without a rule Pushwoosh enforces: a warning, never a rejection.
macro_rules! warns {
    ($($name:ident: $kind:literal, $body:expr, $path:literal, $fragment:literal;)*) => {
        $(
            #[test]
            fn $name() {
                expect_warning($kind, $body, $path, $fragment);
            }
        )*
    };
}

const N0: &str = "notifications[0]";

rejects! {
    push_missing_application: "push", json!({ "notifications": [{}] }), "application", "Missing required parameter \"application\"";
    push_application_not_string: "push", json!({ "application": 12345, "notifications": [{}] }), "application", "\"application\" must be a non-empty string";
    push_missing_notifications: "push", json!({ "application": "A" }), "notifications", "Missing required parameter \"notifications\"";
    push_notifications_not_array: "push", json!({ "application": "A", "notifications": {} }), "notifications", "must be an array of objects";
    push_notifications_empty: "push", json!({ "application": "A", "notifications": [] }), "notifications", "must not be empty";
    push_notification_not_object: "push", json!({ "application": "A", "notifications": ["hi"] }), "notifications[0]", "Each notification must be an object";
    send_date_format: "push", push(json!({ "send_date": "tomorrow" })), "notifications[0].send_date", "\"now\" or a date and time \"YYYY-MM-DD HH:mm\"";
    send_date_not_real: "push", push(json!({ "send_date": "2023-02-30 10:00" })), "notifications[0].send_date", "not a real date and time";
    send_date_not_string: "push", push(json!({ "send_date": 1700000000 })), "notifications[0].send_date", "must be a string";
    timezone_unknown: "push", push(json!({ "timezone": "Mars/Olympus" })), "notifications[0].timezone", "IANA time zone name";
    inbox_date_format: "push", push(json!({ "inbox_date": "2017/02/02" })), "notifications[0].inbox_date", "must be a date \"YYYY-MM-DD\"";
    inbox_date_not_real: "push", push(json!({ "inbox_date": "2017-02-29" })), "notifications[0].inbox_date", "not a real date";
    devices_not_array: "push", push(json!({ "devices": "hwid" })), "notifications[0].devices", "Invalid devices list. \"devices\" must be an array.";
    devices_empty: "push", push(json!({ "devices": [] })), "notifications[0].devices", "must not be empty";
    devices_too_many: "push", push(json!({ "devices": vec!["d"; 1001] })), "notifications[0].devices", "at most 1000 items, got 1001";
    devices_item_not_string: "push", push(json!({ "devices": ["a", 7] })), "notifications[0].devices[1]", "must be a non-empty string, got 7";
    users_too_many: "push", push(json!({ "users": vec!["u"; 1001] })), "notifications[0].users", "Invalid users list";
    platforms_unknown_code: "push", push(json!({ "platforms": [1, 5] })), "notifications[0].platforms[1]", "Unknown platform code 5";
    platforms_not_array: "push", push(json!({ "platforms": 1 })), "notifications[0].platforms", "must be an array of platform codes";
    send_rate_range: "push", push(json!({ "send_rate": 50 })), "notifications[0].send_rate", "from 100 to 1000, got 50";
    capping_days_range: "push", push(json!({ "capping_days": 31 })), "notifications[0].capping_days", "from 1 to 30, got 31";
    capping_days_integer: "push", push(json!({ "capping_days": 1.5 })), "notifications[0].capping_days", "must be an integer";
    capping_count_positive: "push", push(json!({ "capping_count": 0 })), "notifications[0].capping_count", "must be a positive integer";
    inbox_days_range: "push", push(json!({ "inbox_days": 0 })), "notifications[0].inbox_days", "from 1 to 30";
    android_priority_range: "push", push(json!({ "android_priority": 3 })), "notifications[0].android_priority", "from -2 to 2, got 3";
    huawei_priority_range: "push", push(json!({ "huawei_android_priority": -3 })), "notifications[0].huawei_android_priority", "from -2 to 2";
    adm_priority_type: "push", push(json!({ "adm_priority": "1" })), "notifications[0].adm_priority", "must be an integer from -2 to 2, got \"1\"";
    interruption_level: "push", push(json!({ "ios_interruption_level": "urgent" })), "notifications[0].ios_interruption_level", "one of \"passive\", \"active\", \"time-sensitive\", \"critical\"";
    wns_type_case: "push", push(json!({ "wns_type": "tile" })), "notifications[0].wns_type", "did you mean \"Tile\"?";
    delivery_priority: "push", push(json!({ "android_delivery_priority": "urgent" })), "notifications[0].android_delivery_priority", "one of \"normal\", \"high\"";
    huawei_delivery_priority: "push", push(json!({ "huawei_android_delivery_priority": "low" })), "notifications[0].huawei_android_delivery_priority", "one of \"normal\", \"high\"";
    minimize_link_value: "push", push(json!({ "minimize_link": 1 })), "notifications[0].minimize_link", "0 (do not shorten) or 2 (bit.ly)";
    conditions_operator_value: "push", push(json!({ "conditions_operator": "XOR" })), "notifications[0].conditions_operator", "one of \"AND\", \"OR\"";
    chrome_duration_range: "push", push(json!({ "chrome_duration": 51 })), "notifications[0].chrome_duration", "from 0 to 50";
    apns_trim_content_flag: "push", push(json!({ "apns_trim_content": 2 })), "notifications[0].apns_trim_content", "must be 0 or 1";
    wns_cache_flag: "push", push(json!({ "wns_cache": "1" })), "notifications[0].wns_cache", "must be 0 or 1";
    android_silent_flag: "push", push(json!({ "android_silent": 2 })), "notifications[0].android_silent", "must be 0 or 1";
    huawei_silent_flag: "push", push(json!({ "huawei_android_silent": -1 })), "notifications[0].huawei_android_silent", "must be 0 or 1";
    ios_silent_flag: "push", push(json!({ "ios_silent": 5 })), "notifications[0].ios_silent", "must be 0 or 1";
    ios_badges_form: "push", push(json!({ "ios_badges": "++1" })), "notifications[0].ios_badges", "\"+n\" / \"-n\"";
    android_badges_float: "push", push(json!({ "android_badges": 1.5 })), "notifications[0].android_badges", "must be an integer, or a string";
    mac_badges_word: "push", push(json!({ "mac_badges": "five" })), "notifications[0].mac_badges", "\"+n\" / \"-n\"";
    wns_tag_alphanumeric: "push", push(json!({ "wns_tag": "my-tag" })), "notifications[0].wns_tag", "1 to 16 alphanumeric characters";
    wns_tag_length: "push", push(json!({ "wns_tag": "abcdefghijklmnopq" })), "notifications[0].wns_tag", "1 to 16 alphanumeric";
    android_led_not_string: "push", push(json!({ "android_led": 255 })), "notifications[0].android_led", "\"android_led\" must be a string (a hex color \"#rrggbb\"), got a number";
    huawei_led_not_string: "push", push(json!({ "huawei_android_led": ["#FF0011"] })), "notifications[0].huawei_android_led", "must be a string (a hex color \"#rrggbb\"), got an array";
    android_ibc_not_string: "push", push(json!({ "android_ibc": false })), "notifications[0].android_ibc", "\"android_ibc\" must be a string (a color \"#RRGGBB\", \"#AARRGGBB\" or a color name), got a boolean";
    content_type: "push", push(json!({ "content": 5 })), "notifications[0].content", "\"content\" must be a string or an object of language code -> string";
    title_language_value: "push", push(json!({ "title": { "en": 5 } })), "notifications[0].title.en", "\"en\" is a number";
    ios_title_array: "push", push(json!({ "ios_title": ["t"] })), "notifications[0].ios_title", "\"ios_title\" must be a string or an object";
    android_header_type: "push", push(json!({ "android_header": true })), "notifications[0].android_header", "\"android_header\" must be a string or an object";
    data_type: "push", push(json!({ "data": 5 })), "notifications[0].data", "must be a JSON object or a string";
    geozone_missing_range: "push", push(json!({ "geozone": { "lat": 1, "lng": 2 } })), "notifications[0].geozone.range", "\"range\" is required";
    geozone_lat_string: "push", push(json!({ "geozone": { "lat": "22", "lng": 2, "range": 1 } })), "notifications[0].geozone.lat", "a latitude from -90 to 90";
    geozone_lng_range: "push", push(json!({ "geozone": { "lat": 1, "lng": 200, "range": 1 } })), "notifications[0].geozone.lng", "a longitude";
    geozone_not_object: "push", push(json!({ "geozone": "x" })), "notifications[0].geozone", "must be an object";
    geozone_unknown_key: "push", push(json!({ "geozone": { "lat": 1, "lng": 2, "range": 1, "rnage": 3 } })), "notifications[0].geozone.rnage", "did you mean \"range\"?";
    safari_url_args_type: "push", push(json!({ "safari_url_args": "x" })), "notifications[0].safari_url_args", "must be an array of strings";
    safari_url_args_item: "push", push(json!({ "safari_url_args": [1] })), "notifications[0].safari_url_args[0]", "must be an array of strings";
    root_params_object: "push", push(json!({ "ios_root_params": "x" })), "notifications[0].ios_root_params", "\"ios_root_params\" must be an object";
    template_bindings_object: "push", push(json!({ "template_bindings": [] })), "notifications[0].template_bindings", "must be an object";
    voip_push_bool: "push", push(json!({ "voip_push": "true" })), "notifications[0].voip_push", "must be a boolean";
    transaction_id_empty: "push", push(json!({ "transactionId": "" })), "notifications[0].transactionId", "\"transactionId\" must not be empty";
    ignore_user_timezone_bool: "push", push(json!({ "ignore_user_timezone": 1 })), "notifications[0].ignore_user_timezone", "must be a boolean (true or false), got 1";
    sound_off_bool: "push", push(json!({ "ios_sound_off": "yes" })), "notifications[0].ios_sound_off", "must be a boolean";
    ttl_negative: "push", push(json!({ "ios_ttl": -1 })), "notifications[0].ios_ttl", "non-negative integer";
    link_type: "push", push(json!({ "link": 1 })), "notifications[0].link", "\"link\" must be a string";
    unknown_notification_param: "push", push(json!({ "andriod_header": "x" })), "notifications[0].andriod_header", "unknown parameter \"andriod_header\"; did you mean \"android_header\"?";
    unknown_top_level_param: "push", json!({ "application": "A", "notifications": [{}], "aplication": "B" }), "aplication", "did you mean \"application\"?";
    notification_param_at_top: "push", json!({ "application": "A", "notifications": [{}], "send_date": "now" }), "send_date", "belongs in each element of \"notifications\"";
    unknown_far_param_has_no_hint: "push", push(json!({ "zzzzzz": 1 })), "notifications[0].zzzzzz", "unknown parameter \"zzzzzz\"";
    conditions_not_array: "push", push(json!({ "conditions": "x" })), "notifications[0].conditions", "array of [tagName, operator, operand] arrays";
    condition_not_array: "push", push(json!({ "conditions": ["Country"] })), "notifications[0].conditions[0]", "Each condition must be an array";
    condition_length: "push", push(json!({ "conditions": [["a", "EQ", 1, 2]] })), "notifications[0].conditions[0]", "got 4 items";
    condition_tag_name: "push", push(json!({ "conditions": [["", "EQ", 1]] })), "notifications[0].conditions[0][0]", "tag name must be a non-empty string";
    condition_operator_unknown: "push", push(json!({ "conditions": [["a", "EQUALS", 1]] })), "notifications[0].conditions[0][1]", "Unknown operator \"EQUALS\"";
    condition_operator_lowercase: "push", push(json!({ "conditions": [["a", "eq", 1]] })), "notifications[0].conditions[0][1]", "did you mean \"EQ\"?";
    condition_in_scalar: "push", push(json!({ "conditions": [["a", "IN", "x"]] })), "notifications[0].conditions[0][2]", "Operator IN needs an array operand";
    condition_notin_empty: "push", push(json!({ "conditions": [["a", "NOTIN", []]] })), "notifications[0].conditions[0][2]", "Operator NOTIN needs a non-empty array";
    condition_in_item: "push", push(json!({ "conditions": [["a", "IN", [1.5]]] })), "notifications[0].conditions[0][2]", "array item 0 must be a string or an integer";
    condition_between_count: "push", push(json!({ "conditions": [["a", "BETWEEN", [1, 2, 3]]] })), "notifications[0].conditions[0][2]", "exactly 2 items [min, max], got 3 items";
    condition_between_order: "push", push(json!({ "conditions": [["a", "BETWEEN", [5, 1]]] })), "notifications[0].conditions[0][2]", "min <= max, got [5, 1]";
    condition_between_dates_order: "push", push(json!({ "conditions": [["d", "BETWEEN", ["2022-03-02", "2022-02-28"]]] })), "notifications[0].conditions[0][2]", "min <= max";
    condition_between_word: "push", push(json!({ "conditions": [["a", "BETWEEN", ["low", 2]]] })), "notifications[0].conditions[0][2]", "item 0 must be an integer or a date";
    condition_eq_array: "push", push(json!({ "conditions": [["a", "EQ", [1]]] })), "notifications[0].conditions[0][2]", "needs a single value, not an array";
    condition_gte_word: "push", push(json!({ "conditions": [["a", "GTE", "abc"]] })), "notifications[0].conditions[0][2]", "Operator GTE needs an integer or a date";
    condition_noteq_bool: "push", push(json!({ "conditions": [["a", "NOTEQ", true]] })), "notifications[0].conditions[0][2]", "Operator NOTEQ needs a string or an integer";
    condition_eq_missing_operand: "push", push(json!({ "conditions": [["a", "EQ"]] })), "notifications[0].conditions[0]", "Operator EQ needs an operand";
    sms_missing_send_date: "sms", sms(json!({ "send_date": null })), "notifications[0].send_date", "Missing required parameter \"send_date\"";
    sms_missing_devices: "sms", sms(json!({ "devices": null })), "notifications[0].devices", "Missing required parameter \"devices\"";
    sms_missing_content: "sms", sms(json!({ "content": null })), "notifications[0].content", "Missing required parameter \"content\"";
    sms_two_numbers: "sms", sms(json!({ "devices": ["+1", "+2"] })), "notifications[0].devices", "exactly one phone number, got 2";
    sms_devices_not_array: "sms", sms(json!({ "devices": "+1" })), "notifications[0].devices", "Invalid devices list. \"devices\" must be an array.";
    sms_content_empty: "sms", sms(json!({ "content": "" })), "notifications[0].content", "\"content\" must not be empty";
    sms_content_object: "sms", sms(json!({ "content": { "en": "x" } })), "notifications[0].content", "must be a non-empty string";
    sms_push_param_unknown: "sms", sms(json!({ "ios_title": "x" })), "notifications[0].ios_title", "unknown parameter \"ios_title\"";
    sms_use_auto_registration_bool: "sms", sms(json!({ "use_auto_registration": "true" })), "notifications[0].use_auto_registration", "must be a boolean";
    sms_missing_application: "sms", json!({ "notifications": [] }), "application", "Missing required parameter";
    whatsapp_no_content: "whatsapp", whatsapp(json!({ "content_id": null })), "notifications[0].content", "\"content\" or \"content_id\"";
    whatsapp_no_number: "whatsapp", whatsapp(json!({ "devices": [] })), "notifications[0].devices", "exactly one phone number, got 0";
    whatsapp_content_variables: "whatsapp", whatsapp(json!({ "content_variables": "x" })), "notifications[0].content_variables", "must be an object";
    whatsapp_missing_send_date: "whatsapp", whatsapp(json!({ "send_date": null })), "notifications[0].send_date", "Missing required parameter";
    targeted_missing_filter: "targeted", targeted(json!({ "devices_filter": null })), "devices_filter", "Missing required parameter \"devices_filter\"";
    targeted_missing_content: "targeted", targeted(json!({ "content": null })), "content", "Missing required parameter \"content\"";
    targeted_filter_not_string: "targeted", targeted(json!({ "devices_filter": ["A"] })), "devices_filter", "\"devices_filter\" must be a string";
    targeted_filter_syntax: "targeted", targeted(json!({ "devices_filter": "T(\"Level\", BETWEEN, [1,5)" })), "devices_filter", "Errors occurred while compiling filter: Invalid tag set specification. \"]\" expected. (syntax error at position 24)";
    targeted_filter_semantic: "targeted", targeted(json!({ "devices_filter": "A(\"X\", [\"Linux\"])" })), "devices_filter", "Unknown platform \"Linux\"";
    targeted_send_date: "targeted", targeted(json!({ "send_date": "2024-01-01T10:00" })), "send_date", "\"YYYY-MM-DD HH:mm\"";
    targeted_platform_param_unknown: "targeted", targeted(json!({ "platforms": [1] })), "platforms", "unknown parameter \"platforms\"";
    targeted_timezone: "targeted", targeted(json!({ "timezone": "EST5" })), "timezone", "IANA time zone name";
    cancel_missing_message: "cancel", json!({}), "message", "Missing required parameter \"message\"";
    cancel_message_empty: "cancel", json!({ "message": "" }), "message", "\"message\" must not be empty";
    delete_message_number: "delete", json!({ "message": 5 }), "message", "\"message\" must be a non-empty string";
    details_message_negative: "details", json!({ "message": -1 }), "message", "message code (non-empty string) or a message ID (integer)";
    details_missing_message: "details", json!({}), "message", "Missing required parameter";
    history_limit_low: "history", json!({ "limitMessages": 5 }), "limitMessages", "from 10 to 1000, got 5";
    history_limit_high: "history", json!({ "limitMessages": 1001 }), "limitMessages", "from 10 to 1000";
    history_source: "history", json!({ "source": "Web" }), "source", "null or one of \"CP\", \"API\"";
    history_search_by: "history", json!({ "searchBy": "notificationid" }), "searchBy", "did you mean \"notificationID\"?";
    history_unknown_param: "history", json!({ "lastNotificationId": 1 }), "lastNotificationId", "did you mean \"lastNotificationID\"?";
}

warns! {
    android_led_color: "push", push(json!({ "android_led": "red" })), "notifications[0].android_led", "\"android_led\" is not a hex color \"#rrggbb\", got \"red\": the device shows its closest color or none.";
    huawei_led_color: "push", push(json!({ "huawei_android_led": "#FF00" })), "notifications[0].huawei_android_led", "hex color \"#rrggbb\"";
    android_ibc_color: "push", push(json!({ "android_ibc": "#12345" })), "notifications[0].android_ibc", "\"#RRGGBB\", \"#AARRGGBB\" or a color name";
    android_ibc_name: "push", push(json!({ "android_ibc": "rde" })), "notifications[0].android_ibc", "did you mean \"red\"?";
    huawei_ibc_color: "push", push(json!({ "huawei_android_ibc": "#GG0000" })), "notifications[0].huawei_android_ibc", "\"huawei_android_ibc\" is not a color \"#RRGGBB\"";
}

#[test]
fn unknown_params_warn_and_pass() {
    let body = request(push(json!({ "andriod_header": "x" })));
    let warn = validate(
        "push",
        &body,
        &Options {
            unknown_params: UnknownParams::Warn,
        },
    );
    assert!(warn.is_ok());
    assert_eq!(warn.warnings.len(), 1);
    assert_eq!(
        warn.warnings[0].to_string(),
        "notifications[0].andriod_header: unknown parameter \"andriod_header\"; did you mean \"android_header\"?"
    );
    let pass = validate(
        "push",
        &body,
        &Options {
            unknown_params: UnknownParams::Pass,
        },
    );
    assert!(pass.is_ok() && pass.warnings.is_empty());
}

#[test]
fn free_form_objects_hold_anything() {
    let report = check(
        "push",
        push(json!({
            "data": { "anything": [1, { "x": null }] },
            "template_bindings": { "whatever": 1 },
            "dynamic_content_placeholders": { "x": "y" },
            "android_root_params": { "nested": { "deep": true } },
            "content": { "xx-unknown-lang": "text" }
        })),
    );
    assert!(
        report.errors.is_empty() && report.warnings.is_empty(),
        "{report:?}"
    );
}

#[test]
fn lenient_forms_are_accepted() {
    let report = check(
        "push",
        push(json!({
            "data": "{\"k\":1}",
            "ios_badges": "+1",
            "android_badges": "-2",
            "android_ibc": "#80FF0000",
            "huawei_android_ibc": "Red",
            "android_silent": true,
            "conditions": [["a", "NOTSET"], ["b", "ANY", 1], ["c", "BETWEEN", ["2022-02-28", "90 days ago"]],
                           ["d", "EQ", true], ["e", "GTE", 1234567890], ["f", "LTE", "2022-02-28 00:00"]],
            "send_date": "2030-12-31 23:59",
            "timezone": "UTC"
        })),
    );
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
}

#[test]
fn devices_and_users_together_warn() {
    let report = check("push", push(json!({ "devices": ["d"], "users": ["u"] })));
    assert!(report.is_ok());
    assert_eq!(report.warnings.len(), 1);
    assert_eq!(report.warnings[0].path, format!("{N0}.devices"));
}

#[test]
fn targeted_send_date_is_optional() {
    let report = check("targeted", targeted(json!({})));
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
}

#[test]
fn every_problem_is_reported() {
    let report = check(
        "push",
        json!({ "notifications": [{ "send_rate": 1, "capping_days": 99 }, { "ios_silent": 9 }] }),
    );
    let paths: Vec<&str> = report.errors.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "application",
            "notifications[0].send_rate",
            "notifications[0].capping_days",
            "notifications[1].ios_silent"
        ]
    );
}

#[test]
fn several_filter_errors_become_several_problems() {
    let report = check(
        "targeted",
        targeted(json!({ "devices_filter": "T(\"a\", IN, 1) + A(\"X\", [\"Web\"])" })),
    );
    let filter_errors = report
        .errors
        .iter()
        .filter(|p| p.path == "devices_filter")
        .count();
    assert_eq!(filter_errors, 2, "{:#?}", report.errors);
}

#[test]
fn producer_text_is_clipped_in_messages() {
    let long = "k".repeat(10_000);
    let report = check(
        "push",
        push(json!({ long.clone(): 1, "timezone": long.clone() })),
    );
    assert_eq!(report.errors.len(), 2, "{:#?}", report.errors);
    assert!(report.errors.iter().all(|p| p.message.len() < 300));
    assert!(
        report
            .errors
            .iter()
            .any(|p| p.path == format!("{N0}.{long}"))
    );
}
