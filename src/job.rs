//! Decoding a delivery into a `Job`: the kind, the id, and the Pushwoosh request the
//! producer wrote, refused early (before any call) when it cannot be a job at all.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::validate::json_type_name;

/// Which Pushwoosh method a job maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Push,
    Sms,
    Whatsapp,
    Targeted,
    Cancel,
    Delete,
    Details,
    History,
}

impl JobKind {
    pub const ALL: [JobKind; 8] = [
        JobKind::Push,
        JobKind::Sms,
        JobKind::Whatsapp,
        JobKind::Targeted,
        JobKind::Cancel,
        JobKind::Delete,
        JobKind::Details,
        JobKind::History,
    ];

    pub fn parse(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            JobKind::Push => "push",
            JobKind::Sms => "sms",
            JobKind::Whatsapp => "whatsapp",
            JobKind::Targeted => "targeted",
            JobKind::Cancel => "cancel",
            JobKind::Delete => "delete",
            JobKind::Details => "details",
            JobKind::History => "history",
        }
    }

    /// The Pushwoosh Messages API method.
    pub fn method(self) -> &'static str {
        match self {
            JobKind::Push => "createMessage",
            JobKind::Sms => "createSMSMessage",
            JobKind::Whatsapp => "createWhatsAppMessage",
            JobKind::Targeted => "createTargetedMessage",
            JobKind::Cancel => "cancelMessage",
            JobKind::Delete => "deleteMessage",
            JobKind::Details => "getMessageDetails",
            JobKind::History => "getPushHistory",
        }
    }

    /// Pushwoosh de-duplicates these by `transactionId`, so a repeated call is harmless.
    pub fn has_transaction_id(self) -> bool {
        matches!(self, JobKind::Push | JobKind::Targeted)
    }
}

/// A job ready for the Pushwoosh call.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    /// The request body as the producer sent it, minus `id`, `kind` and `expires_at`.
    pub request: Map<String, Value>,
    /// Not sent after this instant (`expires_at`, RFC 3339 with an offset).
    pub expires_at: Option<DateTime<Utc>>,
}

impl Job {
    pub fn application(&self) -> Option<&str> {
        self.request.get("application").and_then(Value::as_str)
    }
}

/// Why a delivery is not a job. Each carries what the result event needs.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    /// Not a JSON object (not UTF-8 JSON at all, or JSON of another type): rejected, and
    /// the raw bytes are dead-lettered.
    Unparseable {
        job_id: Option<String>,
        message: String,
    },
    /// Valid JSON that cannot be a job: rejected with a message, nothing else.
    Invalid {
        job_id: Option<String>,
        kind: Option<JobKind>,
        application: Option<String>,
        message: String,
    },
    /// Larger than the worker reads: rejected undecoded, and dead-lettered.
    TooLarge {
        job_id: Option<String>,
        bytes: usize,
        max: usize,
    },
}

pub const MAX_ID_CHARS: usize = 128;

/// [`decode`], for a body of at most `max_bytes`: a larger one is not read at all.
pub fn decode_within(
    body: &[u8],
    message_id: Option<&str>,
    max_bytes: usize,
) -> Result<Job, DecodeError> {
    if body.len() > max_bytes {
        return Err(DecodeError::TooLarge {
            job_id: message_id.filter(|id| valid_id(id)).map(str::to_owned),
            bytes: body.len(),
            max: max_bytes,
        });
    }
    decode(body, message_id)
}

