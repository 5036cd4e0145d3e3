//! The per-method handlers: validate a parsed `request` object like Pushwoosh does and build
//! the JSON answer (HTTP 200 with `status_code` 200, 210, or 403 for a forbidden token).

use serde_json::{Map, Value, json};

use super::filter;
use super::state::{Kind, NewMessage, Store};
use super::views;

/// The Pushwoosh methods the sandbox serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Method {
    CreateMessage,
    CreateSms,
    CreateWhatsApp,
    CreateTargeted,
    Cancel,
    Delete,
    Details,
    History,
}

impl Method {
    pub(super) const ALL: [Method; 8] = [
        Method::CreateMessage,
        Method::CreateSms,
        Method::CreateWhatsApp,
        Method::CreateTargeted,
        Method::Cancel,
        Method::Delete,
        Method::Details,
        Method::History,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Method::CreateMessage => "createMessage",
            Method::CreateSms => "createSMSMessage",
            Method::CreateWhatsApp => "createWhatsAppMessage",
            Method::CreateTargeted => "createTargetedMessage",
            Method::Cancel => "cancelMessage",
            Method::Delete => "deleteMessage",
            Method::Details => "getMessageDetails",
            Method::History => "getPushHistory",
        }
    }

    pub(super) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }

    /// The `response` of a 210 answer: `{"Messages": []}` for the notification methods.
    fn error_response(self) -> Value {
        match self {
            Method::CreateMessage | Method::CreateSms | Method::CreateWhatsApp => {
                json!({ "Messages": [] })
            }
            _ => Value::Null,
        }
    }
}

type Request = Map<String, Value>;
/// `Err` is a finished non-200 answer, so handlers can use `?`.
type Answer = Result<Value, Value>;

fn ok(response: Value) -> Value {
    json!({ "status_code": 200, "status_message": "OK", "response": response })
}

fn arg_error(method: Method, message: impl Into<String>) -> Value {
    json!({
        "status_code": 210,
        "status_message": message.into(),
        "response": method.error_response(),
    })
}

/// The answer to a request whose token is not in the configured set.
pub(super) fn forbidden() -> Value {
    json!({
        "status_code": 403,
        "status_message": "Token restrictions forbid this operation",
        "response": null,
    })
}

/// Answers one request. `tokens` empty means any non-empty `auth` is accepted.
pub(super) fn answer(method: Method, req: &Request, store: &Store, tokens: &[String]) -> Value {
    match dispatch(method, req, store, tokens) {
        Ok(v) | Err(v) => v,
    }
}

fn dispatch(method: Method, req: &Request, store: &Store, tokens: &[String]) -> Answer {
    let auth = required_str(method, req, "auth")?;
    if !tokens.is_empty() && !tokens.iter().any(|t| t == auth) {
        return Err(forbidden());
    }
    match method {
        Method::CreateMessage => create(method, Kind::Push, req, store),
        Method::CreateSms => create(method, Kind::Sms, req, store),
        Method::CreateWhatsApp => create(method, Kind::WhatsApp, req, store),
        Method::CreateTargeted => create_targeted(req, store),
        Method::Cancel => {
            let key = message_key(method, req)?;
            found(method, store.cancel(&key)).map(|()| bare_ok())
        }
        Method::Delete => {
            let key = message_key(method, req)?;
            found(method, store.delete(&key)).map(|()| bare_ok())
        }
        Method::Details => {
            let key = message_key(method, req)?;
            let message = store.get(&key).ok_or_else(|| not_found(method))?;
            Ok(ok(json!({ "message": views::details(&message) })))
        }
        Method::History => Ok(ok(json!({ "rows": views::history(req, store) }))),
    }
}

/// `{"status_code":200,"status_message":"OK"}` with no `response`, as cancel/delete answer.
fn bare_ok() -> Value {
    json!({ "status_code": 200, "status_message": "OK" })
}

fn not_found(method: Method) -> Value {
    arg_error(method, "Message not found")
}

fn found(method: Method, known: bool) -> Result<(), Value> {
    if known {
        Ok(())
    } else {
        Err(not_found(method))
    }
}

