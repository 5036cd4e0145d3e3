//! Glue between a decoded job and the parameter validator (`crate::validate`): the
//! configured policy for unknown parameters in, result-event errors out.

use crate::job::Job;
use crate::result_event::ValidationError;
use crate::settings::UnknownParamsPolicy;
use crate::validate::{Options, Problem, UnknownParams, validate};
use crate::worker::context::ValidationReport;

pub fn check(job: &Job, unknown: UnknownParamsPolicy) -> ValidationReport {
    let options = Options {
        unknown_params: match unknown {
            UnknownParamsPolicy::Reject => UnknownParams::Reject,
            UnknownParamsPolicy::Warn => UnknownParams::Warn,
            UnknownParamsPolicy::Pass => UnknownParams::Pass,
        },
    };
    let report = validate(job.kind.as_str(), &job.request, &options);
    ValidationReport {
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