/// Decodes a message body. `message_id` is the AMQP property, used when the body has no `id`.
pub fn decode(body: &[u8], message_id: Option<&str>) -> Result<Job, DecodeError> {
    let fallback_id = message_id.filter(|id| valid_id(id)).map(str::to_owned);
    let unparseable = |e: serde_json::Error| DecodeError::Unparseable {
        job_id: fallback_id.clone(),
        message: format!("the job body is not valid UTF-8 JSON: {e}"),
    };
    let TopLevel {
        id: id_value,
        kind: kind_value,
        expires_at: expires_value,
        request,
    } = if body.trim_ascii_start().starts_with(b"{") {
        serde_json::from_slice(body).map_err(unparseable)?
    } else {
        // JSON of another type is no more a job than bytes that are not JSON; the
        // decode only says what it is instead.
        let value: Value = serde_json::from_slice(body).map_err(unparseable)?;
        return Err(DecodeError::Unparseable {
            job_id: fallback_id,
            message: format!(
                "the job body must be a JSON object, not {}",
                json_type_name(&value)
            ),
        });
    };

    let kind = kind_value
        .as_ref()
        .and_then(Value::as_str)
        .and_then(JobKind::parse);
    let invalid = |job_id: Option<String>, message: String| DecodeError::Invalid {
        job_id,
        kind,
        application: request
            .get("application")
            .and_then(Value::as_str)
            .map(str::to_owned),
        message,
    };
    let id = match id_value {
        Some(Value::String(id)) if valid_id(&id) => id,
        Some(Value::String(id)) => {
            let message = format!(
                "\"id\" must be 1 to {MAX_ID_CHARS} characters (it has {})",
                id.chars().count()
            );
            return Err(invalid(fallback_id, message));
        }
        Some(other) => {
            let message = format!("\"id\" must be a string, not {}", json_type_name(&other));
            return Err(invalid(fallback_id, message));
        }
        None => match fallback_id {
            Some(id) => id,
            None => {
                let message =
                    "the job has no id: set \"id\" in the body or the AMQP message_id property";
                return Err(invalid(None, message.to_owned()));
            }
        },
    };

    let Some(kind) = kind else {
        let known = JobKind::ALL.map(JobKind::as_str).join(", ");
        let message = match kind_value {
            None => format!("the job has no \"kind\" (one of {known})"),
            Some(Value::String(k)) => {
                let k = crate::result_event::excerpt(&k, 40).unwrap_or(k);
                format!("unknown kind \"{k}\" (expected one of {known})")
            }
            Some(other) => format!(
                "\"kind\" must be a string, not {} (one of {known})",
                json_type_name(&other)
            ),
        };
        return Err(invalid(Some(id), message));
    };
    if request.contains_key("auth") {
        return Err(invalid(
            Some(id),
            "the job carries \"auth\": remove it, the API token comes from the worker's configuration"
                .to_owned(),
        ));
    }
    let expires_at = match expires_value {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_expires_at(&value).map_err(|m| invalid(Some(id.clone()), m))?),
    };
    Ok(Job {
        id,
        kind,
        request,
        expires_at,
    })
}

/// `expires_at`: an RFC 3339 timestamp with an offset, e.g. `2026-12-03T10:15:00Z`.
pub fn parse_expires_at(value: &Value) -> Result<DateTime<Utc>, String> {
    let Value::String(text) = value else {
        return Err(format!(
            "\"expires_at\" must be an RFC 3339 timestamp string such as \"2026-12-03T10:15:00Z\", not {}",
            json_type_name(value)
        ));
    };
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            let shown = crate::result_event::excerpt(text, 40).unwrap_or_else(|| text.clone());
            format!(
                "\"expires_at\" is not an RFC 3339 timestamp with an offset (such as \"2026-12-03T10:15:00Z\"): \"{shown}\" ({e})"
            )
        })
}

