//! The parameters the Pushwoosh reference documents, per place in a request, and the rule each obeys.
//!
//! A name not in the table for its place is "unknown" (see `suggest`). The contents of the
//! free-form objects (`FreeObject`, `Data`, `Localized`) are never checked for names.

/// What a parameter's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Any string, empty included (e.g. `ios_sound: ""` means the default sound).
    Str,
    /// A non-empty string (codes, ids).
    NonEmptyStr,
    /// A non-empty string or an integer (ids that Pushwoosh shows both ways).
    StrOrInt,
    /// A non-empty message code, or a non-negative integer message id.
    MessageRef,
    Bool,
    /// 0 or 1 (a boolean is taken too: Pushwoosh's backend reads both).
    ZeroOne,
    /// An integer in min..=max.
    Int(i64, i64),
    /// An integer >= 0 (time-to-live values, seconds).
    NonNegInt,
    /// An integer >= 1.
    PosInt,
    /// One of the listed strings, exactly.
    OneOf(&'static [&'static str]),
    /// null or one of the listed strings.
    NullableOneOf(&'static [&'static str]),
    /// 0 (do not shorten) or 2 (bit.ly).
    MinimizeLink,
    /// A string, or an object of language code -> string.
    Localized,
    /// A JSON object or a string (sent to the device as "u").
    Data,
    /// A JSON object whose contents are free.
    FreeObject,
    /// An array of strings (may be empty).
    StrList,
    /// An integer, or a string "+n" / "-n" (increment / decrement).
    Badge,
    /// Like `Badge`; the seed's Huawei example also shows `true`.
    BadgeOrBool,
    /// A string; "#rrggbb", or a warning (the device approximates the color: no enforced rule).
    LedColor,
    /// A string; "#RRGGBB", "#AARRGGBB" or an Android color name, or a warning (the
    /// reference's list ends in "etc."; its own example writes "#RRGGBB").
    IconColor,
    /// At most 16 alphanumeric characters.
    WnsTag,
    /// "now" or "YYYY-MM-DD HH:mm".
    SendDate,
    /// "YYYY-MM-DD".
    InboxDate,
    /// An IANA time zone name.
    Timezone,
    /// A list of push tokens / hwids / user ids: 1 to 1000 non-empty strings.
    Targets,
    /// Exactly one phone number (SMS, WhatsApp).
    OnePhone,
    /// An array of platform codes.
    Platforms,
    /// Tag conditions: [[tag, operator, operand], ...].
    Conditions,
    /// {"lat": .., "lng": .., "range": ..}.
    Geozone,
    /// A devices_filter expression (createTargetedMessage).
    DevicesFilter,
    /// The notifications array of createMessage / createSMSMessage / createWhatsAppMessage.
    Notifications,
}

pub(crate) type Table = &'static [(&'static str, Rule)];

use Rule::*;

const PRIORITY: Rule = Int(-2, 2);
const DELIVERY_PRIORITY: Rule = OneOf(&["normal", "high"]);

/// Top level of createMessage, createSMSMessage and createWhatsAppMessage.
pub(crate) const MESSAGE_REQUEST: Table = &[
    ("application", NonEmptyStr),
    ("notifications", Notifications),
];

