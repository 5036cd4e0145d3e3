//! createMessage tag `conditions`: an array of [tagName, operator, operand] triples.

use serde_json::Value;

use crate::validate::report::{Sink, index};
use crate::validate::tags::{self, OperandView, Operator, Scalar};
use crate::validate::values::describe;

/// A JSON value as a tag operand item.
fn scalar(v: &Value) -> Scalar {
    match v {
        Value::String(s) => Scalar::Str(s.clone()),
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Scalar::Int(i),
            None => Scalar::Other("a non-integer number"),
        },
        other => Scalar::Other(describe(other)),
    }
}

fn operand(v: Option<&Value>) -> OperandView {
    match v {
        None => OperandView::Missing,
        Some(Value::Array(items)) => OperandView::List(items.iter().map(scalar).collect()),
        Some(other) => OperandView::One(scalar(other)),
    }
}

/// Checks a `conditions` value at `path`.
pub(crate) fn check(path: &str, value: &Value, sink: &mut Sink) {
    let Value::Array(list) = value else {
        sink.error(
            path,
            format!(
                "Invalid conditions. \"conditions\" must be an array of [tagName, operator, operand] arrays, got {}.",
                describe(value)
            ),
        );
        return;
    };
    for (i, condition) in list.iter().enumerate() {
        check_one(&index(path, i), condition, sink);
    }
}

fn check_one(path: &str, condition: &Value, sink: &mut Sink) {
    let Value::Array(parts) = condition else {
        sink.error(
            path,
            format!(
                "Invalid condition. Each condition must be an array [tagName, operator, operand], got {}.",
                describe(condition)
            ),
        );
        return;
    };
    if !(2..=3).contains(&parts.len()) {
        sink.error(
            path,
            format!(
                "Invalid condition. A condition is [tagName, operator, operand] (3 items; 2 for NOTSET and ANY), got {} items.",
                parts.len()
            ),
        );
        return;
    }
    match &parts[0] {
        Value::String(name) if !name.trim().is_empty() => {}
        other => sink.error(
            &index(path, 0),
            format!(
                "Invalid condition. The tag name must be a non-empty string, got {}.",
                describe(other)
            ),
        ),
    }
    let op = match &parts[1] {
        Value::String(name) => match Operator::parse(name) {
            Some(op) => op,
            None => {
                sink.error(&index(path, 1), tags::unknown_operator(name));
                return;
            }
        },
        other => {
            sink.error(
                &index(path, 1),
                format!(
                    "Invalid condition. The operator must be a string such as \"EQ\", got {}.",
                    describe(other)
                ),
            );
            return;
        }
    };
    let operand_path = index(path, 2);
    if parts.len() == 2 && !matches!(op, Operator::NotSet | Operator::Any) {
        sink.error(
            path,
            format!(
                "Invalid condition. Operator {op} needs an operand: [tagName, \"{op}\", operand]."
            ),
        );
        return;
    }
    for message in tags::operand_problems(op, &operand(parts.get(2))) {
        sink.error(&operand_path, format!("Invalid condition. {message}"));
    }
}
