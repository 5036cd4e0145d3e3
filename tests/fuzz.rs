//! A hostile producer: thousands of malformed jobs, mutations of valid jobs of every
//! kind, published with confirms. Every job gets exactly one result, and the result
//! says what the test knows about the job it sent; only what the worker meant to
//! dead-letter is in the dead-letter queue; the worker is ready at the end.
//!
//! Seeded: `FUZZ_SEED=<n>` replays a run (the seed is in every failure message), and
//! `FUZZ_JOBS=<n>` changes how many jobs it sends.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestApp, header_str, json_props, push_job};
use pushwoosh_worker::broker::publisher::headers;
use serde_json::{Map, Value, json};

/// The worker's `amqp.max_job_bytes` in this test: small, so that oversized jobs are cheap.
const MAX_JOB_BYTES: usize = 32 * 1024;

/// What the test expects of a job it sent, from how it made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Not a JSON object: rejected with 400, dead-lettered `unparseable`.
    Unparseable,
    /// Over `amqp.max_job_bytes`: rejected with 400 undecoded, dead-lettered `too_large`.
    TooLarge,
    /// A JSON object: a result `ok` or `rejected` (210), never dead-lettered.
    Object,
}

fn templates() -> Vec<Value> {
    vec![
        push_job("t"),
        json!({"id": "t", "kind": "sms", "application": "A-B",
               "notifications": [{"send_date": "now", "content": "code 1234",
                                  "devices": ["+15551234567"]}]}),
        json!({"id": "t", "kind": "whatsapp", "application": "A-B",
               "notifications": [{"send_date": "now", "content": {"en": "hi"},
                                  "devices": ["+15551234567"]}]}),
        json!({"id": "t", "kind": "targeted", "devices_filter": "A(\"A-B\")",
               "send_date": "now", "content": "x"}),
        json!({"id": "t", "kind": "cancel", "message": "C3F8-C3863ED4-334AD4F1"}),
        json!({"id": "t", "kind": "delete", "message": "C3F8-C3863ED4-334AD4F1"}),
        json!({"id": "t", "kind": "details", "message": "C3F8-C3863ED4-334AD4F1"}),
        json!({"id": "t", "kind": "history", "source": null, "searchBy": "applicationCode",
               "value": "A-B", "lastNotificationID": 0}),
    ]
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, i| {
        if i % 2 == 0 {
            json!([inner])
        } else {
            json!({ "n": inner })
        }
    })
}

/// A value of another type than `v`, or something huge, deep or odd.
fn mutant(rng: &mut fastrand::Rng, v: &Value) -> Value {
    match rng.u8(..12) {
        0 => Value::Null,
        1 => json!(rng.bool()),
        2 => json!(rng.i64(..)),
        3 => json!(rng.f64() * 1e300),
        4 => json!("x".repeat(rng.usize(0..=20_000))),
        5 => json!([]),
        6 => json!({}),
        7 => Value::Array(vec![v.clone(); rng.usize(1..=400)]),
        8 => nested(rng.usize(1..=50)),
        9 => {
            let len = rng.usize(1..=64);
            json!((0..len).map(|_| rng.alphanumeric()).collect::<String>())
        }
        10 => json!({"\u{0000}": "\u{202e}\u{fffd}", "": [null]}),
        _ => json!(format!("{}{}", v, rng.u32(..))),
    }
}

/// Changes one thing in an object: a field removed, retyped, added, blown up or nested.
fn mutate_object(rng: &mut fastrand::Rng, job: &mut Map<String, Value>) {
    // Now and then inside the first notification rather than at the top.
    let target = match job.get_mut("notifications") {
        Some(Value::Array(list)) if rng.bool() && !list.is_empty() => match &mut list[0] {
            Value::Object(n) => n,
            _ => job,
        },
        _ => job,
    };
    let keys: Vec<String> = target.keys().cloned().collect();
    match rng.u8(..4) {
        0 if !keys.is_empty() => {
            let key = &keys[rng.usize(..keys.len())];
            target.remove(key);
        }
        1 if !keys.is_empty() => {
            let key = keys[rng.usize(..keys.len())].clone();
            let value = mutant(rng, &target[&key]);
            target.insert(key, value);
        }
        2 => {
            let names = [
                "auth",
                "andriod_header",
                "send_date",
                "devices",
                "x_unknown",
                "kind",
                "id",
            ];
            let key = names[rng.usize(..names.len())].to_owned();
            let value = mutant(rng, &Value::Null);
            target.insert(key, value);
        }
        _ => {
            let key = format!("k{}", "y".repeat(rng.usize(0..=5_000)));
            target.insert(key, nested(rng.usize(1..=50)));
        }
    }
}

