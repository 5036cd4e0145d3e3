//! Local validation of a job against the Pushwoosh Messages API reference, before any call:
//! `validate(kind, request, opts)` returns every problem found, named by path, in Pushwoosh's words.
//!
//! Pure: no I/O, no clock, no global state. The worker turns a report with errors into a
//! `rejected` result (status_code 210) and logs the warnings.

mod conditions;
mod dates;
pub mod filter;
mod filter_lexer;
mod filter_parser;
mod job;
mod methods;
mod report;
mod schema;
mod structured;
mod suggest;
mod tags;
mod values;

#[cfg(test)]
mod filter_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_platforms;
#[cfg(test)]
mod tests_rules;
#[cfg(test)]
mod tests_seed_examples;

use std::str::FromStr;

pub use job::{JobReport, check_job};
pub use report::{Problem, Report};
/// "a string", "an array", …: a JSON value's type, for messages.
pub use values::describe as json_type_name;

/// What to do with a parameter that the Pushwoosh reference does not document for its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownParams {
    /// An error: the job is rejected (the default; it catches typos such as `andriod_header`).
    Reject,
    /// A warning: the job goes on, the parameter is sent as given.
    Warn,
    /// Nothing is said: the parameter is sent as given.
    Pass,
}

impl FromStr for UnknownParams {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reject" => Ok(Self::Reject),
            "warn" => Ok(Self::Warn),
            "pass" => Ok(Self::Pass),
            other => Err(format!(
                "invalid unknown_params value \"{other}\": expected \"reject\", \"warn\" or \"pass\""
            )),
        }
    }
}

/// How strict the validation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub unknown_params: UnknownParams,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            unknown_params: UnknownParams::Reject,
        }
    }
}

/// Checks one job's request (the job body minus `id` and `kind`) for the Pushwoosh method
/// that `kind` maps to: "push", "sms", "whatsapp", "targeted", "cancel", "delete",
/// "details" or "history". Returns all problems found, not just the first.
pub fn validate(
    kind: &str,
    request: &serde_json::Map<String, serde_json::Value>,
    opts: &Options,
) -> Report {
    let mut sink = report::Sink::new(*opts);
    match methods::Method::from_kind(kind) {
        Some(method) => methods::check(method, request, &mut sink),
        None => sink.error(
            "kind",
            format!(
                "Unknown job kind \"{kind}\". Expected one of \"push\", \"sms\", \"whatsapp\", \
                 \"targeted\", \"cancel\", \"delete\", \"details\", \"history\"."
            ),
        ),
    }
    sink.finish()
}
