use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};

use super::ReplayArgs;
use super::republish::replay_properties;
use super::selection::{Filter, Letter};
use crate::broker::publisher::{header_int, headers};

fn letter(kind: &str, reason: &str, dead_at_ms: Option<i64>) -> Letter {
    Letter {
        job_id: Some("j".into()),
        kind: kind.into(),
        reason: reason.into(),
        dead_at_ms,
        original_routing_key: None,
    }
}

fn args(f: impl FnOnce(&mut ReplayArgs)) -> Filter {
    let mut a = ReplayArgs {
        kinds: vec![],
        reasons: vec![],
        older_than: None,
        newer_than: None,
        limit: None,
        dry_run: false,
        routing_key: None,
    };
    f(&mut a);
    Filter::new(&a)
}

const NOW: i64 = 1_800_000_000_000;

#[test]
fn no_filter_takes_everything_but_unparseable() {
    let all = args(|_| {});
    assert!(all.matches(&letter("push", "retries_exhausted", Some(NOW)), NOW));
    assert!(all.matches(&letter("sms", "unknown", None), NOW));
    assert!(!all.matches(&letter("unknown", "unparseable", Some(NOW)), NOW));
    let asked = args(|a| a.reasons = vec!["unparseable".into()]);
    assert!(asked.matches(&letter("unknown", "unparseable", Some(NOW)), NOW));
    assert!(!asked.matches(&letter("push", "failed", Some(NOW)), NOW));
}

#[test]
fn kinds_and_reasons_are_alternatives_and_both_must_match() {
    let f = args(|a| {
        a.kinds = vec!["push".into(), "sms".into()];
        a.reasons = vec!["failed".into()];
    });
    assert!(f.matches(&letter("push", "failed", None), NOW));
    assert!(f.matches(&letter("sms", "failed", None), NOW));
    assert!(!f.matches(&letter("whatsapp", "failed", None), NOW));
    assert!(!f.matches(&letter("push", "retries_exhausted", None), NOW));
}

#[test]
fn ages_bound_from_both_sides_and_need_a_dead_at() {
    let f = args(|a| {
        a.older_than = Some(60);
        a.newer_than = Some(3600);
    });
    assert!(f.matches(&letter("push", "failed", Some(NOW - 60_000)), NOW));
    assert!(f.matches(&letter("push", "failed", Some(NOW - 3_600_000)), NOW));
    assert!(!f.matches(&letter("push", "failed", Some(NOW - 59_999)), NOW));
    assert!(!f.matches(&letter("push", "failed", Some(NOW - 3_600_001)), NOW));
    assert!(!f.matches(&letter("push", "failed", None), NOW));
}

#[test]
fn a_replayed_copy_keeps_the_job_and_gets_a_fresh_budget() {
    let mut h = FieldTable::default();
    let s = |v: &str| AMQPValue::LongString(LongString::from(v));
    h.insert("x-trace".into(), s("abc"));
    h.insert(headers::DEAD_REASON.into(), s("retries_exhausted"));
    h.insert(headers::DEAD_AT.into(), AMQPValue::LongLongInt(NOW - 5_000));
    h.insert(headers::LAST_ERROR.into(), s("HTTP 503"));
    h.insert(headers::KIND.into(), s("push"));
    h.insert(headers::JOB_ID.into(), s("j-1"));
    h.insert(headers::ORIGINAL_EXCHANGE.into(), s("pushwoosh.jobs"));
    h.insert(headers::ORIGINAL_ROUTING_KEY.into(), s("orders.shipped"));
    h.insert(headers::ATTEMPTS.into(), AMQPValue::LongLongInt(5));
    h.insert(
        headers::RECEIVED_AT.into(),
        AMQPValue::LongLongInt(NOW - 9_000),
    );
    h.insert(headers::REPLAY_COUNT.into(), AMQPValue::LongInt(2));
    let original = BasicProperties::default()
        .with_headers(h)
        .with_message_id("m-1".into())
        .with_correlation_id("c-1".into())
        .with_reply_to("answers".into())
        .with_content_type("application/json".into());

    let letter = Letter::of(&original);
    assert_eq!(letter.job_id.as_deref(), Some("j-1"));
    assert_eq!(
        letter.describe(NOW),
        "job 'j-1' (push, retries_exhausted, dead 5s ago)"
    );
    assert_eq!(
        letter.original_routing_key.as_deref(),
        Some("orders.shipped")
    );

    let copy = replay_properties(&original, NOW);
    assert_eq!(copy.message_id().as_ref().unwrap().as_str(), "m-1");
    assert_eq!(copy.correlation_id().as_ref().unwrap().as_str(), "c-1");
    assert_eq!(copy.reply_to().as_ref().unwrap().as_str(), "answers");
    assert_eq!(
        copy.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    let mut keys: Vec<_> = copy
        .headers()
        .as_ref()
        .unwrap()
        .inner()
        .keys()
        .map(|k| k.as_str().to_owned())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "x-pushwoosh-replay-count",
            "x-pushwoosh-replayed-at",
            "x-trace"
        ]
    );
    assert_eq!(header_int(&copy, headers::REPLAY_COUNT), Some(3));
    assert_eq!(header_int(&copy, headers::REPLAYED_AT), Some(NOW));
}

#[test]
fn a_letter_without_headers_is_described_plainly() {
    let bare = Letter::of(&BasicProperties::default());
    assert_eq!(
        bare.describe(NOW),
        "job <no id> (unknown, unknown, dead at an unknown time)"
    );
    let copy = replay_properties(&BasicProperties::default(), NOW);
    assert_eq!(header_int(&copy, headers::REPLAY_COUNT), Some(1));
}
