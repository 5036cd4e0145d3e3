//! Attributing a batched call's answer to its jobs: each job's place in the call, its own
//! message codes and its own part of the `response` when the answer allows it, and
//! otherwise the call's verdict as it is.

use serde_json::{Map, Value};
use tracing::warn;

use super::{Batched, Entry};
use crate::pushwoosh::Verdict;
use crate::result_event::BatchInfo;
use crate::worker::process::Answered;

/// Each entry with its place in the call (its first notification's position).
fn placed(
    entries: Vec<Entry>,
    notifications: usize,
    codes_mapped: bool,
) -> impl Iterator<Item = (Entry, BatchInfo)> {
    let jobs = entries.len();
    entries.into_iter().scan(0, move |position, entry| {
        let batch = BatchInfo {
            jobs,
            notifications,
            position: *position,
            codes_mapped,
        };
        *position += entry.count;
        Some((entry, batch))
    })
}

/// Every job gets the call's answer as it is: the call failed, or its one job was rejected.
pub(super) fn answer_alike(
    entries: Vec<Entry>,
    notifications: usize,
    answered: &Answered,
) -> Vec<(Entry, Batched)> {
    placed(entries, notifications, false)
        .map(|(entry, batch)| {
            let batched = Batched {
                answered: answered.clone(),
                batch,
            };
            (entry, batched)
        })
        .collect()
}

/// Each job gets its own codes, by position, when the answer has one per notification.
pub(super) fn answer_success(
    entries: Vec<Entry>,
    notifications: usize,
    status_message: &str,
    response: &Value,
    answered: &Answered,
) -> Vec<(Entry, Batched)> {
    let jobs = entries.len();
    let all_codes = response.get("Messages").and_then(Value::as_array);
    let answered_codes = all_codes.map_or(0, Vec::len);
    let codes: Option<&[Value]> = all_codes
        .filter(|codes| codes.len() == notifications)
        .map(Vec::as_slice);
    if codes.is_none() {
        warn!(
            jobs,
            notifications,
            answered_codes,
            "Pushwoosh's answer to a batched call does not carry one message code per notification: codes not attributed"
        );
    }
    let mut out = Vec::with_capacity(jobs);
    for (entry, batch) in placed(entries, notifications, codes.is_some()) {
        let verdict = match codes {
            Some(codes) => Verdict::Success {
                status_message: status_message.to_owned(),
                response: own_response(
                    response,
                    &codes[batch.position..batch.position + entry.count],
                ),
            },
            None => Verdict::Success {
                status_message: format!(
                    "{status_message}; Pushwoosh accepted the batched call of {jobs} jobs but answered {answered_codes} message codes for its {notifications} notifications, so this job's codes are not known"
                ),
                response: response.clone(),
            },
        };
        let batched = Batched {
            answered: Answered {
                verdict,
                breaker: answered.breaker,
                retry_reason: None,
            },
            batch,
        };
        out.push((entry, batched));
    }
    out
}

/// The call's `response` as this job would have had it alone: its own `Messages`, and the
/// entries of code-keyed objects (such as `UnknownDevices`) that belong to its codes.
fn own_response(response: &Value, codes: &[Value]) -> Value {
    let Value::Object(fields) = response else {
        return response.clone();
    };
    let mine = |code: &str| codes.iter().any(|c| c.as_str() == Some(code));
    let mut own = Map::with_capacity(fields.len());
    for (key, value) in fields {
        let value = match (key.as_str(), value) {
            ("Messages", _) => Value::Array(codes.to_vec()),
            (_, Value::Object(by_code)) if by_code.keys().all(|k| k.contains('-')) => {
                Value::Object(
                    by_code
                        .iter()
                        .filter(|(k, _)| mine(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            }
            (_, other) => other.clone(),
        };
        own.insert(key.clone(), value);
    }
    Value::Object(own)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::own_response;
    use crate::pushwoosh::Verdict;
    use crate::worker::batcher::caller::fake::{Fake, job, new_batcher, submit};

    #[tokio::test(start_paused = true)]
    async fn an_answer_without_one_code_per_notification_attributes_none() {
        let fake = Arc::new(Fake {
            short: true,
            ..Fake::default()
        });
        let batcher = new_batcher(fake.clone(), 100, 10);
        let a = submit(&batcher, job("a", &["a1"], false));
        let b = submit(&batcher, job("b", &["b1", "b2"], false));
        for answer in [a.await.unwrap(), b.await.unwrap()] {
            assert!(!answer.batch.codes_mapped);
            let Verdict::Success {
                status_message,
                response,
            } = &answer.answered.verdict
            else {
                panic!("{answer:?}")
            };
            assert!(
                status_message.contains("answered 2 message codes for its 3 notifications"),
                "{status_message}"
            );
            // The whole answer, for a human to sort out; not a slice that might be wrong.
            assert_eq!(response["Messages"], json!(["C-a1", "C-b1"]));
        }
    }

    #[test]
    fn a_jobs_own_response_keeps_only_its_codes() {
        let response = json!({"Messages": ["A-1", "B-2"], "UnknownDevices": {"A-1": ["x"], "B-2": ["y"]}, "other": 1});
        let own = own_response(&response, &[json!("B-2")]);
        assert_eq!(
            own,
            json!({"Messages": ["B-2"], "UnknownDevices": {"B-2": ["y"]}, "other": 1})
        );
    }
}
