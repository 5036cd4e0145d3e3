//! The outcome of a validation (`Report` of `Problem`s) and the sink the checks write into.

use std::fmt;

use crate::validate::{Options, UnknownParams};

/// One thing wrong with a request: where (`notifications[0].send_date`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found: errors make the job invalid, warnings do not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Report {
    /// True when there is no error (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Collects problems while the checks walk the request.
pub(crate) struct Sink {
    opts: Options,
    report: Report,
}

impl Sink {
    pub(crate) fn new(opts: Options) -> Self {
        Self {
            opts,
            report: Report::default(),
        }
    }

    pub(crate) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.report.errors.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    pub(crate) fn warning(&mut self, path: &str, message: impl Into<String>) {
        self.report.warnings.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// An undocumented parameter: an error, a warning or nothing, as the options say.
    pub(crate) fn unknown(&mut self, path: &str, message: String) {
        let problem = Problem {
            path: path.to_owned(),
            message,
        };
        match self.opts.unknown_params {
            UnknownParams::Reject => self.report.errors.push(problem),
            UnknownParams::Warn => self.report.warnings.push(problem),
            UnknownParams::Pass => {}
        }
    }

    pub(crate) fn finish(self) -> Report {
        self.report
    }
}

/// `prefix.key`, or `key` at the top level.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        // Every key of every job is joined: no formatting machinery for two pieces.
        let mut path = String::with_capacity(prefix.len() + 1 + key.len());
        path.push_str(prefix);
        path.push('.');
        path.push_str(key);
        path
    }
}

/// `prefix[index]`.
pub(crate) fn index(prefix: &str, i: usize) -> String {
    format!("{prefix}[{i}]")
}

/// A producer's text cut to a length fit for a message (a 1 MB key must not make a 1 MB message).
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX - 3).collect();
        format!("{cut}...")
    } else {
        s.to_owned()
    }
}
