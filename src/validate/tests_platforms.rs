//! The platform-specific createMessage examples of the reference (seed 001: iOS, Android, Huawei,
//! Safari, Chrome, Firefox, Amazon, Mac OS X, Windows) must validate clean.
//!
//! Each is a fragment: its notification is put in a job with `application`, all that
//! createMessage requires besides `notifications`.

use serde_json::json;

use crate::validate::tests::{assert_clean, check, push_with};

#[test]
fn seed_ios_parameters() {
    assert_clean(
        "push",
        push_with(json!({
            "ios_title": { "en": "title" },
            "ios_subtitle": { "en": "subtitle" },
            "ios_content": { "en": "content" },
            "ios_badges": 5,
            "ios_sound": "sound file.wav",
            "ios_sound_off": true,
            "ios_ttl": 3600,
            "ios_silent": 1,
            "ios_category_id": "1",
            "ios_root_params": {
                "aps": { "content-available": "0", "mutable-content": 1 },
                "callerName": "CallerName",
                "video": true,
                "supportsHolding": true,
                "supportsDTMF": false,
                "data": {}
            },
            "ios_attachment": "URL",
            "ios_thread_id": "some thread id",
            "ios_critical": true,
            "ios_category_custom": "category",
            "ios_interruption_level": "active",
            "apns_trim_content": 1
        })),
    );
}

#[test]
fn seed_android_parameters() {
    assert_clean(
        "push",
        push_with(json!({
            "android_header": { "en": "header" },
            "android_content": { "en": "content" },
            "android_root_params": {
                "key": "value",
                "CancelID": 12345678,
                "voip": true,
                "callerName": "callerName",
                "video": true
            },
            "android_sound": "soundfile",
            "android_sound_off": true,
            "android_icon": "icon.png",
            "android_custom_icon": "URL.png",
            "android_banner": "URL.png",
            "android_badges": 5,
            "android_gcm_ttl": 3600,
            "android_vibration": 0,
            "android_led": "#12ab9F",
            "android_priority": -1,
            "android_delivery_priority": "normal",
            "android_ibc": "#1A2B3C",
            "android_silent": 1,
            "android_group_id": "123"
        })),
    );
}

/// The seed's Android example writes placeholders for its colors (`"android_led": "#rrggbb"`,
/// `"android_ibc": "#RRGGBB"`); the test above puts real colors in their place, and this one
/// pins that the placeholders themselves are valid: a color the device only approximates is
/// no rule Pushwoosh enforces, so each gets a warning that says so, and no error.
#[test]
fn seed_android_color_placeholders_only_warn() {
    let report = check(
        "push",
        push_with(json!({ "android_led": "#rrggbb", "android_ibc": "#RRGGBB" })),
    );
    assert!(report.is_ok(), "unexpected errors: {:#?}", report.errors);
    let warnings: Vec<String> = report.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "notifications[0].android_led: \"android_led\" is not a hex color \"#rrggbb\", got \"#rrggbb\": the device shows its closest color or none.",
            "notifications[0].android_ibc: \"android_ibc\" is not a color \"#RRGGBB\", \"#AARRGGBB\" or a color name such as \"red\", got \"#RRGGBB\": the device may ignore it."
        ]
    );
}

#[test]
fn seed_huawei_parameters() {
    assert_clean(
        "push",
        push_with(json!({
            "huawei_android_header": { "en": "header" },
            "huawei_android_content": { "en": "content" },
            "huawei_android_badges": true,
            "huawei_android_silent": 0,
            "huawei_android_icon": "URL.png",
            "huawei_android_led": "#FF0011",
            "huawei_android_vibration": 1,
            "huawei_android_sound": "sound.wav",
            "huawei_android_sound_off": true,
            "huawei_android_custom_icon": "URL.png",
            "huawei_android_gcm_ttl": 2400,
            "huawei_android_banner": "URL.png",
            "huawei_android_root_params": { "key": "value" },
            "huawei_android_priority": 0,
            "huawei_android_ibc": "#0011AA",
            "huawei_android_lockscreen": 1,
            "huawei_android_delivery_priority": "normal",
            "huawei_android_group_id": "group_id"
        })),
    );
}

#[test]
fn seed_safari_parameters() {
    assert_clean(
        "push",
        push_with(json!({
            "safari_url_args": ["firstArgument", "secondArgument"],
            "safari_title": { "en": "content" },
            "safari_content": { "en": "content" },
            "safari_action": "Click here",
            "safari_ttl": 3600
        })),
    );
}

#[test]
fn seed_chrome_parameters() {
    assert_clean(
        "push",
        push_with(json!({
            "chrome_title": { "en": "title" },
            "chrome_content": { "en": "content" },
            "chrome_icon": "URL.png",
            "chrome_gcm_ttl": 3600,
            "chrome_duration": 20,
            "chrome_image": "image_URL",
            "chrome_root_params": { "key": "value" },
            "chrome_button_text1": "text1",
            "chrome_button_url1": "button1_URL",
            "chrome_button_text2": "text2",
            "chrome_button_url2": "button2_url"
        })),
    );
}

#[test]
fn seed_firefox_parameters() {
    assert_clean(
        "push",
        push_with(json!({
            "firefox_title": { "en": "title" },
            "firefox_content": { "en": "content" },
            "firefox_icon": "URL.png",
            "firefox_root_params": { "key": "value" }
        })),
    );
}

#[test]
fn seed_amazon_parameters() {
    assert_clean(
        "push",
        push_with(json!({
            "adm_header": { "en": "header" },
            "adm_content": { "en": "content" },
            "adm_root_params": { "key": "value" },
            "adm_sound": "push.mp3",
            "adm_sound_off": true,
            "adm_icon": "icon.png",
            "adm_custom_icon": "URL.png",
            "adm_banner": "URL.png",
            "adm_ttl": 3600,
            "adm_priority": -1
        })),
    );
}

#[test]
fn seed_mac_parameters() {
    assert_clean(
        "push",
        push_with(json!({
            "mac_title": { "en": "title" },
            "mac_subtitle": { "en": "subtitle" },
            "mac_content": { "en": "content" },
            "mac_badges": 3,
            "mac_sound": "sound.caf",
            "mac_sound_off": true,
            "mac_root_params": { "content-available": 1 },
            "mac_ttl": 3600
        })),
    );
}

#[test]
fn seed_windows_parameters() {
    assert_clean(
        "push",
        push_with(json!({
            "wns_content": {
                "en": "PD94bWwgdmVyc2lvbj0iMS4wIiBlbmNvZGluZz0iVVRGLTgiPz48YmFkZ2UgdmFsdWU9ImF2YWlsYWJsZSIvPg==",
                "de": "PD94bWwgdmVyc2lvbj0iMS4wIiBlbmNvZGluZz0iVVRGLTgiPz48YmFkZ2UgdmFsdWU9Im5ld01lc3NhZ2UiLz4="
            },
            "wns_type": "Badge",
            "wns_tag": "myTag",
            "wns_cache": 1,
            "wns_ttl": 600
        })),
    );
}
