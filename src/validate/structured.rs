//! The structured parameters: device / user lists, platform codes, `geozone`, `devices_filter`.

use serde_json::{Map, Value};

use crate::validate::report::{Sink, clip, index, join};
use crate::validate::schema::{self, Rule};
use crate::validate::values::{describe, shown};
use crate::validate::{filter, suggest};

/// Pushwoosh platform codes and their names.
pub(crate) const PLATFORM_CODES: &[(i64, &str)] = &[
    (1, "iOS"),
    (3, "Android"),
    (7, "Mac OS X"),
    (8, "Windows"),
    (9, "Amazon"),
    (10, "Safari"),
    (11, "Chrome"),
    (12, "Firefox"),
    (17, "Huawei"),
];

const MAX_TARGETS: usize = 1000;

pub(crate) fn targets(rule: Rule, name: &str, path: &str, value: &Value, sink: &mut Sink) {
    let what = if name == "users" { "users" } else { "devices" };
    let Value::Array(items) = value else {
        sink.error(
            path,
            format!("Invalid {what} list. \"{name}\" must be an array."),
        );
        return;
    };
    if rule == Rule::OnePhone {
        if items.len() != 1 {
            sink.error(
                path,
                format!(
                    "Invalid {what} list. \"{name}\" must hold exactly one phone number, got {}.",
                    items.len()
                ),
            );
        }
    } else if items.is_empty() {
        // An empty list is refused rather than sent: Pushwoosh may read it as "no list",
        // which would send the push to every device of the application.
        sink.error(
            path,
            format!(
                "Invalid {what} list. \"{name}\" must not be empty (omit it to target all devices)."
            ),
        );
    } else if items.len() > MAX_TARGETS {
        sink.error(
            path,
            format!(
                "Invalid {what} list. \"{name}\" must hold at most {MAX_TARGETS} items, got {}.",
                items.len()
            ),
        );
    }
    for (i, item) in items.iter().enumerate() {
        if !matches!(item, Value::String(s) if !s.trim().is_empty()) {
            sink.error(
                &index(path, i),
                format!("Invalid {what} list. Each item of \"{name}\" must be a non-empty string, got {}.", shown(item)),
            );
        }
    }
}

pub(crate) fn platforms(name: &str, path: &str, value: &Value, sink: &mut Sink) {
    let valid = PLATFORM_CODES
        .iter()
        .map(|(c, n)| format!("{c} ({n})"))
        .collect::<Vec<_>>()
        .join(", ");
    let Value::Array(items) = value else {
        sink.error(
            path,
            format!(
                "Invalid platforms. \"{name}\" must be an array of platform codes, got {}.",
                describe(value)
            ),
        );
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let known = item
            .as_i64()
            .is_some_and(|c| PLATFORM_CODES.iter().any(|(k, _)| *k == c));
        if !known {
            sink.error(
                &index(path, i),
                format!(
                    "Invalid platforms. Unknown platform code {}; valid codes are {valid}.",
                    shown(item)
                ),
            );
        }
    }
}

pub(crate) fn geozone(name: &str, path: &str, value: &Value, sink: &mut Sink) {
    let Value::Object(map) = value else {
        sink.error(
            path,
            format!("Invalid geozone. \"{name}\" must be an object {{\"lat\", \"lng\", \"range\"}}, got {}.", describe(value)),
        );
        return;
    };
    let limits: [(&str, f64, f64, &str); 3] = [
        ("lat", -90.0, 90.0, "a latitude from -90 to 90"),
        ("lng", -180.0, 180.0, "a longitude from -180 to 180"),
        (
            "range",
            f64::MIN_POSITIVE,
            f64::MAX,
            "a positive distance in meters",
        ),
    ];
    for (key, min, max, what) in limits {
        let field = join(path, key);
        match map.get(key) {
            None => sink.error(&field, format!("Invalid geozone. \"{key}\" is required.")),
            Some(v) => {
                let ok = v
                    .as_f64()
                    .is_some_and(|x| x.is_finite() && x >= min && x <= max);
                if !v.is_number() || !ok {
                    sink.error(
                        &field,
                        format!(
                            "Invalid geozone. \"{key}\" must be {what}, got {}.",
                            shown(v)
                        ),
                    );
                }
            }
        }
    }
    unknown_keys(map, schema::GEOZONE_KEYS, path, sink);
}

/// Reports keys of `map` that are not in `known`, with a suggestion.
fn unknown_keys(map: &Map<String, Value>, known: &[&str], path: &str, sink: &mut Sink) {
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            let end = suggest::sentence_end(key, known.iter().copied());
            let end = if end == "." { String::new() } else { end };
            sink.unknown(
                &join(path, key),
                format!("unknown parameter \"{}\"{end}", clip(key)),
            );
        }
    }
}

pub(crate) fn devices_filter(name: &str, path: &str, value: &Value, sink: &mut Sink) {
    let Value::String(src) = value else {
        sink.error(
            path,
            format!("\"{name}\" must be a string, got {}.", describe(value)),
        );
        return;
    };
    if let Err(errors) = filter::compile(src) {
        for e in errors {
            sink.error(
                path,
                format!(
                    "Errors occurred while compiling filter: {} ({} error at position {})",
                    e.message, e.kind, e.position
                ),
            );
        }
    }
}