/// One fuzzed job: its body, and what the test expects of it.
fn fuzzed(rng: &mut fastrand::Rng, id: &str) -> (Vec<u8>, Expect) {
    let all = templates();
    let mut job = all[rng.usize(..all.len())].clone();
    job["id"] = json!(id);
    let body = match rng.u8(..10) {
        // Bytes that are not a JSON object.
        0 => {
            let mut bytes = serde_json::to_vec(&job).unwrap();
            bytes.truncate(rng.usize(0..bytes.len()));
            (bytes, Expect::Unparseable)
        }
        1 => {
            let mut bytes = serde_json::to_vec(&job).unwrap();
            let at = rng.usize(1..bytes.len());
            bytes.splice(at..at, [0xff, 0xfe, rng.u8(0x80..)]);
            (bytes, Expect::Unparseable)
        }
        2 => {
            let other = match rng.u8(..5) {
                0 => json!([job]),
                1 => json!("push"),
                2 => json!(rng.i32(..)),
                3 => Value::Null,
                _ => json!(true),
            };
            (serde_json::to_vec(&other).unwrap(), Expect::Unparseable)
        }
        // Deeper than any JSON reader here goes.
        3 => {
            job["notifications"] = nested(rng.usize(200..=400));
            (serde_json::to_vec(&job).unwrap(), Expect::Unparseable)
        }
        // Larger than the worker reads.
        4 => {
            job["padding"] = json!("p".repeat(rng.usize(MAX_JOB_BYTES..=3 * MAX_JOB_BYTES)));
            (serde_json::to_vec(&job).unwrap(), Expect::TooLarge)
        }
        _ => {
            let Value::Object(mut object) = job else {
                unreachable!()
            };
            for _ in 0..rng.usize(1..=3) {
                mutate_object(rng, &mut object);
            }
            (
                serde_json::to_vec(&Value::Object(object)).unwrap(),
                Expect::Object,
            )
        }
    };
    match body {
        // However it was made, a body over the limit is refused unread.
        (bytes, _) if bytes.len() > MAX_JOB_BYTES => (bytes, Expect::TooLarge),
        other => other,
    }
}

