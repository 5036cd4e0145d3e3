//! The exact request body sent to Pushwoosh: the producer's fields untouched, plus the
//! configured `auth` and, for pushes, a stable `transactionId` where the producer gave none.
//! A batched `createMessage` body is the same envelope around several jobs' notifications.

use bytes::{BufMut, Bytes, BytesMut};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::job::{Job, JobKind};

/// Namespace of the transactionIds the worker derives (UUID v5 over the job id).
const TRANSACTION_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2b7e_4d0a_5e9b_8c3f_1a2d_7e6b_90c4);

/// The transactionId of a job (`targeted`) or of one notification of a job (`push`).
/// The same job id always gives the same value, on every attempt and every replica.
pub fn transaction_id(job_id: &str, notification: Option<usize>) -> String {
    let uuid = match notification {
        Some(index) => {
            let mut name = Vec::with_capacity(job_id.len() + 8);
            name.extend_from_slice(job_id.as_bytes());
            name.push(b'#');
            name.extend_from_slice(index.to_string().as_bytes());
            Uuid::new_v5(&TRANSACTION_NAMESPACE, &name)
        }
        None => Uuid::new_v5(&TRANSACTION_NAMESPACE, job_id.as_bytes()),
    };
    // Not `to_string()`: the formatting machinery costs more than the hash.
    uuid.hyphenated()
        .encode_lower(&mut Uuid::encode_buffer())
        .to_owned()
}

/// Adds the derived transactionIds the job lacks. The producer's own always win.
pub fn add_transaction_ids(job: &mut Job) {
    match job.kind {
        JobKind::Push => {
            if let Some(Value::Array(notifications)) = job.request.get_mut("notifications") {
                for (index, notification) in notifications.iter_mut().enumerate() {
                    if let Value::Object(fields) = notification
                        && !fields.contains_key("transactionId")
                    {
                        fields.insert(
                            "transactionId".into(),
                            Value::String(transaction_id(&job.id, Some(index))),
                        );
                    }
                }
            }
        }
        JobKind::Targeted if !job.request.contains_key("transactionId") => {
            job.request.insert(
                "transactionId".into(),
                Value::String(transaction_id(&job.id, None)),
            );
        }
        _ => {}
    }
}

#[derive(Serialize)]
struct RequestBody<'a> {
    request: WithAuth<'a>,
}

#[derive(Serialize)]
struct WithAuth<'a> {
    auth: &'a str,
    #[serde(flatten)]
    rest: &'a Map<String, Value>,
}

/// `{"request": {"auth": …, <the job's fields>}}`, serialized once per job.
pub fn body(request: &Map<String, Value>, token: &SecretString) -> bytes::Bytes {
    let body = RequestBody {
        request: WithAuth {
            auth: token.expose_secret(),
            rest: request,
        },
    };
    // A map of JSON values with string keys always serializes.
    serde_json::to_vec(&body).unwrap_or_default().into()
}

/// A push job's notifications as a batched body takes them: serialized once, when the job
/// is submitted, comma-separated and without the enclosing brackets.
pub fn batch_notifications(notifications: &[Value]) -> Option<Bytes> {
    let raw = Bytes::from(serde_json::to_vec(notifications).ok()?);
    // `[a,b]` → `a,b`, without a copy
    Some(raw.slice(1..raw.len() - 1))
}

