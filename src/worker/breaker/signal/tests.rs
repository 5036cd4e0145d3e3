//! Which answers mean Pushwoosh is down, which that it is up, which say nothing.

use serde_json::Value;

use super::Signal;
use crate::pushwoosh::Verdict;

#[test]
fn which_answers_mean_pushwoosh_is_down() {
    let transient = |code: Option<i64>| Verdict::Transient {
        status_code: code,
        status_message: "x".into(),
        retry_after: None,
        may_have_reached: false,
    };
    let failed = |code: i64| Verdict::Failed {
        status_code: Some(code),
        status_message: "x".into(),
        response: Value::Null,
    };
    let down = Signal::Down("x".into());
    let success = Verdict::Success {
        status_message: "OK".into(),
        response: Value::Null,
    };
    let cases = [
        (success, true, Signal::Answered),
        (transient(Some(500)), true, down.clone()),
        (transient(Some(502)), true, down.clone()),
        (transient(None), true, down.clone()),
        (transient(Some(429)), true, Signal::Neutral),
        (failed(401), true, down.clone()),
        (failed(403), true, down.clone()),
        (failed(403), false, Signal::Neutral),
        (failed(404), true, Signal::Neutral),
    ];
    for (verdict, shared, expected) in cases {
        assert_eq!(Signal::of(&verdict, shared), expected, "{verdict:?}");
    }
}
