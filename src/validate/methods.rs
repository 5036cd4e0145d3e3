//! Per-method structure: which parameters each Pushwoosh method requires, and the walk over
//! a request and its notifications that hands each value to its rule.

use serde_json::{Map, Value};

use crate::validate::report::{Sink, clip, index, join};
use crate::validate::schema::{self, Rule, Table};
use crate::validate::suggest;
use crate::validate::values::{self, describe};

/// The Pushwoosh method a job kind maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// createMessage
    Push,
    /// createSMSMessage
    Sms,
    /// createWhatsAppMessage
    WhatsApp,
    /// createTargetedMessage
    Targeted,
    /// cancelMessage
    Cancel,
    /// deleteMessage
    Delete,
    /// getMessageDetails
    Details,
    /// getPushHistory
    History,
}

impl Method {
    pub(crate) fn from_kind(kind: &str) -> Option<Self> {
        Some(match kind {
            "push" => Self::Push,
            "sms" => Self::Sms,
            "whatsapp" => Self::WhatsApp,
            "targeted" => Self::Targeted,
            "cancel" => Self::Cancel,
            "delete" => Self::Delete,
            "details" => Self::Details,
            "history" => Self::History,
            _ => return None,
        })
    }

    /// The parameters of the request body itself.
    fn request_table(self) -> Table {
        match self {
            Self::Push | Self::Sms | Self::WhatsApp => schema::MESSAGE_REQUEST,
            Self::Targeted => schema::TARGETED_REQUEST,
            Self::Cancel | Self::Delete => schema::MESSAGE_CODE_REQUEST,
            Self::Details => schema::DETAILS_REQUEST,
            Self::History => schema::HISTORY_REQUEST,
        }
    }

    /// The parameters of one element of `notifications`, for the methods that have it.
    fn notification_table(self) -> Option<Table> {
        match self {
            Self::Push => Some(schema::PUSH_NOTIFICATION),
            Self::Sms => Some(schema::SMS_NOTIFICATION),
            Self::WhatsApp => Some(schema::WHATSAPP_NOTIFICATION),
            _ => None,
        }
    }

    /// Required parameters of the request body.
    ///
    /// createTargetedMessage: the seed's table stars `send_date` but its example calls it
    /// optional; like createMessage (where "now" is the default), it is treated as optional
    /// here, and its format is checked when present.
    fn required(self) -> &'static [&'static str] {
        match self {
            Self::Push | Self::Sms | Self::WhatsApp => &["application", "notifications"],
            Self::Targeted => &["devices_filter", "content"],
            Self::Cancel | Self::Delete | Self::Details => &["message"],
            Self::History => &[],
        }
    }

    /// Required parameters of each notification (createWhatsAppMessage's content /
    /// content_id alternative is checked apart).
    fn required_in_notification(self) -> &'static [&'static str] {
        match self {
            Self::Sms => &["send_date", "devices", "content"],
            Self::WhatsApp => &["send_date", "devices"],
            _ => &[],
        }
    }
}

fn missing(path: &str, name: &str, sink: &mut Sink) {
    sink.error(
        &join(path, name),
        format!("Missing required parameter \"{name}\"."),
    );
}

/// Checks every key of `object` (at `path`) against `table`.
fn check_object(
    object: &Map<String, Value>,
    table: Table,
    path: &str,
    sink: &mut Sink,
) -> Vec<String> {
    let mut unknown = Vec::new();
    for (key, value) in object {
        let field = join(path, key);
        match schema::lookup(table, key) {
            Some(Rule::Notifications) => {}
            Some(rule) => values::check(rule, key, &field, value, sink),
            None => unknown.push(key.clone()),
        }
    }
    unknown
}

fn report_unknown(key: &str, path: &str, table: Table, hint: Option<&str>, sink: &mut Sink) {
    let end = suggest::sentence_end(key, schema::names(table));
    let shown = clip(key);
    let message = match (end.as_str(), hint) {
        (".", Some(hint)) => format!("unknown parameter \"{shown}\"; {hint}"),
        (".", None) => format!("unknown parameter \"{shown}\""),
        (end, _) => format!("unknown parameter \"{shown}\"{end}"),
    };
    sink.unknown(&join(path, key), message);
}

/// Checks a whole request for `method`.
pub(crate) fn check(method: Method, request: &Map<String, Value>, sink: &mut Sink) {
    for name in method.required() {
        if !request.contains_key(*name) {
            missing("", name, sink);
        }
    }
    let table = method.request_table();
    for key in check_object(request, table, "", sink) {
        // A notification parameter put at the top level is a common slip: say where it goes.
        let belongs_inside = method
            .notification_table()
            .is_some_and(|t| schema::lookup(t, &key).is_some());
        let hint = belongs_inside.then_some("it belongs in each element of \"notifications\"");
        report_unknown(&key, "", table, hint, sink);
    }
    if let (Some(table), Some(value)) = (method.notification_table(), request.get("notifications"))
    {
        notifications(method, table, value, sink);
    }
}

fn notifications(method: Method, table: Table, value: &Value, sink: &mut Sink) {
    let path = "notifications";
    let Value::Array(list) = value else {
        sink.error(
            path,
            format!(
                "Invalid notifications. \"notifications\" must be an array of objects, got {}.",
                describe(value)
            ),
        );
        return;
    };
    if list.is_empty() {
        sink.error(
            path,
            "Invalid notifications. \"notifications\" must not be empty.",
        );
    }
    for (i, item) in list.iter().enumerate() {
        let item_path = index(path, i);
        let Value::Object(notification) = item else {
            sink.error(
                &item_path,
                format!(
                    "Invalid notification. Each notification must be an object, got {}.",
                    describe(item)
                ),
            );
            continue;
        };
        for name in method.required_in_notification() {
            if !notification.contains_key(*name) {
                missing(&item_path, name, sink);
            }
        }
        if method == Method::WhatsApp
            && !notification.contains_key("content")
            && !notification.contains_key("content_id")
        {
            sink.error(
                &join(&item_path, "content"),
                "Missing required parameter: \"content\" or \"content_id\" (one of them is required).",
            );
        }
        if method == Method::Push
            && notification.contains_key("devices")
            && notification.contains_key("users")
        {
            sink.warning(
                &join(&item_path, "devices"),
                "\"devices\" is ignored by Pushwoosh when \"users\" is given.",
            );
        }
        for key in check_object(notification, table, &item_path, sink) {
            report_unknown(&key, &item_path, table, None, sink);
        }
    }
}
