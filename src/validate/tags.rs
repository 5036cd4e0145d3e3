//! Tag operators and the operand rules that hold whatever the tag's type, shared by
//! createMessage `conditions` and the devices_filter `T(...)` / `AT(...)` sets.
//!
//! A request cannot tell a tag's type (string, integer, list, date, boolean), so only the
//! rules true for every type the reference allows an operator on are enforced:
//! - IN, NOTIN: a non-empty array of strings / integers (every type that has them).
//! - BETWEEN: an array of exactly 2 items, each an integer or a date string (only integer
//!   and date tags have BETWEEN), min <= max when both are integers or both absolute dates.
//! - GTE, LTE: an integer or a date string (only integer and date tags have them).
//! - EQ: a string, an integer or a boolean (boolean tags take true/false); NOTEQ: a string or an integer.
//! - NOTSET, ANY: the operand is ignored and may be absent.
//!
//! A date string is "YYYY-MM-DD HH:mm", "YYYY-MM-DD" or "N days ago"; a unix time is an integer.

use std::fmt;

use crate::validate::dates;
use crate::validate::report::clip;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    In,
    NotEq,
    NotIn,
    Lte,
    Gte,
    Between,
    NotSet,
    Any,
}

pub(crate) const OPERATOR_NAMES: &[&str] = &[
    "EQ", "IN", "NOTEQ", "NOTIN", "LTE", "GTE", "BETWEEN", "NOTSET", "ANY",
];

impl Operator {
    /// The operator spelled exactly as Pushwoosh spells it (upper case).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "EQ" => Self::Eq,
            "IN" => Self::In,
            "NOTEQ" => Self::NotEq,
            "NOTIN" => Self::NotIn,
            "LTE" => Self::Lte,
            "GTE" => Self::Gte,
            "BETWEEN" => Self::Between,
            "NOTSET" => Self::NotSet,
            "ANY" => Self::Any,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "EQ",
            Self::In => "IN",
            Self::NotEq => "NOTEQ",
            Self::NotIn => "NOTIN",
            Self::Lte => "LTE",
            Self::Gte => "GTE",
            Self::Between => "BETWEEN",
            Self::NotSet => "NOTSET",
            Self::Any => "ANY",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message for an operator name that is not one of Pushwoosh's.
pub(crate) fn unknown_operator(name: &str) -> String {
    let end = crate::validate::suggest::sentence_end(name, OPERATOR_NAMES.iter().copied());
    let name = clip(name);
    format!(
        "Unknown operator \"{name}\". Expected one of EQ, IN, NOTEQ, NOTIN, LTE, GTE, BETWEEN, NOTSET, ANY{end}"
    )
}

/// One operand value as the rules see it, whichever syntax it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Str(String),
    Int(i64),
    Bool(bool),
    /// Anything else (a float, null, an object, a nested array): its description.
    Other(&'static str),
}

/// A whole operand.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OperandView {
    Missing,
    One(Scalar),
    List(Vec<Scalar>),
}

fn describe(s: &Scalar) -> String {
    match s {
        Scalar::Str(v) => format!("\"{}\"", clip(v)),
        Scalar::Int(i) => i.to_string(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Other(d) => (*d).to_owned(),
    }
}

fn is_int_or_date(s: &Scalar) -> bool {
    match s {
        Scalar::Int(_) => true,
        Scalar::Str(v) => dates::is_tag_date(v),
        _ => false,
    }
}

/// An absolute date as a sortable key ("YYYY-MM-DD" counts as midnight).
fn absolute_date(s: &str) -> Option<chrono::NaiveDateTime> {
    dates::parse_date_time(s).ok().or_else(|| {
        dates::parse_date(s)
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
}

/// Every problem with `operand` under `op` (empty when it is fine).
pub(crate) fn operand_problems(op: Operator, operand: &OperandView) -> Vec<String> {
    let mut out = Vec::new();
    match (op, operand) {
        (Operator::NotSet | Operator::Any, _) => {}
        (_, OperandView::Missing) => out.push(format!("Operator {op} needs an operand.")),
        (Operator::In | Operator::NotIn, OperandView::One(s)) => out.push(format!(
            "Operator {op} needs an array operand such as [\"a\", \"b\"], got {}.",
            describe(s)
        )),
        (Operator::In | Operator::NotIn, OperandView::List(items)) => {
            if items.is_empty() {
                out.push(format!("Operator {op} needs a non-empty array."));
            }
            for (i, item) in items.iter().enumerate() {
                if !matches!(item, Scalar::Str(_) | Scalar::Int(_)) {
                    out.push(format!(
                        "Operator {op}: array item {i} must be a string or an integer, got {}.",
                        describe(item)
                    ));
                }
            }
        }
        (Operator::Between, OperandView::One(s)) => out.push(format!(
            "Operator BETWEEN needs an array of exactly 2 items [min, max], got {}.",
            describe(s)
        )),
        (Operator::Between, OperandView::List(items)) => {
            if items.len() != 2 {
                out.push(format!(
                    "Operator BETWEEN needs an array of exactly 2 items [min, max], got {} item{}.",
                    items.len(),
                    if items.len() == 1 { "" } else { "s" }
                ));
            }
            for (i, item) in items.iter().enumerate() {
                if !is_int_or_date(item) {
                    out.push(format!(
                        "Operator BETWEEN: item {i} must be an integer or a date (\"YYYY-MM-DD 00:00\" or \"N days ago\"), got {}.",
                        describe(item)
                    ));
                }
            }
            if let [min, max] = items.as_slice() {
                let reversed = match (min, max) {
                    (Scalar::Int(a), Scalar::Int(b)) => a > b,
                    (Scalar::Str(a), Scalar::Str(b)) => {
                        matches!((absolute_date(a), absolute_date(b)), (Some(a), Some(b)) if a > b)
                    }
                    _ => false,
                };
                if reversed {
                    out.push(format!(
                        "Operator BETWEEN needs min <= max, got [{}, {}].",
                        describe(min),
                        describe(max)
                    ));
                }
            }
        }
        (_, OperandView::List(_)) => out.push(format!(
            "Operator {op} needs a single value, not an array (use IN for a list)."
        )),
        (Operator::Gte | Operator::Lte, OperandView::One(s)) => {
            if !is_int_or_date(s) {
                out.push(format!(
                    "Operator {op} needs an integer or a date (\"YYYY-MM-DD 00:00\", \"N days ago\" or a unix time), got {}.",
                    describe(s)
                ));
            }
        }
        (Operator::Eq, OperandView::One(s)) => {
            if matches!(s, Scalar::Other(_)) {
                out.push(format!(
                    "Operator EQ needs a string, an integer or a boolean, got {}.",
                    describe(s)
                ));
            }
        }
        (_, OperandView::One(s)) => {
            if !matches!(s, Scalar::Str(_) | Scalar::Int(_)) {
                out.push(format!(
                    "Operator {op} needs a string or an integer, got {}.",
                    describe(s)
                ));
            }
        }
    }
    out
}