/// `{"request":{"auth":…,"application":…,"notifications":[…]}}` for several push jobs of
/// one application: what [`body`] gives for one job's `application` and `notifications`,
/// with each job's [`batch_notifications`] copied in as they were serialized.
pub fn batch_body<'a>(
    token: &SecretString,
    application: &str,
    notifications: impl Iterator<Item = &'a [u8]> + Clone,
) -> Bytes {
    let raw: usize = notifications.clone().map(|n| n.len() + 1).sum();
    let mut body = BytesMut::with_capacity(raw + application.len() + 96);
    body.put_slice(br#"{"request":{"auth":"#);
    write_json_string(&mut body, token.expose_secret());
    body.put_slice(br#","application":"#);
    write_json_string(&mut body, application);
    body.put_slice(br#","notifications":["#);
    for (i, part) in notifications.enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        body.put_slice(part);
    }
    body.put_slice(b"]}}");
    body.freeze()
}

fn write_json_string(out: &mut BytesMut, s: &str) {
    // Serializing a str cannot fail.
    let _ = serde_json::to_writer(out.writer(), s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::decode;

    #[test]
    fn transaction_ids_are_stable_and_distinct() {
        assert_eq!(transaction_id("a", None), transaction_id("a", None));
        assert_ne!(transaction_id("a", None), transaction_id("b", None));
        assert_ne!(transaction_id("a", Some(0)), transaction_id("a", Some(1)));
        assert_eq!(transaction_id("a", Some(0)).len(), 36);
    }

    /// A job retried across an upgrade must keep its transactionIds, or Pushwoosh would
    /// not know the second call for the same push: these values never change. (UUID v5 of
    /// `<job id>#<index>`, or of the job id, in the namespace above; Python's
    /// `uuid.uuid5` gives the same.)
    #[test]
    fn transaction_ids_are_the_ones_earlier_versions_derived() {
        assert_eq!(
            transaction_id("order-4711", Some(0)),
            "59337774-a533-5474-a1fe-d307c7f41710"
        );
        assert_eq!(
            transaction_id("order-4711", Some(12)),
            "f32d04e2-3fd0-5478-b2c9-e3589deb8363"
        );
        assert_eq!(
            transaction_id("order-4711", None),
            "b7f0c266-7af2-578d-a0cc-aefdae211e4f"
        );
    }

    #[test]
    fn each_notification_gets_its_own_and_the_producers_wins() {
        let mut job = decode(
            br#"{"id":"j","kind":"push","application":"A","notifications":[{"content":"1"},{"content":"2","transactionId":"mine"}]}"#,
            None,
        )
        .unwrap();
        add_transaction_ids(&mut job);
        let n = job.request["notifications"].as_array().unwrap();
        assert_eq!(n[0]["transactionId"], transaction_id("j", Some(0)));
        assert_eq!(n[1]["transactionId"], "mine");
    }

    #[test]
    fn targeted_gets_one_at_the_top_level() {
        let mut job = decode(
            br#"{"id":"t","kind":"targeted","devices_filter":"A(\"X\")"}"#,
            None,
        )
        .unwrap();
        add_transaction_ids(&mut job);
        assert_eq!(job.request["transactionId"], transaction_id("t", None));
        let mut sms = decode(
            br#"{"id":"s","kind":"sms","notifications":[{"content":"x"}]}"#,
            None,
        )
        .unwrap();
        add_transaction_ids(&mut sms);
        assert!(
            !serde_json::to_string(&sms.request)
                .unwrap()
                .contains("transactionId")
        );
    }

    #[test]
    fn the_body_is_the_producers_request_plus_auth() {
        let job = decode(
            br#"{"id":"j","kind":"sms","application":"A","notifications":[{"send_date":"now","content":"Hello!","devices":["+1234567890"],"use_auto_registration":true,"n":1.50}]}"#,
            None,
        )
        .unwrap();
        let body = body(&job.request, &SecretString::from("tok"));
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"request":{"auth":"tok","application":"A","notifications":[{"send_date":"now","content":"Hello!","devices":["+1234567890"],"use_auto_registration":true,"n":1.50}]}}"#
        );
    }

    #[test]
    fn a_batched_body_is_the_jobs_bodies_with_their_notifications_joined() {
        let token = SecretString::from("t\"ok");
        let request = |notifications: &str| {
            let raw = format!(
                r#"{{"id":"j","kind":"push","application":"A\u00e9","notifications":{notifications}}}"#
            );
            decode(raw.as_bytes(), None).unwrap().request
        };
        let part = |request: &Map<String, Value>| {
            batch_notifications(request["notifications"].as_array().unwrap()).unwrap()
        };
        let one = request(r#"[{"content":"a","n":1.50},{"content":{"en":"b"}}]"#);
        let two = request(r#"[{"content":"c"}]"#);
        // A batch of one is exactly the body the job would have been sent alone.
        assert_eq!(
            batch_body(&token, "A\u{e9}", [&part(&one)[..]].into_iter()),
            body(&one, &token)
        );
        let both = request(r#"[{"content":"a","n":1.50},{"content":{"en":"b"}},{"content":"c"}]"#);
        assert_eq!(
            batch_body(
                &token,
                "A\u{e9}",
                [&part(&one)[..], &part(&two)[..]].into_iter()
            ),
            body(&both, &token)
        );
    }
}