/// A createMessage notification: the common parameters, then each platform's.
pub(crate) const PUSH_NOTIFICATION: Table = &[
    ("send_date", SendDate),
    ("content", Localized),
    ("title", Localized),
    ("subtitle", Localized),
    ("ignore_user_timezone", Bool),
    ("timezone", Timezone),
    ("campaign", NonEmptyStr),
    ("geozone", Geozone),
    ("rich_media", NonEmptyStr),
    ("link", Str),
    ("minimize_link", MinimizeLink),
    ("data", Data),
    ("transactionId", NonEmptyStr),
    ("platforms", Platforms),
    ("preset", NonEmptyStr),
    ("send_rate", Int(100, 1000)),
    ("send_rate_avoid", Bool),
    ("template_bindings", FreeObject),
    ("dynamic_content_placeholders", FreeObject),
    ("capping_days", Int(1, 30)),
    ("capping_count", PosInt),
    ("capping_exclude", Bool),
    ("capping_avoid", Bool),
    ("inbox_date", InboxDate),
    ("inbox_image", Str),
    ("inbox_days", Int(1, 30)),
    ("devices", Targets),
    ("users", Targets),
    ("filter", NonEmptyStr),
    ("conditions", Conditions),
    ("conditions_operator", OneOf(&["AND", "OR"])),
    ("voip_push", Bool),
    // iOS
    ("ios_title", Localized),
    ("ios_subtitle", Localized),
    ("ios_content", Localized),
    ("ios_badges", Badge),
    ("ios_sound", Str),
    ("ios_sound_off", Bool),
    ("ios_ttl", NonNegInt),
    ("ios_silent", ZeroOne),
    ("ios_category_id", StrOrInt),
    ("ios_root_params", FreeObject),
    ("ios_attachment", Str),
    ("ios_thread_id", Str),
    ("ios_critical", Bool),
    ("ios_category_custom", Str),
    (
        "ios_interruption_level",
        OneOf(&["passive", "active", "time-sensitive", "critical"]),
    ),
    ("apns_trim_content", ZeroOne),
    // Android
    ("android_header", Localized),
    ("android_content", Localized),
    ("android_root_params", FreeObject),
    ("android_sound", Str),
    ("android_sound_off", Bool),
    ("android_icon", Str),
    ("android_custom_icon", Str),
    ("android_banner", Str),
    ("android_badges", Badge),
    ("android_gcm_ttl", NonNegInt),
    ("android_vibration", ZeroOne),
    ("android_led", LedColor),
    ("android_priority", PRIORITY),
    ("android_delivery_priority", DELIVERY_PRIORITY),
    ("android_ibc", IconColor),
    ("android_silent", ZeroOne),
    ("android_group_id", StrOrInt),
    // Huawei
    ("huawei_android_header", Localized),
    ("huawei_android_content", Localized),
    ("huawei_android_badges", BadgeOrBool),
    ("huawei_android_silent", ZeroOne),
    ("huawei_android_icon", Str),
    ("huawei_android_led", LedColor),
    ("huawei_android_vibration", ZeroOne),
    ("huawei_android_sound", Str),
    ("huawei_android_sound_off", Bool),
    ("huawei_android_custom_icon", Str),
    ("huawei_android_gcm_ttl", NonNegInt),
    ("huawei_android_banner", Str),
    ("huawei_android_root_params", FreeObject),
    ("huawei_android_priority", PRIORITY),
    ("huawei_android_ibc", IconColor),
    ("huawei_android_lockscreen", ZeroOne),
    ("huawei_android_delivery_priority", DELIVERY_PRIORITY),
    ("huawei_android_group_id", StrOrInt),
    // Safari
    ("safari_url_args", StrList),
    ("safari_title", Localized),
    ("safari_content", Localized),
    ("safari_action", Str),
    ("safari_ttl", NonNegInt),
    // Chrome
    ("chrome_title", Localized),
    ("chrome_content", Localized),
    ("chrome_icon", Str),
    ("chrome_gcm_ttl", NonNegInt),
    ("chrome_duration", Int(0, 50)),
    ("chrome_image", Str),
    ("chrome_root_params", FreeObject),
    ("chrome_button_text1", Str),
    ("chrome_button_url1", Str),
    ("chrome_button_text2", Str),
    ("chrome_button_url2", Str),
    // Firefox
    ("firefox_title", Localized),
    ("firefox_content", Localized),
    ("firefox_icon", Str),
    ("firefox_root_params", FreeObject),
    // Amazon
    ("adm_header", Localized),
    ("adm_content", Localized),
    ("adm_root_params", FreeObject),
    ("adm_sound", Str),
    ("adm_sound_off", Bool),
    ("adm_icon", Str),
    ("adm_custom_icon", Str),
    ("adm_banner", Str),
    ("adm_ttl", NonNegInt),
    ("adm_priority", PRIORITY),
    // Mac OS X
    ("mac_title", Localized),
    ("mac_subtitle", Localized),
    ("mac_content", Localized),
    ("mac_badges", Badge),
    ("mac_sound", Str),
    ("mac_sound_off", Bool),
    ("mac_root_params", FreeObject),
    ("mac_ttl", NonNegInt),
    // Windows
    ("wns_content", Localized),
    ("wns_type", OneOf(&["Tile", "Toast", "Badge", "Raw"])),
    ("wns_tag", WnsTag),
    ("wns_cache", ZeroOne),
    ("wns_ttl", NonNegInt),
];

