//! A decoded job checked as the worker checks it: the configured policy for unknown
//! parameters in, the result event's errors and warnings out.

use super::{Options, Problem, UnknownParams, validate};
use crate::job::Job;
use crate::result_event::ValidationError;
use crate::settings::UnknownParamsPolicy;

/// The result of the worker's own validation of a job.
#[derive(Debug, Default)]
pub struct JobReport {
    pub errors: Vec<ValidationError>,
    pub warnings: Vec<ValidationError>,
}

pub fn check_job(job: &Job, unknown: UnknownParamsPolicy) -> JobReport {
    let options = Options {
        unknown_params: match unknown {
            UnknownParamsPolicy::Reject => UnknownParams::Reject,
            UnknownParamsPolicy::Warn => UnknownParams::Warn,
            UnknownParamsPolicy::Pass => UnknownParams::Pass,
        },
    };
    let report = validate(job.kind.as_str(), &job.request, &options);
    JobReport {
        errors: report.errors.into_iter().map(into_error).collect(),
        warnings: report.warnings.into_iter().map(into_error).collect(),
    }
}

fn into_error(problem: Problem) -> ValidationError {
    ValidationError {
        path: problem.path,
        message: problem.message,
    }
}
