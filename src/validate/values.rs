//! Checks one parameter's value against its `Rule` (types, ranges, enumerations, formats).

use serde_json::Value;

use crate::validate::report::{Sink, clip, index, join};
use crate::validate::schema::Rule;
use crate::validate::{conditions, dates, structured, suggest};

/// "a string", "an array", ... for messages.
pub fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value as given, for messages (numbers keep the producer's text), shortened.
pub(crate) fn shown(v: &Value) -> String {
    let text = match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_owned(),
        other => return describe(other).to_owned(),
    };
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// `shown(value)`, worked out only when a message is written: a valid job writes none.
struct Shown<'a>(&'a Value);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&shown(self.0))
    }
}

/// Android's `Color.parseColor` names, which `android_ibc` takes without a warning.
const ANDROID_COLOR_NAMES: &[&str] = &[
    "black",
    "darkgray",
    "darkgrey",
    "gray",
    "grey",
    "lightgray",
    "lightgrey",
    "white",
    "red",
    "green",
    "blue",
    "yellow",
    "cyan",
    "magenta",
    "aqua",
    "fuchsia",
    "lime",
    "maroon",
    "navy",
    "olive",
    "purple",
    "silver",
    "teal",
];

fn is_hex_color(s: &str, digits: usize) -> bool {
    s.len() == digits + 1 && s.starts_with('#') && s.bytes().skip(1).all(|b| b.is_ascii_hexdigit())
}

fn is_signed_count(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('+' | '-'))
        && !chars.as_str().is_empty()
        && chars.all(|c| c.is_ascii_digit())
}