/// A createSMSMessage notification.
pub(crate) const SMS_NOTIFICATION: Table = &[
    ("send_date", SendDate),
    ("content", NonEmptyStr),
    ("devices", OnePhone),
    ("use_auto_registration", Bool),
    ("dynamic_content_placeholders", FreeObject),
    ("preset", NonEmptyStr),
];

/// A createWhatsAppMessage notification.
pub(crate) const WHATSAPP_NOTIFICATION: Table = &[
    ("send_date", SendDate),
    ("content", NonEmptyStr),
    ("content_id", NonEmptyStr),
    ("devices", OnePhone),
    ("use_auto_registration", Bool),
    ("content_variables", FreeObject),
    ("button_url_variables", FreeObject),
    ("header_variables", FreeObject),
    ("preset", NonEmptyStr),
    ("language", NonEmptyStr),
];

/// createTargetedMessage: the parameters of its table plus those its example shows
/// (`rich_media`, `dynamic_content_placeholders`).
pub(crate) const TARGETED_REQUEST: Table = &[
    ("devices_filter", DevicesFilter),
    ("send_date", SendDate),
    ("ignore_user_timezone", Bool),
    ("timezone", Timezone),
    ("campaign", NonEmptyStr),
    ("content", Localized),
    ("transactionId", NonEmptyStr),
    ("rich_media", NonEmptyStr),
    ("link", Str),
    ("minimize_link", MinimizeLink),
    ("data", Data),
    ("preset", NonEmptyStr),
    ("send_rate", Int(100, 1000)),
    ("dynamic_content_placeholders", FreeObject),
    ("inbox_date", InboxDate),
    ("inbox_image", Str),
];

/// cancelMessage and deleteMessage.
pub(crate) const MESSAGE_CODE_REQUEST: Table = &[("message", NonEmptyStr)];

/// getMessageDetails: "message code or message ID".
pub(crate) const DETAILS_REQUEST: Table = &[("message", MessageRef)];

/// getPushHistory.
pub(crate) const HISTORY_REQUEST: Table = &[
    (
        "source",
        NullableOneOf(&["CP", "API", "GeoZone", "RSS", "AutoPush", "A/B Test"]),
    ),
    (
        "searchBy",
        NullableOneOf(&[
            "",
            "notificationID",
            "notificationCode",
            "applicationCode",
            "campaignCode",
        ]),
    ),
    ("value", Str),
    ("lastNotificationID", StrOrInt),
    ("limitMessages", Int(10, 1000)),
];

/// The keys of a `geozone` object.
pub(crate) const GEOZONE_KEYS: &[&str] = &["lat", "lng", "range"];

/// The rule for `name` in `table`, if documented there.
pub(crate) fn lookup(table: Table, name: &str) -> Option<Rule> {
    table.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// The names documented in `table`.
pub(crate) fn names(table: Table) -> impl Iterator<Item = &'static str> {
    table.iter().map(|(n, _)| *n)
}
