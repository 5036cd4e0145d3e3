//! Admitting a job: what the decode found, a poison job, the worker's own validation and
//! the API token, all decided before any call. A job refused here gets its result
//! without Pushwoosh ever hearing of it.

use secrecy::SecretString;
use tracing::{error, info, warn};

use super::context::WorkerContext;
use super::fate::Fate;
use super::received::Received;
use crate::broker::DeadReason;
use crate::job::{DecodeError, Job};
use crate::result_event::{Outcome, ResultEvent, ValidationError, kind_name};

/// A job cleared for its call, with its token and the result it will fill in.
pub(super) struct Admitted<'a> {
    pub job: Job,
    pub token: &'a SecretString,
    pub event: ResultEvent,
}

pub(super) fn admit<'a>(
    received: &Received,
    decoded: Result<Job, DecodeError>,
    ctx: &'a WorkerContext,
) -> Result<Admitted<'a>, Fate> {
    let job = match decoded {
        Ok(job) => job,
        Err(DecodeError::Unparseable { job_id, message }) => {
            warn!(error = %message, "unparseable job: rejected and dead-lettered");
            let mut event = received.result(job_id, "unknown", None);
            event.status_code = Some(400);
            event.status_message = message;
            return Err(Fate::finish(event, Some(DeadReason::Unparseable)));
        }
        Err(DecodeError::TooLarge { job_id, bytes, max }) => {
            warn!(
                bytes,
                max, "job over amqp.max_job_bytes: rejected undecoded and dead-lettered"
            );
            let mut event = received.result(job_id, "unknown", None);
            event.status_code = Some(400);
            event.status_message = format!(
                "the job body is {bytes} bytes, over the worker's limit of {max} (amqp.max_job_bytes): not read"
            );
            return Err(Fate::finish(event, Some(DeadReason::TooLarge)));
        }
        Err(DecodeError::Invalid {
            job_id,
            kind,
            application,
            message,
        }) => {
            info!(error = %message, "job rejected");
            let mut event = received.result(job_id, kind_name(kind), application);
            event.status_code = Some(210);
            event.status_message = message;
            return Err(Fate::finish(event, None));
        }
    };
    let mut event = received.result(
        Some(job.id.clone()),
        job.kind.as_str(),
        job.application().map(str::to_owned),
    );

    let report = ctx.validate(&job);
    event.warnings = report.warnings;
    if !report.errors.is_empty() {
        info!(errors = report.errors.len(), "job rejected by validation");
        event.status_code = Some(210);
        event.status_message = validation_message(&job.id, &report.errors);
        event.errors = report.errors;
        return Err(Fate::finish(event, None));
    }

    let Some(token) = ctx.settings.pushwoosh.token_for(job.application()) else {
        let message = match job.application() {
            Some(app) => format!(
                "no API token configured for application {app}: set pushwoosh.auth_token or pushwoosh.tokens.\"{app}\", then replay the dead letter"
            ),
            None => "no API token configured: set pushwoosh.auth_token (PUSHWOOSH_AUTH_TOKEN), then replay the dead letter".to_owned(),
        };
        error!(%message, "cannot call Pushwoosh");
        event.outcome = Outcome::Failed;
        event.status_message = message;
        return Err(Fate::finish(event, Some(DeadReason::NoToken)));
    };
    Ok(Admitted { job, token, event })
}

/// A job whose earlier deliveries all ended without being settled: whatever it does to
/// a worker, it is not tried again. Failed with a result, and dead-lettered for a look.
pub(super) fn poison(received: &Received, decoded: &Result<Job, DecodeError>, limit: u32) -> Fate {
    // Only what the decode found out: the job is not looked at any further.
    let (job_id, kind, application) = match decoded {
        Ok(job) => (
            Some(job.id.clone()),
            job.kind.as_str(),
            job.application().map(str::to_owned),
        ),
        Err(DecodeError::Invalid {
            job_id,
            kind,
            application,
            ..
        }) => (job_id.clone(), kind_name(*kind), application.clone()),
        Err(DecodeError::Unparseable { job_id, .. } | DecodeError::TooLarge { job_id, .. }) => {
            (job_id.clone(), "unknown", None)
        }
    };
    error!(
        deliveries = received.failed_deliveries,
        "poison job: delivered {} times without finishing; failed and dead-lettered",
        received.failed_deliveries
    );
    let mut event = received.result(job_id, kind, application);
    event.outcome = Outcome::Failed;
    event.status_message = format!(
        "poison job: delivered {} times without its worker finishing it (amqp.delivery_limit={limit}); not tried again",
        received.failed_deliveries
    );
    Fate::finish(event, Some(DeadReason::Poison))
}

/// `job 'x': notifications[0].send_date: …; devices: …`
fn validation_message(job_id: &str, errors: &[ValidationError]) -> String {
    let problems: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect();
    format!("job '{job_id}': {}", problems.join("; "))
}
