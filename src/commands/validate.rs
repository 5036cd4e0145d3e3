//! `pushwoosh-worker validate [FILE|-]`: checks jobs offline exactly as the worker
//! would before calling Pushwoosh, and prints every problem with its location.

use std::path::Path;

use crate::job::{self, DecodeError};
use crate::settings::UnknownParamsPolicy;
use crate::validate::check_job;

/// Returns the number of invalid jobs, after printing a line per problem to `out`.
pub fn run(
    path: Option<&Path>,
    unknown: UnknownParamsPolicy,
    out: &mut impl std::io::Write,
) -> anyhow::Result<usize> {
    let (name, bytes) = super::jobs_file::read(path)?;
    let entries = super::jobs_file::parse(&name, &bytes)?;
    let mut invalid = 0;
    for entry in &entries {
        let body = serde_json::to_vec(&entry.value)?;
        let (label, problems, warnings) = match job::decode(&body, None) {
            Err(DecodeError::Invalid {
                job_id, message, ..
            }) => (label(job_id.as_deref()), vec![message], vec![]),
            Err(DecodeError::Unparseable { message, .. }) => ("job".into(), vec![message], vec![]),
            Err(DecodeError::TooLarge { bytes, max, .. }) => (
                "job".into(),
                vec![format!("{bytes} bytes, over {max}")],
                vec![],
            ),
            Ok(job) => {
                let report = check_job(&job, unknown);
                let show = |v: Vec<crate::result_event::ValidationError>| {
                    v.into_iter()
                        .map(|e| format!("{}: {}", e.path, e.message))
                        .collect::<Vec<_>>()
                };
                (
                    label(Some(&job.id)),
                    show(report.errors),
                    show(report.warnings),
                )
            }
        };
        for warning in &warnings {
            writeln!(out, "{}: {label}: warning: {warning}", entry.location)?;
        }
        if problems.is_empty() {
            writeln!(out, "{}: {label}: ok", entry.location)?;
        } else {
            invalid += 1;
            for problem in &problems {
                writeln!(out, "{}: {label}: error: {problem}", entry.location)?;
            }
        }
    }
    writeln!(
        out,
        "{} job(s) checked, {} valid, {invalid} invalid",
        entries.len(),
        entries.len() - invalid
    )?;
    Ok(invalid)
}

fn label(id: Option<&str>) -> String {
    id.map_or_else(|| "job".to_owned(), |id| format!("job '{id}'"))
}