#[tokio::test]
async fn thousands_of_malformed_jobs_each_get_exactly_the_one_result_they_deserve() {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d);
    let jobs: usize = std::env::var("FUZZ_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut app = TestApp::spawn_with(|s| {
        s.amqp.max_job_bytes = MAX_JOB_BYTES;
        s.amqp.prefetch = 256;
    })
    .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(common::ok_answer(json!({"Messages": ["F"]})))
        .mount(&app.mock)
        .await;

    let mut sent: BTreeMap<String, (Vec<u8>, Expect)> = BTreeMap::new();
    for i in 0..jobs {
        let id = format!("fuzz-{i:05}");
        let (body, expect) = fuzzed(&mut rng, &id);
        let props = json_props()
            .with_message_id(id.as_str().into())
            .with_correlation_id(id.as_str().into());
        app.publish_raw(&body, props).await;
        sent.insert(id, (body, expect));
    }

    let mut results: BTreeMap<String, Value> = BTreeMap::new();
    for _ in 0..jobs {
        let result = app.next_result(Duration::from_secs(60)).await;
        let id = result
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_else(|| panic!("seed {seed}: a result without its correlation id"));
        let size = serde_json::to_vec(&result.body).unwrap().len();
        assert!(size < 150_000, "seed {seed}: {id}'s result is {size} bytes");
        assert!(
            results.insert(id.clone(), result.body).is_none(),
            "seed {seed}: two results for {id}"
        );
    }
    app.assert_no_result(Duration::from_millis(500)).await;
    assert_eq!(results.len(), sent.len(), "seed {seed}");

    let mut expected_dead = BTreeMap::new();
    for (id, (body, expect)) in &sent {
        let r = &results[id];
        let status = &r["status_code"];
        let message = r["status_message"].as_str().unwrap_or_else(|| {
            panic!("seed {seed}: {id}: no status_message: {r}");
        });
        match expect {
            Expect::Unparseable | Expect::TooLarge => {
                assert_eq!(r["outcome"], "rejected", "seed {seed}: {id}: {r}");
                assert_eq!(r["kind"], "unknown", "seed {seed}: {id}: {r}");
                assert_eq!(*status, 400, "seed {seed}: {id}: {r}");
                assert_eq!(r["job_id"], id.as_str(), "seed {seed}: {id}: {r}");
                let (reason, says) = if *expect == Expect::TooLarge {
                    ("too_large", "amqp.max_job_bytes")
                } else {
                    ("unparseable", "")
                };
                assert!(message.contains(says), "seed {seed}: {id}: {message}");
                expected_dead.insert(id.clone(), (body.clone(), reason));
            }
            Expect::Object => match r["outcome"].as_str() {
                Some("ok") => assert_eq!(*status, 200, "seed {seed}: {id}: {r}"),
                Some("rejected") => {
                    assert_eq!(*status, 210, "seed {seed}: {id}: {r}");
                    assert!(!message.is_empty(), "seed {seed}: {id}: {r}");
                    let errors = r["errors"].as_array().map_or(0, Vec::len);
                    assert!(errors <= 51, "seed {seed}: {id}: {errors} errors");
                }
                other => panic!("seed {seed}: {id}: outcome {other:?}: {r}"),
            },
        }
    }

    // The run tried every kind of trouble, and objects both passed and failed validation.
    let count = |e: Expect| sent.values().filter(|(_, x)| *x == e).count();
    for e in [Expect::Unparseable, Expect::TooLarge, Expect::Object] {
        assert!(
            count(e) >= jobs / 20,
            "seed {seed}: only {} {e:?}",
            count(e)
        );
    }
    for outcome in ["ok", "rejected"] {
        assert!(
            results.values().any(|r| r["outcome"] == outcome),
            "seed {seed}: no object job was {outcome}"
        );
    }

    let dead = app.dead_letters().await;
    let mut got_dead = BTreeMap::new();
    for letter in &dead {
        let id = letter
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .expect("a dead letter keeps the job's message id");
        let reason = header_str(&letter.properties, headers::DEAD_REASON)
            .unwrap_or_else(|| panic!("seed {seed}: {id}: dead-lettered without a reason"));
        got_dead.insert(id, (letter.data.clone(), reason));
    }
    let expected_dead: BTreeMap<String, (Vec<u8>, String)> = expected_dead
        .into_iter()
        .map(|(id, (body, reason))| (id, (body, reason.to_owned())))
        .collect();
    assert_eq!(
        got_dead.keys().collect::<Vec<_>>(),
        expected_dead.keys().collect::<Vec<_>>(),
        "seed {seed}: only what the worker meant to dead-letter"
    );
    assert!(
        got_dead == expected_dead,
        "seed {seed}: raw bytes and reasons"
    );

    // Still ready, and a valid job still goes through.
    assert_eq!(common::http_get(app.http_addr, "/readyz").await.0, 200);
    app.publish_job(&push_job("valid-after-the-storm")).await;
    let last = app.next_result(Duration::from_secs(20)).await.body;
    assert_eq!(last["job_id"], "valid-after-the-storm");
    assert_eq!(last["outcome"], "ok");
    let metrics = app.metrics().await;
    for reason in ["cannot_publish", "unsettled", "stopping"] {
        let series = format!(r#"pushwoosh_worker_hand_backs_total{{reason="{reason}"}}"#);
        assert_eq!(
            common::metric(&metrics, &series),
            0.0,
            "seed {seed}: {series}"
        );
    }
    app.stop().await;
}
