//! Property tests: `validate` and `filter::compile` never panic, whatever the input.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

use crate::validate::{Options, UnknownParams, filter, validate};

const KINDS: &[&str] = &[
    "push", "sms", "whatsapp", "targeted", "cancel", "delete", "details", "history", "other",
];

/// Keys that reach the interesting checks, plus arbitrary ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "application",
            "notifications",
            "send_date",
            "content",
            "devices",
            "users",
            "platforms",
            "conditions",
            "geozone",
            "devices_filter",
            "message",
            "limitMessages",
            "source",
            "searchBy",
            "timezone",
            "inbox_date",
            "ios_badges",
            "android_ibc",
            "wns_tag",
            "content_id",
            "data",
            "title",
            "send_rate",
            "lat",
            "lng",
            "range",
            "en",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        // Producer texts that only arbitrary_precision keeps as they are.
        "-?[0-9]{1,40}(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?"
            .prop_filter_map("a JSON number", |s| serde_json::from_str::<Value>(&s).ok()),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        any::<String>().prop_map(Value::String),
        prop::sample::select(vec![
            "now",
            "2024-02-29 10:00",
            "2023-02-30 10:00",
            "EQ",
            "IN",
            "BETWEEN",
            "NOTSET",
            "+1",
            "#ff0000",
            "A(\"X\") + T(\"a\", IN, [1, 2])",
            "T(\"a\", BETWEEN, [1,5)",
            "America/New_York",
            "90 days ago",
            "2022-02-28",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn request() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((key(), json_value()), 0..8).prop_map(|pairs| pairs.into_iter().collect())
}

fn options() -> impl Strategy<Value = Options> {
    prop::sample::select(vec![
        UnknownParams::Reject,
        UnknownParams::Warn,
        UnknownParams::Pass,
    ])
    .prop_map(|unknown_params| Options { unknown_params })
}

/// Filter-like text: the language's own pieces, shuffled, plus any characters.
fn filter_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "A",
            "T",
            "AT",
            "(",
            ")",
            "[",
            "]",
            ",",
            "+",
            "*",
            "\\",
            "\"",
            "\"x\"",
            "\"iOS\"",
            "EQ",
            "IN",
            "BETWEEN",
            "NOTSET",
            "-",
            "-1",
            "42",
            " ",
            "\u{e9}",
            "99999999999999999999",
        ])
        .prop_map(str::to_owned),
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..80).prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn validate_never_panics(kind in prop::sample::select(KINDS.to_vec()), request in request(), opts in options()) {
        let report = validate(kind, &request, &opts);
        prop_assert_eq!(report.is_ok(), report.errors.is_empty());
    }

    #[test]
    fn validate_never_panics_on_notifications(
        kind in prop::sample::select(vec!["push", "sms", "whatsapp"]),
        notifications in prop::collection::vec(json_value(), 0..4),
        extra in request(),
    ) {
        let mut request = extra;
        request.insert("application".into(), Value::String("ABCDE-12345".into()));
        request.insert("notifications".into(), Value::Array(notifications));
        let _ = validate(kind, &request, &Options::default());
    }

    #[test]
    fn compile_never_panics_on_any_string(src in any::<String>()) {
        let _ = filter::compile(&src);
    }

    #[test]
    fn compile_never_panics_on_filter_like_text(src in filter_text()) {
        if let Err(errors) = filter::compile(&src) {
            prop_assert!(!errors.is_empty());
            let len = src.chars().count();
            for e in errors {
                prop_assert!(e.position <= len);
                prop_assert!(e.kind == "syntax" || e.kind == "semantic");
            }
        }
    }

    #[test]
    fn compiled_filters_round_trip(src in filter_text()) {
        if let Ok(expr) = filter::compile(&src) {
            prop_assert_eq!(filter::compile(&expr.to_string()), Ok(expr));
        }
    }
}