/// A job body's object, with `id`, `kind` and `expires_at` taken out as it is read: the request keeps
/// every other field in the producer's order, and is never re-keyed afterwards.
struct TopLevel {
    id: Option<Value>,
    kind: Option<Value>,
    expires_at: Option<Value>,
    request: Map<String, Value>,
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = TopLevel;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
                let mut top = TopLevel {
                    id: None,
                    kind: None,
                    expires_at: None,
                    request: Map::new(),
                };
                while let Some(key) = map.next_key::<String>()? {
                    // A repeated key: the last one wins, as when read into a `Value`.
                    match key.as_str() {
                        "id" => top.id = Some(map.next_value()?),
                        "kind" => top.kind = Some(map.next_value()?),
                        "expires_at" => top.expires_at = Some(map.next_value()?),
                        _ => {
                            top.request.insert(key, map.next_value()?);
                        }
                    }
                }
                Ok(top)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_ID_CHARS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_message(err: DecodeError) -> String {
        match err {
            DecodeError::Invalid { message, .. } => message,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn decodes_a_push_keeping_every_field_in_order() {
        let body = br#"{"id":"j1","kind":"push","application":"A-B","notifications":[{"send_date":"now","content":"hi","geozone":{"lat":22.220,"lng":33.33,"range":110}}],"x_extra":null}"#;
        let job = decode(body, None).unwrap();
        assert_eq!(job.id, "j1");
        assert_eq!(job.kind, JobKind::Push);
        assert_eq!(job.application(), Some("A-B"));
        assert_eq!(
            serde_json::to_string(&job.request).unwrap(),
            r#"{"application":"A-B","notifications":[{"send_date":"now","content":"hi","geozone":{"lat":22.220,"lng":33.33,"range":110}}],"x_extra":null}"#
        );
    }

    #[test]
    fn id_and_kind_are_read_wherever_they_are_and_the_last_of_a_repeated_key_counts() {
        let body = b" \n {\"application\":\"A\",\"id\":\"first\",\"notifications\":[],\"kind\":\"push\",\"id\":\"last\",\"application\":\"B\"}";
        let job = decode(body, None).unwrap();
        assert_eq!(job.id, "last");
        assert_eq!(job.kind, JobKind::Push);
        // The request keeps the first position of a repeated key and its last value.
        assert_eq!(
            serde_json::to_string(&job.request).unwrap(),
            r#"{"application":"B","notifications":[]}"#
        );
    }

    fn unparseable_message(err: DecodeError) -> (Option<String>, String) {
        match err {
            DecodeError::Unparseable { job_id, message } => (job_id, message),
            other => panic!("expected Unparseable, got {other:?}"),
        }
    }

    #[test]
    fn a_body_that_is_not_an_object_is_unparseable_and_says_what_it_is() {
        for (body, expected) in [
            (&b"7"[..], "not a number"),
            (b" \"push\"", "not a string"),
            (b"null", "not null"),
            (b"[1,2]", "must be a JSON object, not an array"),
        ] {
            let (job_id, msg) = unparseable_message(decode(body, Some("m")).unwrap_err());
            assert_eq!(job_id.as_deref(), Some("m"));
            assert!(msg.contains(expected), "{msg} should contain {expected}");
        }
        assert!(matches!(
            decode(b"{\"id\":\"a\",", None),
            Err(DecodeError::Unparseable { .. })
        ));
    }

    #[test]
    fn a_body_over_the_limit_is_not_read() {
        let body = br#"{"id":"a","kind":"cancel","message":"X"}"#;
        assert!(decode_within(body, None, body.len()).is_ok());
        assert_eq!(
            decode_within(body, Some("m"), body.len() - 1).unwrap_err(),
            DecodeError::TooLarge {
                job_id: Some("m".into()),
                bytes: body.len(),
                max: body.len() - 1
            }
        );
    }

    #[test]
    fn message_id_stands_in_for_a_missing_id() {
        let job = decode(br#"{"kind":"cancel","message":"X"}"#, Some("m-1")).unwrap();
        assert_eq!(job.id, "m-1");
        let msg = invalid_message(decode(br#"{"kind":"cancel","message":"X"}"#, None).unwrap_err());
        assert!(msg.contains("no id"), "{msg}");
    }

    #[test]
    fn refuses_what_cannot_be_a_job() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"id":"a","kind":"pigeon"}"#, "unknown kind \"pigeon\""),
            (br#"{"id":"a"}"#, "no \"kind\""),
            (br#"{"id":7,"kind":"push"}"#, "\"id\" must be a string"),
            (br#"{"id":"","kind":"push"}"#, "1 to 128 characters"),
            (
                br#"{"id":"a","kind":"push","auth":"t"}"#,
                "carries \"auth\"",
            ),
        ];
        for (body, expected) in cases {
            let msg = invalid_message(decode(body, None).unwrap_err());
            assert!(msg.contains(expected), "{msg} should contain {expected}");
        }
        let long = format!(r#"{{"id":"{}","kind":"push"}}"#, "x".repeat(129));
        assert!(invalid_message(decode(long.as_bytes(), None).unwrap_err()).contains("129"));
    }

    #[test]
    fn expires_at_is_read_beside_id_and_kind_and_a_bad_one_is_a_clear_rejection() {
        let job = decode(
            br#"{"id":"a","kind":"cancel","expires_at":"2026-12-03T11:15:00+01:00","message":"X"}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            job.expires_at.map(|t| t.to_rfc3339()),
            Some("2026-12-03T10:15:00+00:00".to_owned())
        );
        assert_eq!(
            serde_json::to_string(&job.request).unwrap(),
            r#"{"message":"X"}"#
        );
        let none = decode(br#"{"id":"a","kind":"cancel","expires_at":null}"#, None).unwrap();
        assert_eq!(none.expires_at, None);
        for (value, says) in [
            ("\"2026-12-03 10:15\"", "not an RFC 3339 timestamp"),
            ("\"2026-12-03T10:15:00\"", "with an offset"),
            ("1764756900", "not a number"),
        ] {
            let body = format!(r#"{{"id":"a","kind":"cancel","expires_at":{value}}}"#);
            let err = decode(body.as_bytes(), None).unwrap_err();
            assert!(matches!(&err, DecodeError::Invalid { job_id: Some(id), .. } if id == "a"));
            let msg = invalid_message(err);
            assert!(msg.contains(says), "{value}: {msg}");
        }
    }

    #[test]
    fn unparseable_bodies_keep_the_message_id() {
        match decode(b"\xff{not json", Some("m-9")).unwrap_err() {
            DecodeError::Unparseable { job_id, message } => {
                assert_eq!(job_id.as_deref(), Some("m-9"));
                assert!(message.contains("not valid UTF-8 JSON"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_kind_maps_to_its_method() {
        let methods: Vec<_> = JobKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.method()))
            .collect();
        assert_eq!(
            methods,
            [
                ("push", "createMessage"),
                ("sms", "createSMSMessage"),
                ("whatsapp", "createWhatsAppMessage"),
                ("targeted", "createTargetedMessage"),
                ("cancel", "cancelMessage"),
                ("delete", "deleteMessage"),
                ("details", "getMessageDetails"),
                ("history", "getPushHistory"),
            ]
        );
    }
}