/// Checks `value` of parameter `name` at `path`.
pub(crate) fn check(rule: Rule, name: &str, path: &str, value: &Value, sink: &mut Sink) {
    let got = Shown(value);
    let int = match value {
        Value::Number(n) => n.as_i64(),
        _ => None,
    };
    match rule {
        Rule::Str => {
            if !value.is_string() {
                sink.error(path, format!("\"{name}\" must be a string, got {}.", describe(value)));
            }
        }
        Rule::NonEmptyStr => match value {
            Value::String(s) if !s.trim().is_empty() => {}
            Value::String(_) => sink.error(path, format!("\"{name}\" must not be empty.")),
            _ => sink.error(
                path,
                format!("\"{name}\" must be a non-empty string, got {}.", describe(value)),
            ),
        },
        Rule::StrOrInt => match value {
            Value::String(s) if !s.trim().is_empty() => {}
            Value::Number(_) if int.is_some() => {}
            _ => sink.error(
                path,
                format!("\"{name}\" must be a non-empty string or an integer, got {got}."),
            ),
        },
        Rule::MessageRef => match value {
            Value::String(s) if !s.trim().is_empty() => {}
            Value::Number(_) if int.is_some_and(|i| i >= 0) => {}
            _ => sink.error(
                path,
                format!("Invalid message. \"{name}\" must be a message code (non-empty string) or a message ID (integer), got {got}."),
            ),
        },
        Rule::Bool => {
            if !value.is_boolean() {
                sink.error(path, format!("\"{name}\" must be a boolean (true or false), got {got}."));
            }
        }
        Rule::ZeroOne => {
            if !(value.is_boolean() || matches!(int, Some(0 | 1))) {
                sink.error(path, format!("\"{name}\" must be 0 or 1, got {got}."));
            }
        }
        Rule::Int(min, max) => {
            if !int.is_some_and(|i| (min..=max).contains(&i)) {
                sink.error(path, format!("\"{name}\" must be an integer from {min} to {max}, got {got}."));
            }
        }
        Rule::NonNegInt => {
            if int.is_none_or(|i| i < 0) {
                sink.error(path, format!("\"{name}\" must be a non-negative integer (seconds), got {got}."));
            }
        }
        Rule::PosInt => {
            if int.is_none_or(|i| i < 1) {
                sink.error(path, format!("\"{name}\" must be a positive integer, got {got}."));
            }
        }
        Rule::OneOf(allowed) | Rule::NullableOneOf(allowed) => {
            let nullable = matches!(rule, Rule::NullableOneOf(_));
            let ok = match value {
                Value::Null => nullable,
                Value::String(s) => allowed.contains(&s.as_str()),
                _ => false,
            };
            if !ok {
                let list = allowed
                    .iter()
                    .map(|a| format!("\"{a}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                let null = if nullable { "null or " } else { "" };
                let end = match value {
                    Value::String(s) => suggest::sentence_end(s, allowed.iter().copied()),
                    _ => ".".to_owned(),
                };
                sink.error(path, format!("\"{name}\" must be {null}one of {list}, got {got}{end}"));
            }
        }
        Rule::MinimizeLink => {
            if !matches!(int, Some(0 | 2)) {
                sink.error(
                    path,
                    format!("\"{name}\" must be 0 (do not shorten) or 2 (bit.ly), got {got}."),
                );
            }
        }
        Rule::Localized => localized(name, path, value, sink),
        Rule::Data => {
            if !(value.is_object() || value.is_string()) {
                sink.error(
                    path,
                    format!("\"{name}\" must be a JSON object or a string, got {}.", describe(value)),
                );
            }
        }
        Rule::FreeObject => {
            if !value.is_object() {
                sink.error(path, format!("\"{name}\" must be an object, got {}.", describe(value)));
            }
        }
        Rule::StrList => match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_string() {
                        sink.error(
                            &index(path, i),
                            format!("\"{name}\" must be an array of strings, got {}.", describe(item)),
                        );
                    }
                }
            }
            _ => sink.error(
                path,
                format!("\"{name}\" must be an array of strings, got {}.", describe(value)),
            ),
        },
        Rule::Badge | Rule::BadgeOrBool => {
            let ok = int.is_some()
                || matches!(value, Value::String(s) if is_signed_count(s))
                || (rule == Rule::BadgeOrBool && value.is_boolean());
            if !ok {
                sink.error(
                    path,
                    format!("\"{name}\" must be an integer, or a string \"+n\" / \"-n\" to increment / decrement the badge, got {got}."),
                );
            }
        }
        // The reference describes the colors without a rule Pushwoosh enforces (the LED is
        // "approximated" by the device, its own Android example writes "#rrggbb"): a value of
        // another form is sent as given, with a warning. Only a value that is no string at all
        // is refused, like any other text parameter's.
        Rule::LedColor => match value {
            Value::String(s) if is_hex_color(s, 6) => {}
            Value::String(_) => sink.warning(
                path,
                format!("\"{name}\" is not a hex color \"#rrggbb\", got {got}: the device shows its closest color or none."),
            ),
            _ => sink.error(
                path,
                format!("\"{name}\" must be a string (a hex color \"#rrggbb\"), got {}.", describe(value)),
            ),
        },
        Rule::IconColor => match value {
            Value::String(s)
                if is_hex_color(s, 6)
                    || is_hex_color(s, 8)
                    || ANDROID_COLOR_NAMES.contains(&s.to_ascii_lowercase().as_str()) => {}
            Value::String(s) => {
                let end = suggest::sentence_end(s, ANDROID_COLOR_NAMES.iter().copied());
                sink.warning(
                    path,
                    format!("\"{name}\" is not a color \"#RRGGBB\", \"#AARRGGBB\" or a color name such as \"red\", got {got}: the device may ignore it{end}"),
                );
            }
            _ => sink.error(
                path,
                format!("\"{name}\" must be a string (a color \"#RRGGBB\", \"#AARRGGBB\" or a color name), got {}.", describe(value)),
            ),
        },
        Rule::WnsTag => {
            let ok = matches!(value, Value::String(s)
                if !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_alphanumeric()));
            if !ok {
                sink.error(
                    path,
                    format!("\"{name}\" must be 1 to 16 alphanumeric characters, got {got}."),
                );
            }
        }
        Rule::SendDate => match value {
            Value::String(s) => {
                if let Some(m) = dates::send_date_problem(name, s) {
                    sink.error(path, m);
                }
            }
            _ => sink.error(
                path,
                format!("Invalid send date. \"{name}\" must be a string: \"now\" or \"YYYY-MM-DD HH:mm\", got {got}."),
            ),
        },
        Rule::InboxDate => match value {
            Value::String(s) => {
                if let Some(m) = dates::inbox_date_problem(name, s) {
                    sink.error(path, m);
                }
            }
            _ => sink.error(
                path,
                format!("Invalid inbox date. \"{name}\" must be a string \"YYYY-MM-DD\", got {got}."),
            ),
        },
        Rule::Timezone => match value {
            Value::String(s) => {
                if let Some(m) = dates::timezone_problem(name, s) {
                    sink.error(path, m);
                }
            }
            _ => sink.error(
                path,
                format!("Invalid timezone. \"{name}\" must be a time zone name string, got {got}."),
            ),
        },
        Rule::Targets | Rule::OnePhone => structured::targets(rule, name, path, value, sink),
        Rule::Platforms => structured::platforms(name, path, value, sink),
        Rule::Conditions => conditions::check(path, value, sink),
        Rule::Geozone => structured::geozone(name, path, value, sink),
        Rule::DevicesFilter => structured::devices_filter(name, path, value, sink),
        // The notifications array is walked by `methods`; nothing to check here.
        Rule::Notifications => {}
    }
}

fn localized(name: &str, path: &str, value: &Value, sink: &mut Sink) {
    match value {
        Value::String(_) => {}
        Value::Object(map) => {
            for (lang, text) in map {
                if !text.is_string() {
                    sink.error(
                        &join(path, lang),
                        format!("\"{name}\" must be a string or an object of language code -> string; \"{}\" is {}.", clip(lang), describe(text)),
                    );
                }
            }
        }
        _ => sink.error(
            path,
            format!(
                "\"{name}\" must be a string or an object of language code -> string, got {}.",
                describe(value)
            ),
        ),
    }
}