/// A required parameter that must be a non-empty string.
fn required_str<'a>(method: Method, req: &'a Request, field: &str) -> Result<&'a str, Value> {
    match req.get(field) {
        None | Some(Value::Null) => Err(arg_error(
            method,
            format!("Missing required parameter \"{field}\""),
        )),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(arg_error(
            method,
            format!("Parameter \"{field}\" must be a non-empty string"),
        )),
    }
}

/// cancel/delete/details: `message` is a code, or a numeric id.
fn message_key(method: Method, req: &Request) -> Result<String, Value> {
    match req.get("message") {
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => required_str(method, req, "message").map(|s| s.trim().to_owned()),
    }
}

/// A `transactionId` when present and non-empty; `at` names the notification for errors.
fn transaction_id<'a>(
    method: Method,
    params: &'a Request,
    at: &str,
) -> Result<Option<&'a str>, Value> {
    match params.get("transactionId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(arg_error(
            method,
            format!("{at}\"transactionId\" must be a string."),
        )),
    }
}

/// createSMSMessage / createWhatsAppMessage: `devices` is an array of exactly one number.
fn check_devices(method: Method, params: &Request) -> Result<(), Value> {
    let Some(Value::Array(devices)) = params.get("devices") else {
        return Err(arg_error(
            method,
            "Invalid devices list. \"devices\" must be an array.",
        ));
    };
    match devices.as_slice() {
        [Value::String(number)] if !number.trim().is_empty() => Ok(()),
        _ => Err(arg_error(
            method,
            "Invalid devices list. \"devices\" must contain exactly one number.",
        )),
    }
}

/// createMessage / createSMSMessage / createWhatsAppMessage: one code per notification.
fn create(method: Method, kind: Kind, req: &Request, store: &Store) -> Answer {
    let application = required_str(method, req, "application")?;
    let notifications = match req.get("notifications") {
        None | Some(Value::Null) => {
            return Err(arg_error(
                method,
                "Missing required parameter \"notifications\"",
            ));
        }
        Some(Value::Array(list)) if list.is_empty() => {
            return Err(arg_error(
                method,
                "Invalid notifications list. \"notifications\" must not be empty.",
            ));
        }
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(arg_error(
                method,
                "Invalid notifications list. \"notifications\" must be an array.",
            ));
        }
    };
    let mut checked = Vec::with_capacity(notifications.len());
    for (i, notification) in notifications.iter().enumerate() {
        let Value::Object(params) = notification else {
            return Err(arg_error(
                method,
                format!("Invalid notification #{i}: it must be an object."),
            ));
        };
        if kind == Kind::Push {
            let tid = transaction_id(method, params, &format!("Invalid notification #{i}: "))?;
            checked.push((params, tid));
        } else {
            check_devices(method, params)?;
            checked.push((params, None));
        }
    }
    let codes: Vec<Value> = checked
        .into_iter()
        .map(|(params, transaction_id)| {
            let new = NewMessage {
                kind,
                application,
                transaction_id,
                params: params.clone(),
            };
            Value::String(store.create(new).0)
        })
        .collect();
    Ok(ok(json!({ "Messages": codes })))
}

/// createTargetedMessage: one `messageCode`; the filter must compile.
fn create_targeted(req: &Request, store: &Store) -> Answer {
    let method = Method::CreateTargeted;
    let devices_filter = match req.get("devices_filter") {
        None | Some(Value::Null) => {
            return Err(arg_error(
                method,
                "Missing required parameter \"devices_filter\"",
            ));
        }
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(arg_error(
                method,
                "Parameter \"devices_filter\" must be a string",
            ));
        }
    };
    if let Err(message) = filter::check(devices_filter) {
        return Err(json!({
            "status_code": 210,
            "status_message": "Errors occurred while compiling filter",
            "response": { "errors": [ { "message": message, "type": "syntax" } ] },
        }));
    }
    let transaction_id = transaction_id(method, req, "Invalid request: ")?;
    let application = req
        .get("application")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut params = req.clone();
    params.remove("auth");
    let new = NewMessage {
        kind: Kind::Targeted,
        application,
        transaction_id,
        params,
    };
    let (code, _) = store.create(new);
    Ok(ok(json!({ "messageCode": code })))
}
